"""What flows between the offline stages: a camera's source of images, its 2D frames, and
what the stages add to them (lifted poses, world skeletons)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ...core.windowing import LiftedPose


class OfflineError(ValueError):
    """Input or configuration the offline path cannot use; the message says what to fix."""


@dataclass
class Frame2D:
    """One processed frame of one camera, as its keypoints_2d cloud carries it."""
    stamp_ns: int
    frame_id: str
    size: Tuple[int, int]  # (width, height) used to normalise keypoints
    people: Dict[int, Tuple[np.ndarray, np.ndarray]]  # id -> (J, 2) px, (J,) confidence


@dataclass
class CameraSource:
    """One camera of the input: its name and an iterator over decoded frames."""
    name: str
    label: str  # file or topic, for messages
    total: int  # expected frame count (progress only; 0 = unknown)
    frames: Callable[[], Iterator[Tuple[int, str, np.ndarray, Optional[Tuple[int, int]]]]]


@dataclass
class CameraResult:
    name: str
    frames: List[Frame2D]
    poses: Dict[int, Dict[int, LiftedPose]] = field(default_factory=dict)  # stamp -> id -> pose
    swaps_2d: int = 0       # limb-frames whose left/right labels the 2D stage traded back
    swaps_lifted: int = 0   # ... and the lifting engine (2D from elsewhere: a bag's keypoints)
    # With a calibration: stamp -> id -> (world positions (17, 3), confidence (17,))
    world: Dict[int, Dict[int, Tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    world_frame: str = ''   # frame_id of ``world`` where it is not the rig's (estimated ground)
