"""Pose backends on real frames of the bundled clip, the offline .task bundle, mapping."""
import json
import os
import subprocess
import sys
import zipfile

import cv2
import numpy as np
import pytest

from conftest import CLIP, REPO
from vp3d_ros.core.keypoint_mapping import mediapipe_to_coco, mediapipe_to_h36m
from vp3d_ros.vision.pose_estimation import (LegacyPoseEstimator, PoseDetection, PoseEstimationError,
                                      TasksPoseEstimator, create_estimator,
                                      legacy_model_available)
from vp3d_ros.vision.pose_task_bundle import DETECTOR_NAME, LANDMARKER_NAME, build_pose_task, main
from vp3d_ros.core.skeletons import COCO17, H36M17, MEDIAPIPE33

FRAME_IDS = (0, 33, 66, 99)
NOSE, L_SH, R_SH, L_HIP, R_HIP = (MEDIAPIPE33.index(n) for n in (
    'nose', 'left_shoulder', 'right_shoulder', 'left_hip', 'right_hip'))


@pytest.fixture(scope='module')
def frames():
    cap = cv2.VideoCapture(CLIP)
    out = {}
    for i in range(max(FRAME_IDS) + 1):
        ok, bgr = cap.read()
        assert ok, f'cannot read frame {i} of {CLIP}'
        if i in FRAME_IDS:
            out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    cap.release()
    assert out[0].shape == (1920, 1080, 3)
    return out


@pytest.fixture(scope='module')
def legacy(frames):
    """Static-image legacy results per frame (deterministic, comparable with Tasks IMAGE)."""
    with create_estimator('legacy', video_mode=False) as est:
        return {i: est.process(f, 0) for i, f in frames.items()}


@pytest.fixture(scope='module')
def task_file(tmp_path_factory):
    return build_pose_task(tmp_path_factory.mktemp('task') / 'pose_landmarker_full.task')


def _plausible(det, shape):
    h, w = shape[:2]
    assert isinstance(det, PoseDetection)
    assert det.landmarks_px.shape == (33, 2) and det.visibility.shape == (33,)
    assert np.all((det.visibility >= 0) & (det.visibility <= 1))
    core = [NOSE, L_SH, R_SH, L_HIP, R_HIP]
    xy = det.landmarks_px[core]
    assert np.all((xy >= 0) & (xy < [w, h])), xy
    assert np.all(det.visibility[core] > 0.5)
    # He leans and bends far (balancing), so only torso-level ordering is safe to demand.
    sh_y = det.landmarks_px[[L_SH, R_SH], 1].mean()
    hip_y = det.landmarks_px[[L_HIP, R_HIP], 1].mean()
    assert sh_y < hip_y and det.landmarks_px[NOSE, 1] < hip_y
    assert 0.05 * h < hip_y - sh_y < 0.5 * h  # an adult filling much of a portrait frame
    wl = det.world_landmarks
    assert wl.shape == (33, 3) and np.all(np.abs(wl) < 2.0)
    assert np.linalg.norm(wl[[L_HIP, R_HIP]].mean(0)) < 0.1  # hip-centred, metres


def test_legacy_finds_person(frames, legacy):
    for i, f in frames.items():
        assert len(legacy[i]) == 1, f'frame {i}'
        _plausible(legacy[i][0], f.shape)


def test_legacy_video_mode_tracks(frames):
    with create_estimator('legacy', video_mode=True) as est:
        for i, f in frames.items():
            dets = est.process(f, i * 17)
            assert len(dets) == 1
            _plausible(dets[0], f.shape)


def test_bundle_contents(task_file):
    from mediapipe.tasks.python.metadata import metadata
    with zipfile.ZipFile(task_file) as zf:
        assert sorted(zf.namelist()) == sorted([DETECTOR_NAME, LANDMARKER_NAME])
        md = metadata.MetadataDisplayer.with_model_buffer(zf.read(LANDMARKER_NAME))
    tensor = json.loads(md.get_metadata_json())['subgraph_metadata'][0][
        'input_tensor_metadata'][0]
    unit = tensor['process_units'][0]
    assert unit['options_type'] == 'NormalizationOptions'
    assert unit['options'] == {'mean': [0.0], 'std': [255.0]}


def test_tasks_agrees_with_legacy(frames, legacy, task_file):
    with create_estimator('tasks', task_file=task_file, num_poses=2, video_mode=False) as est:
        for i, f in frames.items():
            dets = est.process(f, 0)
            assert 1 <= len(dets) <= 2
            main_person = min(dets, key=lambda d: np.linalg.norm(
                d.landmarks_px[NOSE] - legacy[i][0].landmarks_px[NOSE]))
            _plausible(main_person, f.shape)
            dist = np.linalg.norm(main_person.landmarks_px - legacy[i][0].landmarks_px, axis=1)
            assert np.median(dist) < 10, f'frame {i}: median {np.median(dist):.1f} px'


def test_tasks_video_mode_bumps_timestamps(frames, task_file):
    est = TasksPoseEstimator(task_file, video_mode=True)
    try:
        for ts in (100, 100, 50, 101):  # MediaPipe itself raises on non-increasing stamps
            assert len(est.process(frames[0], ts)) == 1
        assert est._last_ts == 103
    finally:
        est.close()


def test_mapping_real_result_anatomy(legacy):
    det = legacy[0][0]  # the upright frame: head over neck over thorax holds there
    j = H36M17.index
    for pts in (det.landmarks_px, det.world_landmarks):  # both use y down
        h36, conf = mediapipe_to_h36m(pts, det.visibility)
        assert h36.shape == (17, pts.shape[1]) and conf.shape == (17,)
        assert np.all((conf >= 0) & (conf <= 1))
        pelvis, rhip, lhip = h36[j('Hip')], h36[j('RHip')], h36[j('LHip')]
        np.testing.assert_allclose(pelvis, (rhip + lhip) / 2)
        assert min(rhip[0], lhip[0]) <= pelvis[0] <= max(rhip[0], lhip[0])
        assert h36[j('Head'), 1] < h36[j('Neck/Nose'), 1] < h36[j('Thorax'), 1]
        assert h36[j('Thorax'), 1] < h36[j('Spine'), 1] < pelvis[1]
        assert h36[j('RFoot'), 1] > h36[j('RKnee'), 1] > rhip[1]
    coco, cconf = mediapipe_to_coco(det.landmarks_px, det.visibility)
    assert coco.shape == (17, 2) and np.all((cconf >= 0) & (cconf <= 1))
    np.testing.assert_array_equal(coco[COCO17.index('nose')], det.landmarks_px[NOSE])
    c = COCO17.index
    assert coco[c('left_shoulder'), 1] < coco[c('left_hip'), 1] < coco[c('left_knee'), 1]


@pytest.mark.parametrize('complexity', [0, 2])
def test_legacy_complexity_needing_download_rejected(complexity):
    if legacy_model_available(complexity):
        pytest.skip('this mediapipe install already has the model on disk')
    with pytest.raises(PoseEstimationError, match='download'):
        create_estimator('legacy', model_complexity=complexity)


def test_bad_arguments_rejected(tmp_path, frames):
    assert issubclass(PoseEstimationError, ValueError)
    with pytest.raises(PoseEstimationError, match='0, 1 or 2'):
        LegacyPoseEstimator(model_complexity=3)
    with pytest.raises(ValueError, match='unknown pose backend'):
        create_estimator('openpose')
    with pytest.raises(ValueError, match='one person'):
        create_estimator('legacy', num_poses=2)
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        create_estimator('legacy', min_detection_confidence=1.5)
    with pytest.raises(ValueError, match='needs task_file'):
        create_estimator('tasks')
    with pytest.raises(FileNotFoundError, match='not found'):
        create_estimator('tasks', task_file=tmp_path / 'missing.task')
    (tmp_path / 'text.task').write_text('hello')
    with pytest.raises(ValueError, match='not a zip'):
        create_estimator('tasks', task_file=tmp_path / 'text.task')
    with zipfile.ZipFile(tmp_path / 'other.task', 'w') as zf:
        zf.writestr('hand_detector.tflite', b'x')
    with pytest.raises(ValueError, match='lacks'):
        create_estimator('tasks', task_file=tmp_path / 'other.task')
    with zipfile.ZipFile(tmp_path / 'junk.task', 'w') as zf:
        zf.writestr(DETECTOR_NAME, b'junk')
        zf.writestr(LANDMARKER_NAME, b'junk')
    with pytest.raises(PoseEstimationError, match='MediaPipe rejected'):
        create_estimator('tasks', task_file=tmp_path / 'junk.task')
    with create_estimator('legacy') as est:
        with pytest.raises(ValueError, match='uint8 RGB'):
            est.process(frames[0][..., 0], 0)
        with pytest.raises(ValueError, match='uint8 RGB'):
            est.process(frames[0].astype(np.float32), 0)


def test_make_pose_task_cli(tmp_path):
    out = tmp_path / 'sub' / 'p.task'
    assert main([str(out)]) == 0 and zipfile.is_zipfile(out)
    assert not list(out.parent.glob('*.partial'))
    r = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'make_pose_task.py'),
                        '--help'], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and '--verify' in r.stdout


def test_modules_import_without_mediapipe():
    code = ('import sys; sys.modules["mediapipe"] = None; '
            'import vp3d_ros.vision.pose_estimation, vp3d_ros.vision.pose_task_bundle; print("ok")')
    r = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == 'ok', r.stderr
