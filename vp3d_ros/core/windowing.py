"""Per-track temporal windows for live lifting: gaps, resets and stamps around a
:class:`~vp3d_ros.core.lifter.StreamingLifter`.

A track is one person seen by one camera. Rules (what a rig needs):

- Every lifted frame keeps its own stamp: poses come out in input order, each with the
  stamp of the 2D frame it belongs to (symmetric models emit (RF-1)/2 frames late).
- Short gaps (a person missing for up to ``max_gap_frames`` frames, or single joints with
  low confidence) are bridged: missing frames are linearly interpolated once the person is
  back, weak joints hold their last confident position.
- Long gaps, time running backwards (a replayed bag looping) and an image-size change
  end the segment: the window is finished with upstream edge padding (so the last frames
  still get poses) and restarted. Duplicate stamps are ignored.
- A view (:class:`KeypointView`, e.g. :class:`vp3d_ros.geometry.view.LevelView`) re-draws
  each frame's keypoints before they are lifted and turns its pose back after: the window
  keeps each frame's undo with its stamp, so poses come out in the real camera's frame.
- A joint more than ``OUTSIDE_IMAGE`` image sizes outside the image (a finite but absurd
  coordinate, e.g. 3e38 px) is no detection: it is held like a weak joint and counted
  (``stats.out_of_image``). Lifted, one such value made that frame and the next receptive
  field's worth of skeletons come out at 1e33 m: what enters the window must stay bounded.
- A limb the detector names the wrong way round for a run of frames (left for right) is
  traded back (``repair_swaps``, :mod:`vp3d_ros.core.label_swaps`; counted in
  ``stats.swaps_repaired``), judged against the track's previous frame.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, List, Optional, Protocol, Tuple

import numpy as np

from .label_swaps import SwapRepair
from .track_rules import DEFAULT as RULES


class WindowLifter(Protocol):
    """What a :class:`TrackWindow` drives: :class:`~vp3d_ros.core.lifter.StreamingLifter`
    (live; ``deferred`` ones are lifted by :func:`~vp3d_ros.core.lifter.lift_queued`) and
    :class:`~vp3d_ros.core.lifter.SegmentLifter` (offline, a segment at a time)."""

    due: bool            # frames are queued for a shared pass
    layout: object       # the SkeletonLayout of the keypoints it takes

    def push(self, keypoints_px: np.ndarray) -> list:
        """One frame -> [(frame_index, pose)] that became available (maybe none)."""

    def finish(self) -> list:
        """End of the segment: every pose still owed; then empty."""

    @property
    def pending(self) -> int:
        """Frames pushed whose pose has not come out yet."""

    @property
    def frames_pushed(self) -> int:
        """Frames pushed since the last finish."""


class KeypointView(Protocol):
    """A per-frame change of camera the lifter sees the keypoints through."""

    def to_view(self, keypoints_px: np.ndarray) -> Tuple[np.ndarray, object]:
        """One frame (J, 2) pixels -> (the keypoints in the view, what undoes it)."""

    def from_view(self, pose: np.ndarray, undo: object) -> np.ndarray:
        """A pose (J, 3) lifted in the view -> the real camera's frame."""


#: (width, height) -> the view of a track's images, or None (lift the pixels as they are).
ViewFactory = Callable[[float, float], Optional[KeypointView]]


@dataclass
class LiftedPose:
    stamp_ns: int
    pose: np.ndarray  # (17, 3) metres
    confidence: np.ndarray  # (17,)
    bridged: bool = False  # interpolated across a detection gap


@dataclass
class WindowStats:
    frames_in: int = 0
    poses_out: int = 0
    bridged: int = 0
    resets: int = 0
    duplicates: int = 0
    out_of_image: int = 0  # joints refused for lying far outside the image
    swaps_repaired: int = 0  # limb-frames whose left/right labels were traded back
    last_reset_reason: str = ''


# Joints this many image widths/heights beyond the image border are not detections. MediaPipe
# places occluded or cut-off joints just outside the frame (a fraction of its size), never
# a whole image size away.
OUTSIDE_IMAGE = 1.0


def outside_image(keypoints: np.ndarray, image_size: Tuple[float, float],
                  margin: float = OUTSIDE_IMAGE) -> np.ndarray:
    """(J, 2) pixels -> (J,) bool: finite joints further than ``margin`` image sizes outside
    the image (non-finite ones are not flagged here; they are handled as weak joints)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    w, h = float(image_size[0]), float(image_size[1])
    lo = np.array([-margin * w, -margin * h])
    hi = np.array([(1 + margin) * w, (1 + margin) * h])
    with np.errstate(invalid='ignore'):
        return np.all(np.isfinite(kp), axis=1) & np.any((kp < lo) | (kp > hi), axis=1)


# Plausible stamps: not negative (the int32 seconds of 1901), not zero (a header never
# stamped); at most a day ahead of the local clock, or a warning (the int32 maximum,
# 2038-01-19, is a garbage header too). Small times are kept on purpose: video time starts
# at 0 (video_source's stamp_source 'video', vp3d-offline bags of videos, simulations), so
# 'sec 0, nsec 1' is the second frame of a video, not an unstamped header. Nothing here
# needs the stamps to be near the clock, only ordered.
FUTURE_SLACK_NS = 86_400 * 1_000_000_000


def stamp_problem(stamp_ns: int, now_ns: int, sim_time: bool = False) -> Optional[Tuple[str, str]]:
    """('refuse' | 'warn', why) for an implausible header stamp, None for a plausible one.

    Refused: negative stamps (1901) and zero. More than a day ahead of ``now_ns`` (wall
    clock only, not ``use_sim_time``): a warning, the frame is kept (a camera clock set
    wrong loses nothing), but the windows restart when time then goes back."""
    if stamp_ns < 0:
        return 'refuse', 'negative stamp (before 1970)'
    if stamp_ns == 0:
        return 'refuse', 'zero stamp'
    if sim_time:
        return None
    if now_ns and stamp_ns - now_ns > FUTURE_SLACK_NS:
        return 'warn', (f'stamp {(stamp_ns - now_ns) / 86_400e9:.1f} days ahead of this '
                        "machine's clock")
    return None


class StampGaps:
    """Frames missing from one camera's stamp sequence, by the camera's own period.

    DDS drops samples silently where a reader's keep-last history overflows (Fast DDS
    reports no ``message_lost`` event for that: measured, 1995 of 2000 lost, no event), so
    the loss is read from the stamps: an interval of k periods means k - 1 frames missing.
    The period is a low quantile of the recent intervals between consecutive frames,
    learned while the stream is whole (gaps do not enter it, so a long flood with heavy
    loss is still measured against the rate from before it); after ``relearn`` gapped
    intervals in a row the camera is taken to have changed its rate and the period is
    learned again. A longer interval than ``max_gap_ns`` is a pause, not loss, unless the
    two frames arrived much closer together than their stamps are (a backlog being dropped:
    ``received_ns``, the local receive times); time going backwards starts afresh. Frames an
    upstream node dropped on purpose (pose2d's ``dropped``) are gaps here too."""

    def __init__(self, max_gap_ns: int, window: int = 64, min_intervals: int = 8,
                 relearn: int = 256):
        self.max_gap_ns = int(max_gap_ns)
        self.min_intervals = min_intervals
        self.relearn = relearn
        self._normal: Deque[int] = deque(maxlen=window)  # intervals of consecutive frames
        self._gapped = 0  # gapped intervals in a row
        self._last: Optional[int] = None
        self._last_rx: Optional[int] = None
        self.missing = 0

    @property
    def period_ns(self) -> Optional[float]:
        if len(self._normal) < self.min_intervals:
            return None
        return float(np.quantile(np.asarray(self._normal), 0.2))

    def add(self, stamp_ns: int, received_ns: Optional[int] = None) -> int:
        """One received stamp -> frames missing just before it (0 when not known)."""
        last, self._last = self._last, stamp_ns
        last_rx, self._last_rx = self._last_rx, received_ns
        if last is None or stamp_ns == last:
            return 0
        if stamp_ns < last:  # a bag looping, a restart: a new sequence
            self._normal.clear()
            self._gapped = 0
            return 0
        d = stamp_ns - last
        period = self.period_ns
        if period is None or d < 1.5 * period:
            self._normal.append(d)
            self._gapped = 0
            return 0
        if d > self.max_gap_ns and (received_ns is None or last_rx is None
                                    or received_ns - last_rx > d / 2):
            return 0  # the stream paused (it arrived as slowly as it was stamped)
        self._gapped += 1
        if self._gapped >= self.relearn:  # the camera's rate changed: learn it again
            self._normal.clear()
            self._gapped = 0
            return 0
        n = int(round(d / period)) - 1
        self.missing += n
        return n


class TrackWindow:
    def __init__(self, make_lifter: Callable[[float, float], WindowLifter],
                 max_gap_frames: int = RULES.max_gap_frames, max_gap_s: float = RULES.max_gap_s,
                 min_confidence: float = RULES.min_confidence,
                 make_view: Optional[ViewFactory] = None,
                 repair_swaps: bool = RULES.repair_swaps):
        self._make = make_lifter
        self.repair_swaps = repair_swaps
        self._swaps: Optional[SwapRepair] = None
        self._make_view = make_view
        self.view: Optional[KeypointView] = None
        self.max_gap_frames = max_gap_frames
        self.max_gap_ns = int(max_gap_s * 1e9)
        self.min_confidence = min_confidence
        self.lifter: Optional[WindowLifter] = None
        self.size: Optional[Tuple[float, float]] = None
        self.stats = WindowStats()
        # per pushed frame: stamp, confidence, bridged, (view, undo) or None
        self._stamps: Deque[Tuple[int, np.ndarray, bool, Optional[tuple]]] = deque()
        self._last_stamp: Optional[int] = None
        self._last_kp: Optional[np.ndarray] = None
        self._last_good_stamp: Optional[int] = None
        self._missing: List[int] = []  # stamps of frames without this person, since last good

    @property
    def fill(self) -> int:
        """Frames waiting for future context (0 for causal models)."""
        return self.lifter.pending if self.lifter else 0

    @property
    def last_stamp(self) -> Optional[int]:
        return self._last_stamp

    @property
    def idle(self) -> bool:
        """Nothing pushed, nothing owed, no gap being bridged: the track holds no state (a
        person gone with an idle track can be forgotten)."""
        return not self._missing and (self.lifter is None or self.lifter.frames_pushed == 0)

    def collect(self, results) -> List[LiftedPose]:
        """The lifter's [(frame_index, pose)] -> poses with their frames' stamps (in order;
        also for frames a deferred lifter queued and :func:`lift_queued` lifted later)."""
        out = []
        for _, pose in results:
            stamp, conf, bridged, undo = self._stamps.popleft()
            if undo is not None:
                pose = undo[0].from_view(pose, undo[1])
            out.append(LiftedPose(stamp, pose, conf, bridged))
        self.stats.poses_out += len(out)
        return out

    def finish(self, reason: str = '') -> List[LiftedPose]:
        """End the segment: emit every owed pose (edge padding), then start afresh."""
        out = self.collect(self.lifter.finish()) if self.lifter else []
        if reason and (self._last_kp is not None or out):
            self.stats.resets += 1
            self.stats.last_reset_reason = reason
        self._stamps.clear()
        self._last_kp = None
        self._last_good_stamp = None
        self._missing = []
        if self._swaps is not None:
            self._swaps.reset()
        return out

    def _push(self, stamp, kp, conf, bridged=False) -> List[LiftedPose]:
        # Pushed before its stamp is kept: a frame the lifter refuses leaves no stamp behind.
        undo = None
        if self.view is not None:
            kp, token = self.view.to_view(kp)
            undo = (self.view, token)
        results = self.lifter.push(kp)
        self._stamps.append((stamp, conf, bridged, undo))
        self.stats.bridged += int(bridged)
        return self.collect(results)

    def add(self, stamp_ns: int, keypoints: Optional[np.ndarray], confidence: Optional[np.ndarray],
            image_size: Tuple[float, float]) -> List[LiftedPose]:
        """One 2D frame (keypoints None = person not seen) -> poses that became available.

        A deferred lifter only queues the frame: lift it with
        :func:`~vp3d_ros.core.lifter.lift_queued` (with other tracks' frames) and pass its
        results to :meth:`collect`. Poses owed by a window restart still come back here."""
        out: List[LiftedPose] = []
        self.stats.frames_in += 1
        if self._last_stamp is not None:
            if stamp_ns == self._last_stamp:
                self.stats.duplicates += 1
                return out
            if stamp_ns < self._last_stamp:
                out += self.finish('time went backwards')
            elif stamp_ns - self._last_stamp > self.max_gap_ns:
                out += self.finish('gap in time')
        if self.size != tuple(image_size):
            out += self.finish('image size changed') if self.size else []
            self.size = tuple(image_size)
            self.lifter = self._make(*self.size)
            self.view = self._make_view(*self.size) if self._make_view else None
            layout = getattr(self.lifter, 'layout', None)
            self._swaps = (SwapRepair(layout) if self.repair_swaps and layout is not None
                           and layout.limbs else None)
        self._last_stamp = stamp_ns

        kp, conf = self._clean(stamp_ns, keypoints, confidence)
        if kp is None:
            if self._last_kp is not None:
                self._missing.append(stamp_ns)
                if len(self._missing) > self.max_gap_frames:
                    out += self.finish('person lost')
            return out
        if self._missing and self._last_kp is not None:
            # Bridge: interpolate the missing frames between the last and this detection.
            t0, t1 = self._last_good_stamp, stamp_ns
            for s in self._missing:
                a = (s - t0) / max(1, t1 - t0)
                out += self._push(s, (1 - a) * self._last_kp + a * kp, np.zeros_like(conf), True)
        self._missing = []
        self._last_kp = kp
        self._last_good_stamp = stamp_ns
        out += self._push(stamp_ns, kp, conf)
        return out

    def _clean(self, stamp_ns, keypoints, confidence):
        """Swapped limbs traded back; non-finite, weak or far-outside-the-image joints hold
        their last confident value; None if nobody is there."""
        if keypoints is None:
            return None, None
        kp = np.array(keypoints, dtype=np.float64)
        # A non-finite confidence says nothing: the joint counts as weak (NaN, and inf too,
        # which would otherwise be published as an infinitely confident joint).
        conf = np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=0.0, posinf=0.0,
                             neginf=0.0)
        far = outside_image(kp, self.size)
        if far.any():
            self.stats.out_of_image += int(far.sum())
            conf = conf.copy()
            conf[far] = 0.0  # published as what it is: no detection
        bad = ~np.all(np.isfinite(kp), axis=1) | far | (conf < self.min_confidence)
        if bad.all():
            return None, None
        if self._swaps is not None:
            perm = self._swaps.permutation(stamp_ns, kp, ~bad)
            if perm is not None:
                kp, conf, bad = kp[perm], conf[perm], bad[perm]
                self.stats.swaps_repaired = self._swaps.repaired
        if bad.any():
            if self._last_kp is not None:
                kp[bad] = self._last_kp[bad]
            else:  # nothing to hold yet: put weak joints on the centre of the confident ones
                kp[bad] = kp[~bad].mean(axis=0)
        if self._swaps is not None:
            self._swaps.accept(kp)
        return kp, conf
