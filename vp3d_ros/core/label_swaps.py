"""Left/right label swaps in one camera's 2D track, traded back from the track's continuity.

MediaPipe, like every single-image 2D detector, now and then names a leg, an arm or the
whole body the wrong way round (a person seen from behind taken as facing the camera): the
keypoints stay on the limbs, only their names trade places, for a run of frames. Lifted as
given, those frames come out mirrored. On the bundled 4-camera clip cam02 does it for 21
leg- and 30 arm-frames of its 100, 194 px from the multi-view reference where the traded
names are 15 px off, and its skeletons (the lifter's and MediaPipe's own world landmarks
alike) sat near 200 mm P-MPJPE there (``benchmarks/real_clip.py``, ``label_swaps.py``).

Between two frames a limb moves a little, never onto its twin's place. So a limb whose
keypoints match the track's previous frame far better with left and right traded (that
distance below :data:`RATIO` of the kept one, and shorter by at least :data:`MIN_JUMP` of
the person's size) has them traded back. The limb includes its hip or shoulder, which a
fast arm or leg swing does not move. (Predicting the frame at the last velocity instead
traded back fewer swaps in a one-off trial of the same kind: 46% left against 37%.)

A swap that begins while a limb and its twin overlap in the image (legs crossing seen from
the side) cannot be seen where it begins, and its end then looks like a beginning: so a
trade is held at most :data:`MAX_RUN_S`, after which the detector's labels are taken as
meant. Measured (``benchmarks/label_swaps.py``, held-out Human3.6M S8 and CMU takes through
random cameras): with MediaPipe-like swap runs injected (half of them begun where the legs
overlap), a third of the mislabelled limb-frames is left (25,670 -> 9,100; one trade in six
is wrong, mostly ends of unseen beginnings); on the same motion without swaps, no limb is
traded in 136,604 frames (68,324 at half the rate).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .skeletons import SkeletonLayout

RATIO = 0.5      # traded distance / kept distance below which a limb is traded back
MIN_JUMP = 0.05  # ... and the traded distance shorter by this share of the person's size
MAX_RUN_S = 1.0  # a trade held this long ends: the detector's labels are taken as meant


class SwapRepair:
    """One track's swap state: :meth:`permutation` for a new frame, :meth:`accept` for the
    frame as the track took it (or :meth:`step` for both), :meth:`reset` at a new segment."""

    def __init__(self, layout: SkeletonLayout, ratio: float = RATIO,
                 min_jump: float = MIN_JUMP, max_run_s: float = MAX_RUN_S):
        twin = layout.flip_permutation()
        self.limbs = [(np.array(limb + tuple(twin[j] for j in limb)),
                       np.array(tuple(twin[j] for j in limb) + limb)) for limb in layout.limbs]
        self.num_joints = layout.num_joints
        self.ratio, self.min_jump = ratio, min_jump
        self.max_run_ns = int(max_run_s * 1e9)
        self.repaired = 0    # limb-frames traded back since the track began
        self.traded: List[bool] = [False] * len(self.limbs)   # per limb, the last frame
        self._since: List[Optional[int]] = [None] * len(self.limbs)  # stamp a trade began
        self._last: Optional[np.ndarray] = None   # the last frame as the track took it

    def reset(self):
        """A new segment: nothing to be continuous with."""
        self._since = [None] * len(self.limbs)
        self._last = None

    def accept(self, keypoints: np.ndarray):
        """The frame as the track took it (traded back, weak joints held)."""
        self._last = np.array(keypoints, dtype=np.float64)

    def step(self, stamp_ns: int, keypoints: np.ndarray, seen: np.ndarray,
             hold: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """:meth:`permutation`, then :meth:`accept` of the frame as a track takes it: traded
        back, the ``hold`` joints (default: those not seen) at their last position, or at the
        centre of the others before there is one."""
        kp = np.array(keypoints, dtype=np.float64)
        hold = ~seen if hold is None else hold
        perm = self.permutation(stamp_ns, kp, seen)
        if perm is not None:
            kp, hold = kp[perm], hold[perm]
        if hold.any():
            if self._last is not None:
                kp[hold] = self._last[hold]
            else:
                kp[hold] = kp[~hold].mean(axis=0) if (~hold).any() else 0.0
        self.accept(kp)
        return perm

    def permutation(self, stamp_ns: int, keypoints: np.ndarray, seen: np.ndarray
                    ) -> Optional[np.ndarray]:
        """Index order that trades back this frame's swapped limbs (None: none swapped).

        keypoints (J, 2) as detected; seen (J,) the joints detected well enough to judge."""
        expected = self._last
        self.traded = [False] * len(self.limbs)
        if expected is None or seen.sum() < 2:
            return None
        size = float(np.ptp(keypoints[seen], axis=0).max())
        perm = np.arange(self.num_joints)
        for k, (kept, traded) in enumerate(self.limbs):
            both = seen[kept] & seen[traded]
            if both.sum() >= 2:
                target = expected[kept[both]]
                d_kept = np.linalg.norm(keypoints[kept[both]] - target, axis=-1).mean()
                d_traded = np.linalg.norm(keypoints[traded[both]] - target, axis=-1).mean()
                swapped = d_traded < self.ratio * d_kept and d_kept - d_traded > self.min_jump * size
                if not swapped:
                    self._since[k] = None
                elif self._since[k] is None:
                    self._since[k] = stamp_ns
            # a limb that cannot be judged this frame keeps its state
            if self._since[k] is None:
                continue
            if stamp_ns - self._since[k] > self.max_run_ns:
                self._since[k] = None   # held this long: the detector means it
                continue
            perm[kept] = traded
            self.traded[k] = True
            self.repaired += 1
        return None if np.array_equal(perm, np.arange(self.num_joints)) else perm


def limb_permutation(layout: SkeletonLayout, traded: Sequence[bool]) -> np.ndarray:
    """Index order of ``layout`` that trades the limbs flagged in ``traded`` (in the order of
    ``layout.limbs``: legs, then arms, in every layout), e.g. to trade MediaPipe's 33
    landmarks as the keypoints mapped from them were traded."""
    twin = layout.flip_permutation()
    perm = np.arange(layout.num_joints)
    for limb, on in zip(layout.limbs, traded):
        if on:
            for j in limb:
                perm[j], perm[twin[j]] = twin[j], j
    return perm


class TrackSwaps:
    """A :class:`SwapRepair` per person track of a 2D stage (ids from ``core.tracking``);
    a track unseen for ``forget_s`` starts afresh."""

    def __init__(self, layout: SkeletonLayout, min_confidence: float, forget_s: float = 1.0):
        self.layout, self.min_confidence = layout, min_confidence
        self.forget_ns = int(forget_s * 1e9)
        self.repaired = 0
        self._tracks: Dict[int, Tuple[SwapRepair, int]] = {}

    def reset(self):
        self._tracks.clear()

    def trade(self, pid: int, stamp_ns: int, keypoints: np.ndarray, confidence: np.ndarray
              ) -> Optional[List[bool]]:
        """One person's frame -> the limbs to trade back (None: none); the caller trades
        its keypoints with ``limb_permutation``."""
        self._tracks = {i: v for i, v in self._tracks.items()
                        if stamp_ns - v[1] <= self.forget_ns}
        repair = self._tracks[pid][0] if pid in self._tracks else SwapRepair(self.layout)
        self._tracks[pid] = (repair, stamp_ns)
        finite = np.isfinite(keypoints).all(axis=-1)
        seen = finite & (np.asarray(confidence) >= self.min_confidence)
        if repair.step(stamp_ns, keypoints, seen, hold=~finite) is None:
            return None
        self.repaired += sum(repair.traded)
        return list(repair.traded)


def trade_back_track(keypoints: np.ndarray, seen: np.ndarray, stamps_ns: np.ndarray,
                     layout: SkeletonLayout, **kw) -> np.ndarray:
    """A whole track at once, as :class:`~vp3d_ros.core.windowing.TrackWindow` judges it
    frame by frame (joints not seen hold their last position): keypoints (T, J, 2), seen
    (T, J) -> (T, J) index orders that trade the swapped limbs back (for applying the same
    trades to anything labelled like the keypoints: confidences, a detector's 3D)."""
    repair = SwapRepair(layout, **kw)
    perms = np.tile(np.arange(layout.num_joints), (len(keypoints), 1))
    for t, (kp, ok) in enumerate(zip(keypoints, seen)):
        ok = ok & np.all(np.isfinite(kp), axis=-1)
        if ok.any():
            perm = repair.step(int(stamps_ns[t]), kp, ok)
            if perm is not None:
                perms[t] = perm
    return perms
