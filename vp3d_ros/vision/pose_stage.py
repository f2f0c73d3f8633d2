"""One camera's 2D stage, the same live (pose2d) and offline (vp3d-offline).

MediaPipe on a frame, its 33 landmarks mapped to the keypoint layout, persons tracked
(``person`` = a track id, only the chosen subject(s)), and the rules that keep MediaPipe's
video graph honest: its tracking state belongs to one geometry and one time line, so a new
image size or stamps going backwards restart it (and the person tracks: new ids), and its
timestamps must increase, so they are made to. A leg or arm MediaPipe names the wrong way
round for a run of frames is traded back per person track (``repair_swaps``,
:mod:`vp3d_ros.core.label_swaps`), in the mapped keypoints and the 33 landmarks alike, so
every consumer of the 2D (lifter, world placement, fusion, recordings) sees one labelling. Live, a size that changes on every frame
must not rebuild the graph on every frame: ``size_restart_min_s`` skips frames of yet
another size that soon after a restart.

No ROS here (the node decodes images and publishes); MediaPipe only through the estimator
factory, so this module imports without it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from ..core.keypoint_mapping import map_mediapipe
from ..core.label_swaps import TrackSwaps, limb_permutation
from ..core.skeletons import MEDIAPIPE33, get_layout
from ..core.track_rules import DEFAULT as RULES


@dataclass
class Detections:
    """The persons of one frame, in track order."""
    keypoints: np.ndarray     # (n, J, 2) pixels, in the stage's layout
    confidence: np.ndarray    # (n, J)
    ids: List[int]            # track id of each person
    landmarks: np.ndarray     # (n, 33, 2) MediaPipe landmarks, pixels
    visibility: np.ndarray    # (n, 33)
    world: np.ndarray         # (n, 33, 3) MediaPipe world landmarks (metres); NaN if absent
    size: Tuple[int, int]     # (width, height) of the image


@dataclass
class Restart:
    """Why the stage restarted MediaPipe before this frame (for the node's log)."""
    kind: str   # 'size' | 'backwards' | 'retry'
    why: str


class PoseStage:
    """``process(rgb, stamp_ns)`` -> :class:`Detections`, or None for a frame skipped because
    its size changed again within ``size_restart_min_s`` of the last restart."""

    def __init__(self, make_estimator: Callable[[], object], layout: str, tracking,
                 size_restart_min_s: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 repair_swaps: bool = RULES.repair_swaps):
        self.make_estimator = make_estimator
        self.layout = layout
        self.tracking = tracking
        self.swaps = (TrackSwaps(get_layout(layout), RULES.min_confidence)
                      if repair_swaps else None)
        self.size_restart_min_s = float(size_restart_min_s)
        self.clock = clock
        self.estimator = make_estimator()
        self.size: Optional[Tuple[int, int]] = None
        self.restarted: Optional[Restart] = None   # set by the last process() call
        self._last_stamp_ns: Optional[int] = None
        self._last_ms = -1
        self._size_restart = -float('inf')

    def restart(self, kind: str, why: str) -> None:
        """A fresh MediaPipe graph and fresh person tracks. If building it fails, the next
        frame tries again (``kind`` 'retry')."""
        old, self.estimator = self.estimator, None
        if old is not None:
            try:
                old.close()
            except Exception:  # noqa: BLE001 - the new graph matters, not the old one's exit
                pass
        self._last_ms = -1
        self.tracking.reset()
        if self.swaps is not None:
            self.swaps.reset()
        self.restarted = Restart(kind, why)
        self.estimator = self.make_estimator()

    def process(self, rgb: np.ndarray, stamp_ns: int,
                size: Optional[Tuple[int, int]] = None) -> Optional[Detections]:
        """``size``: the image size to track persons in (default the frame's own)."""
        self.restarted = None
        h, w = rgb.shape[:2]
        if self.estimator is None:  # a restart failed earlier
            self.restart('retry', 'no pose tracker')
        if self.size is not None and self.size != (w, h):
            change = f'image size changed {self.size[0]}x{self.size[1]} -> {w}x{h}'
            now = self.clock()
            if now - self._size_restart < self.size_restart_min_s:
                return None
            self._size_restart = now
            self.restart('size', change)
        elif self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns:
            back_s = (self._last_stamp_ns - stamp_ns) / 1e9
            self.restart('backwards', f'time went backwards by {back_s:.3f} s (bag looping?)')
        self.size, self._last_stamp_ns = (w, h), int(stamp_ns)
        ms = max(int(stamp_ns) // 1_000_000, self._last_ms + 1)  # the graph needs increasing ms
        self._last_ms = ms
        people = self.estimator.process(rgb, ms)
        n = len(people)
        lm = np.array([p.landmarks_px for p in people], dtype=np.float64).reshape(n, 33, 2)
        vis = np.array([p.visibility for p in people], dtype=np.float64).reshape(n, 33)
        kp, conf = map_mediapipe(lm, vis, self.layout)
        keep, ids = self.tracking.step(kp, conf, size or (w, h), stamp_ns / 1e9)
        keep = list(keep)
        world = np.array([p.world_landmarks if p.world_landmarks is not None
                          else np.full((33, 3), np.nan) for p in people],
                         dtype=np.float64).reshape(n, 33, 3)
        det = Detections(kp[keep], conf[keep], list(ids), lm[keep], vis[keep], world[keep],
                         (w, h))
        if self.swaps is not None:
            self._trade_back(det, int(stamp_ns))
        return det

    def _trade_back(self, det: Detections, stamp_ns: int) -> None:
        """Each person's swapped limbs traded back, in every array of the detection."""
        for i, pid in enumerate(det.ids):
            traded = self.swaps.trade(pid, stamp_ns, det.keypoints[i], det.confidence[i])
            if traded is None:
                continue
            perm = limb_permutation(self.swaps.layout, traded)
            det.keypoints[i], det.confidence[i] = det.keypoints[i][perm], det.confidence[i][perm]
            perm33 = limb_permutation(MEDIAPIPE33, traded)
            det.landmarks[i], det.visibility[i] = det.landmarks[i][perm33], det.visibility[i][perm33]
            det.world[i] = det.world[i][perm33]

    def close(self) -> None:
        if self.estimator is not None:
            self.estimator.close()
            self.estimator = None
