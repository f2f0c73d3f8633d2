"""Assemble a MediaPipe ``pose_landmarker.task`` bundle offline from the wheel's own models.

Why: the Tasks API needs a ``.task`` file, normally downloaded; offline machines (this
build host, many robots) cannot. The mediapipe wheel already ships the two models the legacy
solution uses, so we zip them under the names the PoseLandmarker graph looks for.

The detector model already carries image metadata (normalise to [-1, 1]). The landmark
model has none, and the Tasks graph refuses a float-input model without it; the legacy
graph feeds it [0, 1], so we add input metadata mean 0 / std 255 with mediapipe's own
writer (checked: then Tasks and legacy agree to < 1 px on the demo clip; [-1, 1] is ~5 px
off).
"""
from __future__ import annotations

import os
from pathlib import Path

DETECTOR_NAME = 'pose_detector.tflite'
LANDMARKER_NAME = 'pose_landmarks_detector.tflite'
_WHEEL_DETECTOR = ('modules', 'pose_detection', 'pose_detection.tflite')
_WHEEL_LANDMARKER = ('modules', 'pose_landmark', 'pose_landmark_full.tflite')


def wheel_model_paths() -> tuple:
    """(detector, landmark model) paths inside the installed mediapipe package."""
    import mediapipe
    root = Path(mediapipe.__file__).resolve().parent
    paths = (root.joinpath(*_WHEEL_DETECTOR), root.joinpath(*_WHEEL_LANDMARKER))
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f'mediapipe wheel lacks {p}; cannot build a pose .task '
                                    'bundle offline (download pose_landmarker_*.task instead)')
    return paths


def _with_image_metadata(model: bytes) -> bytes:
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer
    writer = metadata_writer.MetadataWriter.create(bytearray(model))
    writer.add_general_info('pose_landmark_full', 'BlazePose GHUM 3D landmarks (full)')
    writer.add_image_input(norm_mean=[0.0], norm_std=[255.0])
    content, _ = writer.populate()
    return bytes(content)


def build_pose_task(out_path) -> str:
    """Write the bundle to ``out_path`` (parent dirs created); return the path as str."""
    from mediapipe.tasks.python.metadata.metadata_writers import model_asset_bundle_utils
    detector, landmarker = wheel_model_paths()
    models = {
        DETECTOR_NAME: detector.read_bytes(),
        LANDMARKER_NAME: _with_image_metadata(landmarker.read_bytes()),
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + '.partial')
    model_asset_bundle_utils.create_model_asset_bundle(models, str(tmp))
    os.replace(tmp, out_path)  # never leave a half-written bundle under the final name
    return str(out_path)


def _verify(task_path: str) -> int:
    """Run the bundle on the first frame of the bundled clip; return people found."""
    import cv2
    from .. import DATA_DIR
    from .pose_estimation import TasksPoseEstimator
    clip = Path(DATA_DIR) / 'balancing_cam01.mp4'
    cap = cv2.VideoCapture(str(clip))
    ok, bgr = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f'cannot read a frame from {clip}')
    with TasksPoseEstimator(task_path, num_poses=2, video_mode=False) as est:
        return len(est.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), 0))


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description='Build pose_landmarker_full.task offline from the '
                                             "mediapipe wheel's own pose models.")
    ap.add_argument('out', nargs='?', default='pose_landmarker_full.task',
                    help='output .task path (default: %(default)s)')
    ap.add_argument('--verify', action='store_true',
                    help='check that the bundle finds a person in the bundled demo clip')
    args = ap.parse_args(argv)
    path = build_pose_task(args.out)
    print(f'wrote {path}')
    if args.verify:
        found = _verify(path)
        print(f'verify: {found} person(s) detected in balancing_cam01.mp4 frame 0')
        return 0 if found else 1
    return 0
