"""The rules that turn a person's 2D track into lifter windows, declared once.

Live (lifter node parameters), offline (``vp3d-offline`` options, ``offline.process``) and
the windows themselves (:class:`vp3d_ros.core.windowing.TrackWindow`) take their defaults from
:data:`DEFAULT`, so the two paths cannot drift apart. No torch, no ROS: a CLI's ``--help``
reads it without loading a model.
"""
from __future__ import annotations

from dataclasses import dataclass

from .options import option


@dataclass(frozen=True)
class TrackRules:
    max_gap_frames: int = option(10, 'missing-person frames bridged by interpolation')
    max_gap_s: float = option(0.5, 'a longer gap in stamps restarts the window')
    # MediaPipe's visibility says whether a joint is seen, not how well it is placed: an
    # occluded joint keeps a useful guess. On the bundled clip cam03's right wrist sat at
    # visibility 0.16-0.19 for 24 frames, 39 px from the multi-view reference (32 px when
    # seen); held at 0.2 it was 134 px off and the camera's P-MPJPE went 78 -> 85 mm.
    min_confidence: float = option(0.1, 'joints below this hold their last position')
    # MediaPipe names a leg, an arm or the whole body the wrong way round for runs of frames
    # (bundled clip, cam02: 21 leg- and 30 arm-frames of 100, mirrored there): core.label_swaps.
    repair_swaps: bool = option(True, 'trade back left/right labels a detector swaps for a '
                                "run of frames (judged from the track's continuity, for at "
                                'most 1 s at a time)')


DEFAULT = TrackRules()
