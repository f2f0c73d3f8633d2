"""Options declared once (name, default, type, help), read by every front end.

Why: the lifter node's parameters, the CLIs' flags and the Python API (``offline.process``)
had each written the same choices again, with their own defaults and help. An options class
is a frozen dataclass whose fields are made with :func:`option`; the lifter node declares
its fields as ROS parameters (``nodes.common.declare_options``) and the CLIs as flags
(``cli.options.add_options``), so a name, default or help text lives in one place.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

__all__ = ['option', 'fields_of', 'LifterOptions', 'OFFLINE_LIFTER', 'PoseOptions']


def option(default: Any, help: str, choices: Optional[Sequence[str]] = None) -> Any:
    """A dataclass field with its help text (and allowed values) for every front end."""
    meta = {'help': help, 'choices': tuple(choices) if choices else None}
    return dataclasses.field(default=default, metadata=meta)


def fields_of(cls) -> Tuple[dataclasses.Field, ...]:
    """The option fields of an options class, in declaration order."""
    return tuple(f for f in dataclasses.fields(cls) if 'help' in f.metadata)


@dataclass(frozen=True)
class LifterOptions:
    """Which model lifts, and how: the lifter node, ``vp3d-lift`` and ``vp3d-offline``."""
    checkpoint: str = option('', "VideoPose3D checkpoint (.bin); '' = the shipped default for "
                             "'mode'")
    mode: str = option('causal', "which shipped default when no checkpoint is given: 'causal' "
                       "(past frames only, live) or 'symmetric' (past and future frames, "
                       'smoother; (RF-1)/2 frames latency live)', ('causal', 'symmetric'))
    filter_widths: Tuple[int, ...] = option((), 'architecture, e.g. 3,3,3,3,3; empty = from '
                                            'the checkpoint/sidecar')
    channels: int = option(0, 'architecture channels; 0 = from the checkpoint')
    causal: str = option('auto', "the checkpoint is causal: 'true', 'false', or 'auto' = from "
                         'the sidecar (else false)', ('auto', 'true', 'false'))
    input_layout: str = option('auto', "2D keypoint layout the model takes: 'coco', 'h36m' or "
                               "'auto' (sidecar, else h36m); must match pose2d's "
                               'keypoint_layout', ('auto', 'coco', 'h36m'))
    flip: bool = option(True, 'test-time flip augmentation (upstream default: on)')
    device: str = option('cpu', "torch device: 'cpu' or 'cuda' / 'cuda:0' where torch was "
                         'installed with GPU support')
    level_view: bool = option(True, 'where gravity is known (a calibration whose world z is '
                              'up; vp3d-lift --frame world without one: from the subject), lift '
                              'each frame as a level camera aimed at the person sees it (the '
                              'keypoints re-drawn through a turn of the camera, the pose turned '
                              'back: for rolled and steeply pitched rig cameras; geometry.view)')
    trajectory: bool = option(False, "add the checkpoint's trajectory model (model_traj, from "
                              'semi-supervised VideoPose3D training): skeletons at their '
                              'predicted root position in camera coordinates instead of '
                              'root-relative; the pose itself is unchanged')

    def __post_init__(self):
        for f in fields_of(type(self)):
            allowed = f.metadata['choices']
            value = getattr(self, f.name)
            if allowed and str(value).lower() not in allowed:
                q = [repr(c) for c in allowed]
                raise ValueError(f"{f.name} must be {', '.join(q[:-1])} or {q[-1]}, "
                                 f'got {value!r}')
        if any(int(w) < 1 for w in self.filter_widths if w):
            raise ValueError(f'filter_widths must be positive, got {list(self.filter_widths)}')

    @property
    def causal_flag(self) -> Optional[bool]:
        """``causal`` as the checkpoint loader takes it: None = ask the sidecar."""
        return {'auto': None, 'true': True, 'false': False}[str(self.causal).lower()]

    def resolve(self, layout: Optional[str] = None):
        """-> (LoadedCheckpoint, input layout): explicit options, then the sidecar, then the
        shipped default for ``mode`` (see :func:`~vp3d_ros.core.lifter_config.resolve_lifter`).
        ``layout``: a layout that must be used (a second model beside a first one)."""
        from .lifter_config import resolve_lifter
        return resolve_lifter(
            self.checkpoint or None, [int(w) for w in self.filter_widths if w] or None,
            int(self.channels) or None, self.causal_flag,
            layout or (None if self.input_layout == 'auto' else self.input_layout),
            mode=self.mode)


#: Offline lifting has the whole sequence: the shipped symmetric model unless told otherwise.
OFFLINE_LIFTER = LifterOptions(mode='symmetric')


@dataclass(frozen=True)
class PoseOptions:
    """How one camera's 2D stage runs (MediaPipe, person tracking): the pose2d node and
    ``vp3d-offline``."""
    backend: str = option('legacy', "MediaPipe Pose backend: 'legacy' (the 'full' model inside "
                          "the mediapipe wheel, one person, no extra file) or 'tasks' "
                          '(PoseLandmarker: several persons with num_poses; needs task_file, '
                          'made offline with vp3d-make-pose-task out.task)', ('legacy', 'tasks'))
    task_file: str = option('', 'tasks backend: path to a pose_landmarker .task file')
    model_complexity: int = option(1, 'legacy backend: 1 = full (bundled)')
    min_detection_confidence: float = option(0.5, 'person detection threshold')
    min_tracking_confidence: float = option(0.5, 'landmark tracking threshold')
    min_presence_confidence: float = option(0.5, 'tasks backend: presence threshold')
    num_poses: int = option(1, 'tasks backend: maximum persons per image')
    subject: str = option('all', "persons kept: 'all' tracks, or one subject: 'largest', "
                          "'central', 'region:x0,y0,x1,y1' (nearest that box, normalised image "
                          "coordinates) or 'track:<id>'; kept while its track lives")
    track_gate: float = option(0.5, "person tracking: a detection joins a track if its mean "
                               "joint distance to the track's prediction is at most this many "
                               'person sizes (bounding-box diagonals); up to 1.6 times that '
                               'while the person is unseen')
    track_max_age: int = option(30, 'person tracking: frames a person may go unseen and keep '
                                'their id (then the track ends)')
    track_confirm_hits: int = option(2, 'person tracking: frames a new person must be seen '
                                     'before getting an id (at once when nobody is tracked)')

    def __post_init__(self):
        if self.backend not in ('legacy', 'tasks'):
            raise ValueError(f"backend must be 'legacy' or 'tasks', got {self.backend!r}")

    def estimator_args(self) -> dict:
        """Keyword arguments of ``vision.pose_estimation.create_estimator``."""
        return dict(backend=self.backend, model_complexity=int(self.model_complexity),
                    task_file=self.task_file or None,
                    min_detection_confidence=float(self.min_detection_confidence),
                    min_tracking_confidence=float(self.min_tracking_confidence),
                    min_presence_confidence=float(self.min_presence_confidence),
                    num_poses=int(self.num_poses))

    def tracking(self):
        """A fresh :class:`~vp3d_ros.core.tracking.PeopleTracking` (ValueError if the
        subject or the gates are wrong)."""
        from .tracking import PeopleTracking, TrackerConfig
        gate = float(self.track_gate)
        return PeopleTracking(self.subject, TrackerConfig(
            gate=gate, max_gate=1.6 * gate, max_age=int(self.track_max_age),
            confirm_hits=int(self.track_confirm_hits)))
