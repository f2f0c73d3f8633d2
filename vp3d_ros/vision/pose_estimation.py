"""MediaPipe Pose behind one small interface: RGB frame in, 33 landmarks per person out.

Two backends, because each has a limit the other lacks:

- 'legacy' (``mediapipe.solutions.pose``): needs no extra file, one person only, and only
  ``model_complexity=1`` is usable offline (the wheel ships ``pose_landmark_full.tflite``;
  0 and 2 download lite/heavy models at start-up).
- 'tasks' (``PoseLandmarker``): several people, any lite/full/heavy ``.task`` file; build
  one offline with ``tools/make_pose_task.py`` (``pose_task_bundle.build_pose_task``).

mediapipe is imported lazily so that the package (and its tests) import without it, and
only after its non-actionable native log lines are routed away from stderr
(``native_log_filter``; ``VP3D_VERBOSE_MEDIAPIPE=1`` shows them).
Confidence per landmark is MediaPipe's visibility, or min(visibility, presence) where
presence is reported (Tasks): a landmark is only usable if it is both in frame and
unoccluded. Legacy leaves presence unset, so there it is visibility alone.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

NUM_LANDMARKS = 33


def _mediapipe():
    """``import mediapipe``, with its start-up log noise filtered (see native_log_filter)."""
    from .native_log_filter import filter_native_stderr
    filter_native_stderr()
    import mediapipe
    return mediapipe


class PoseEstimationError(ValueError):
    """Bad backend configuration or model file (a missing file is FileNotFoundError)."""


@dataclass
class PoseDetection:
    """One person: pixel landmarks, confidences in [0, 1], metric world landmarks."""
    landmarks_px: np.ndarray  # (33, 2) x, y in pixels of the processed image
    visibility: np.ndarray  # (33,) in [0, 1]
    world_landmarks: Optional[np.ndarray] = None  # (33, 3) metres, hip-centred, or None


def _confidence(lm) -> float:
    vis = getattr(lm, 'visibility', None)
    pres = getattr(lm, 'presence', None)
    if hasattr(lm, 'HasField'):  # legacy protobuf: unset fields read as 0.0
        vis = lm.visibility if lm.HasField('visibility') else None
        pres = lm.presence if lm.HasField('presence') else None
    vals = [v for v in (vis, pres) if v is not None]
    return float(np.clip(min(vals), 0.0, 1.0)) if vals else 1.0


def _to_detection(landmarks, world, width: int, height: int) -> PoseDetection:
    px = np.array([[lm.x * width, lm.y * height] for lm in landmarks], dtype=np.float64)
    conf = np.array([_confidence(lm) for lm in landmarks], dtype=np.float64)
    w = None if world is None else np.array([[lm.x, lm.y, lm.z] for lm in world], np.float64)
    return PoseDetection(px, conf, w)


def _check_frame(rgb) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise PoseEstimationError(f'need a non-empty (H, W, 3) uint8 RGB frame, got '
                                  f'{rgb.shape} {rgb.dtype}')
    return np.ascontiguousarray(rgb)


def _check_unit(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise PoseEstimationError(f'{name} must be in [0, 1], got {value}')
    return float(value)


class PoseEstimator(abc.ABC):
    """Common interface; use as a context manager or call close()."""

    @abc.abstractmethod
    def process(self, rgb: np.ndarray, timestamp_ms: int) -> List[PoseDetection]:
        """Detect people in one (H, W, 3) uint8 RGB frame."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the MediaPipe graph."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def legacy_model_available(model_complexity: int) -> bool:
    """Whether the legacy landmark model for this complexity is on disk (no download)."""
    mediapipe = _mediapipe()
    name = {0: 'lite', 1: 'full', 2: 'heavy'}.get(model_complexity)
    root = Path(mediapipe.__file__).resolve().parent / 'modules' / 'pose_landmark'
    return name is not None and (root / f'pose_landmark_{name}.tflite').is_file()


class LegacyPoseEstimator(PoseEstimator):
    """``mediapipe.solutions.pose.Pose``: one person; tracks between frames in video mode."""

    def __init__(self, model_complexity: int = 1, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, video_mode: bool = True):
        if model_complexity not in (0, 1, 2):
            raise PoseEstimationError(
                f'model_complexity must be 0, 1 or 2, got {model_complexity!r}')
        if not legacy_model_available(model_complexity):
            raise PoseEstimationError(
                f'model_complexity={model_complexity} needs pose_landmark_'
                f'{["lite", "full", "heavy"][model_complexity]}.tflite, which this mediapipe '
                'wheel does not ship and would try to download at start-up (fails offline); '
                "use model_complexity=1, or backend='tasks' with a lite/heavy .task file")
        mp = _mediapipe()
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=not video_mode, model_complexity=model_complexity,
            smooth_landmarks=video_mode, enable_segmentation=False,
            min_detection_confidence=_check_unit('min_detection_confidence',
                                                 min_detection_confidence),
            min_tracking_confidence=_check_unit('min_tracking_confidence',
                                                min_tracking_confidence))

    def process(self, rgb, timestamp_ms: int = 0) -> List[PoseDetection]:
        """timestamp_ms is unused: the legacy graph keeps its own clock."""
        rgb = _check_frame(rgb)
        res = self._pose.process(rgb)
        if res.pose_landmarks is None:
            return []
        world = res.pose_world_landmarks.landmark if res.pose_world_landmarks else None
        return [_to_detection(res.pose_landmarks.landmark, world, rgb.shape[1], rgb.shape[0])]

    def close(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None


def check_task_file(task_file) -> Path:
    """Fail early and clearly on a missing or non-bundle ``.task`` path."""
    import zipfile
    if task_file is None or str(task_file) == '':
        raise PoseEstimationError(
            "backend='tasks' needs task_file (a pose_landmarker .task bundle); "
            'build one offline with tools/make_pose_task.py')
    path = Path(task_file).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f'pose task file not found: {path}')
    if not zipfile.is_zipfile(path):
        raise PoseEstimationError(f'{path} is not a MediaPipe .task bundle (not a zip archive)')
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    needed = {'pose_detector.tflite', 'pose_landmarks_detector.tflite'}
    if not needed <= names:
        raise PoseEstimationError(f'{path} is not a pose landmarker bundle: lacks '
                                  f'{sorted(needed - names)} (has {sorted(names)})')
    return path


class TasksPoseEstimator(PoseEstimator):
    """``mediapipe.tasks`` PoseLandmarker: several people, any .task model."""

    def __init__(self, task_file, num_poses: int = 1, min_detection_confidence: float = 0.5,
                 min_presence_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 video_mode: bool = True):
        path = check_task_file(task_file)
        if int(num_poses) < 1:
            raise PoseEstimationError(f'num_poses must be >= 1, got {num_poses}')
        _mediapipe()
        from mediapipe.tasks.python import BaseOptions, vision
        self._video = video_mode
        self._last_ts = None
        options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO if video_mode else vision.RunningMode.IMAGE,
            num_poses=int(num_poses),
            min_pose_detection_confidence=_check_unit('min_detection_confidence',
                                                      min_detection_confidence),
            min_pose_presence_confidence=_check_unit('min_presence_confidence',
                                                     min_presence_confidence),
            min_tracking_confidence=_check_unit('min_tracking_confidence',
                                                min_tracking_confidence),
            output_segmentation_masks=False)
        try:
            self._landmarker = vision.PoseLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as e:
            raise PoseEstimationError(f'MediaPipe rejected pose task file {path}: {e}') from e

    def process(self, rgb, timestamp_ms: int) -> List[PoseDetection]:
        """In video mode, a timestamp not after the previous one is bumped to previous + 1."""
        import mediapipe as mp
        rgb = _check_frame(rgb)
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
        if self._video:
            ts = int(timestamp_ms)
            if self._last_ts is not None and ts <= self._last_ts:
                ts = self._last_ts + 1
            self._last_ts = ts
            res = self._landmarker.detect_for_video(image, ts)
        else:
            res = self._landmarker.detect(image)
        worlds = res.pose_world_landmarks or [None] * len(res.pose_landmarks)
        return [_to_detection(lms, world, rgb.shape[1], rgb.shape[0])
                for lms, world in zip(res.pose_landmarks, worlds)]

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None


def create_estimator(backend: str = 'legacy', model_complexity: int = 1, task_file=None,
                     min_detection_confidence: float = 0.5,
                     min_tracking_confidence: float = 0.5,
                     min_presence_confidence: float = 0.5, num_poses: int = 1,
                     video_mode: bool = True) -> PoseEstimator:
    """Build a backend from node/CLI parameters (the tasks model is chosen by task_file)."""
    if backend == 'legacy':
        if int(num_poses) != 1:
            raise PoseEstimationError(
                f"the legacy backend detects one person (num_poses={num_poses}); "
                "use backend='tasks' for several")
        return LegacyPoseEstimator(model_complexity, min_detection_confidence,
                                   min_tracking_confidence, video_mode)
    if backend == 'tasks':
        return TasksPoseEstimator(task_file, num_poses, min_detection_confidence,
                                  min_presence_confidence, min_tracking_confidence, video_mode)
    raise PoseEstimationError(f"unknown pose backend {backend!r}; use 'legacy' or 'tasks'")
