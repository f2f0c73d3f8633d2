"""Stable person identities in one camera's 2D stream, and the choice of a subject.

Why: MediaPipe reports the people of a frame in an order of its own; used as the person id,
that order swaps people between frames, and the lifter (one temporal window per id) then
mixes two people in one window. Here each frame's skeletons are matched to the people of
the previous frames, so ``person`` in ``keypoints_2d`` is a track id that stays with one
person, ends when that person is gone and is never given to anyone else.

Method (ByteTrack/OC-SORT style association on keypoints instead of boxes):

- Cost of a (track, detection) pair: the confidence-weighted mean distance between the
  detection's joints and the track's predicted joints, divided by the person's size (the
  geometric mean of the track's and the detection's bounding-box diagonals), so one gate
  means the same for a person near the camera and one far away. Prediction: constant
  velocity per track, estimated from joint displacements between matched observations
  (also across missed frames, as OC-SORT re-estimates from observations).
- Hungarian assignment (``scipy.optimize.linear_sum_assignment``) with a gate that widens
  while a track is unseen. Confident detections are matched first; weak ones only keep
  already confirmed tracks alive and never start a track (ByteTrack's two stages).
- Lifecycle: tentative (``confirm_hits`` matched frames, no id yet) -> confirmed (gets the
  next id of a counter: ids are never reused) -> lost (unseen; predicted for up to
  ``max_age`` frames, recovered by a match within the gate) -> ended. A person who
  reappears far from the prediction is a new track with a new id, so the lifter starts a
  new window instead of interpolating across two people. When nobody is tracked at all
  (stream start), confident detections are confirmed at once (ByteTrack's first frame).

:class:`SubjectSelector` picks whom to output on single-subject rigs (largest, most
central, nearest a region, a fixed id, or all) and sticks to that track while it lives.
Pure numpy/scipy: no rclpy, no mediapipe.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

TENTATIVE, CONFIRMED, LOST, ENDED = 'tentative', 'confirmed', 'lost', 'ended'
_FAR = 1e6  # cost of a gated-out pair in the assignment


@dataclass(frozen=True)
class TrackerConfig:
    """Association gates and lifecycle; distances are in units of the person's size."""
    gate: float = 0.5  # a match's cost at most this (mean joint distance / person size)
    gate_growth: float = 0.05  # the gate widens by this per frame a track goes unseen ...
    max_gate: float = 0.8  # ... up to this
    duplicate: float = 0.15  # two detections closer than this are one person (the weaker goes)
    high_score: float = 0.5  # detections at least this confident are matched first, start tracks
    min_score: float = 0.1  # weaker detections are ignored
    joint_confidence: float = 0.3  # joints below this neither measure size nor motion
    confirm_hits: int = 2  # matched frames before a track gets an id (1: at once)
    max_age: int = 30  # frames a lost track is predicted before it ends
    velocity_smoothing: float = 0.5  # weight of the newest velocity observation
    max_speed: float = 4.0  # person sizes per second at most (detector jitter is no motion)
    predict_s: float = 0.3  # an unseen person's predicted motion fades over this time

    def __post_init__(self):
        for name in ('gate', 'max_gate'):
            if not getattr(self, name) > 0:
                raise ValueError(f'tracker {name} must be > 0, got {getattr(self, name)}')
        if self.max_gate < self.gate:
            raise ValueError(f'tracker max_gate ({self.max_gate}) must be >= gate ({self.gate})')
        if self.gate_growth < 0:
            raise ValueError(f'tracker gate_growth must be >= 0, got {self.gate_growth}')
        for name in ('high_score', 'min_score', 'joint_confidence'):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f'tracker {name} must be in [0, 1], got {getattr(self, name)}')
        if self.min_score > self.high_score:
            raise ValueError(f'tracker min_score ({self.min_score}) must be <= high_score '
                             f'({self.high_score})')
        if int(self.confirm_hits) < 1:
            raise ValueError(f'tracker confirm_hits must be >= 1, got {self.confirm_hits}')
        if int(self.max_age) < 0:
            raise ValueError(f'tracker max_age must be >= 0, got {self.max_age}')
        if self.duplicate < 0:
            raise ValueError(f'tracker duplicate must be >= 0, got {self.duplicate}')
        for name in ('max_speed', 'predict_s'):
            if not getattr(self, name) > 0:
                raise ValueError(f'tracker {name} must be > 0, got {getattr(self, name)}')
        if not 0.0 < self.velocity_smoothing <= 1.0:
            raise ValueError('tracker velocity_smoothing must be in (0, 1], got '
                             f'{self.velocity_smoothing}')


@dataclass
class Track:
    """One person as the tracker knows them; ``id`` is None while tentative."""
    key: int  # internal, also for tentative tracks
    keypoints: np.ndarray  # (J, 2) last observation
    confidence: np.ndarray  # (J,)
    scale: float  # smoothed bounding-box diagonal of the confident joints
    time: float  # of the last observation
    id: Optional[int] = None
    state: str = TENTATIVE
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    has_velocity: bool = False
    hits: int = 1
    misses: int = 0

    def predict(self, t: float, fade_s: float) -> np.ndarray:
        """Constant velocity that fades over ``fade_s``: a few frames ahead it is linear
        motion, an unseen person is not extrapolated without bound."""
        dt = max(0.0, t - self.time)
        return self.keypoints + self.velocity * fade_s * (1.0 - np.exp(-dt / fade_s))

    def centre(self, thr: float) -> np.ndarray:
        good = self.confidence >= thr
        return self.keypoints[good if good.any() else slice(None)].mean(axis=0)


def _scales(kp: np.ndarray, conf: np.ndarray, thr: float) -> np.ndarray:
    """(N, J, 2), (N, J) -> (N,) bounding-box diagonals of the confident joints (of the
    joints seen at all where fewer than two are confident)."""
    if not len(kp):
        return np.zeros(0)
    good = conf >= thr
    good = np.where(good.sum(axis=1, keepdims=True) >= 2, good, conf > 0)
    good = np.where(good.sum(axis=1, keepdims=True) >= 2, good, True)[..., None]
    lo = np.where(good, kp, np.inf).min(axis=1)
    hi = np.where(good, kp, -np.inf).max(axis=1)
    return np.maximum(np.sqrt(((hi - lo) ** 2).sum(axis=1)), 1e-6)


def _assign(cost: np.ndarray, gates: np.ndarray, solve) -> List[Tuple[int, int]]:
    """Minimum-cost matching of rows to columns (``solve``: scipy's
    linear_sum_assignment), pairs over their row's gate left out."""
    if cost.size == 0:
        return []
    c = np.where(cost <= gates[:, None], cost, _FAR)
    rows, cols = solve(c)
    return [(r, k) for r, k in zip(rows, cols) if c[r, k] < _FAR]


class PersonTracker:
    """Frame-to-frame association for one camera: ``update`` once per processed frame."""

    def __init__(self, config: Optional[TrackerConfig] = None):
        # Imported here, not at the first frame: scipy.optimize takes a second to import.
        from scipy.optimize import linear_sum_assignment
        self._solve = linear_sum_assignment
        self.config = config or TrackerConfig()
        self.tracks: List[Track] = []
        self.counts = {'started': 0, 'lost': 0, 'recovered': 0, 'ended': 0}
        self._next_id = 0
        self._next_key = 0
        self._frame = 0

    @property
    def live_ids(self) -> List[int]:
        """Ids of confirmed and lost tracks (those that may still be output)."""
        return [t.id for t in self.tracks if t.id is not None]

    def reset(self) -> None:
        """End every track (a new image geometry or time line); ids keep counting."""
        self.counts['ended'] += sum(1 for t in self.tracks if t.id is not None)
        self.tracks = []

    def _cost(self, tracks: Sequence[Track], kp, conf, scales, t) -> np.ndarray:
        thr = self.config.joint_confidence
        pred = np.array([tr.predict(t, self.config.predict_s) for tr in tracks])  # (T, J, 2)
        tconf = np.array([tr.confidence for tr in tracks])  # (T, J)
        tscale = np.array([tr.scale for tr in tracks])
        w = tconf[:, None, :] * conf[None, :, :]  # (T, D, J)
        strong = (tconf[:, None, :] >= thr) & (conf[None, :, :] >= thr)
        ws = np.where(strong, w, 0.0)
        # Pairs with no joint confident in both fall back to all joints, weighted.
        ws = np.where(ws.sum(axis=2, keepdims=True) > 0, ws, w)
        dist = np.sqrt(((pred[:, None] - kp[None]) ** 2).sum(axis=3))  # (T, D, J)
        total = ws.sum(axis=2)
        mean = np.where(total > 0, (ws * dist).sum(axis=2) / np.maximum(total, 1e-12), np.inf)
        return mean / np.sqrt(tscale[:, None] * scales[None, :])

    def _suppress_duplicates(self, kp, conf, scales, score):
        """A detector may report one person twice (two overlapping regions): of detections
        whose joints lie within ``duplicate`` person sizes of each other, only the most
        confident stays (its rivals' scores become 0: ignored)."""
        n, thr = len(kp), self.config.joint_confidence
        if n < 2 or self.config.duplicate <= 0:
            return score
        both = (conf[:, None] >= thr) & (conf[None] >= thr)  # (N, N, J)
        dist = np.sqrt(((kp[:, None] - kp[None]) ** 2).sum(axis=3))
        count = both.sum(axis=2)
        mean = (dist * both).sum(axis=2) / np.maximum(count, 1)
        same = (count >= 3) & (mean < self.config.duplicate * np.sqrt(np.outer(scales, scales)))
        np.fill_diagonal(same, False)
        if not same.any():
            return score
        score = score.copy()
        for i in np.argsort(-score, kind='stable'):  # the most confident of a group stays
            if score[i] > 0:
                score[same[i] & (score <= score[i])] = 0.0
        return score

    def _gate(self, tr: Track) -> float:
        c = self.config
        return min(c.max_gate, c.gate + c.gate_growth * tr.misses)

    def _match(self, tracks, dets, kp, conf, scales, t):
        if not tracks or not dets:
            return [], list(tracks), list(dets)
        cost = self._cost(tracks, kp[dets], conf[dets], scales[dets], t)
        pairs = _assign(cost, np.array([self._gate(tr) for tr in tracks]), self._solve)
        used_t = {r for r, _ in pairs}
        used_d = {k for _, k in pairs}
        return ([(tracks[r], dets[k]) for r, k in pairs],
                [tr for i, tr in enumerate(tracks) if i not in used_t],
                [d for i, d in enumerate(dets) if i not in used_d])

    def _observe(self, tr: Track, kp, conf, scale, t) -> None:
        c = self.config
        dt = t - tr.time
        # Velocity: confidence-weighted mean joint displacement over joints confident in both.
        w = np.where((tr.confidence >= c.joint_confidence) & (conf >= c.joint_confidence),
                     tr.confidence * conf, 0.0)
        total = w.sum()
        if dt > 0 and total > 0:
            v = w @ (kp - tr.keypoints) / (total * dt)
            a = c.velocity_smoothing if tr.has_velocity else 1.0
            v = a * v + (1 - a) * tr.velocity
            speed = math.hypot(v[0], v[1])
            top = c.max_speed * tr.scale
            tr.velocity = v * (top / speed) if speed > top else v
            tr.has_velocity = True
        tr.keypoints, tr.confidence, tr.time = kp, conf, t
        tr.scale = 0.7 * tr.scale + 0.3 * scale
        tr.hits += 1
        tr.misses = 0

    def _confirm(self, tr: Track) -> None:
        tr.state, tr.id = CONFIRMED, self._next_id
        self._next_id += 1
        self.counts['started'] += 1

    def update(self, keypoints, confidences, t: Optional[float] = None) -> List[Optional[int]]:
        """One frame's detections ((N, J, 2) pixels, (N, J) confidences) -> per detection its
        track id, or None when it is not output (tentative, weak and unmatched, ignored).

        ``t``: the frame's time in seconds (so dropped frames are predicted across); None:
        frames are counted at a nominal 30 per second."""
        c = self.config
        self._frame += 1
        t = float(self._frame / 30.0 if t is None else t)
        kp = np.asarray(keypoints, dtype=np.float64)
        n = len(kp) if kp.size else 0
        if n:
            kp = kp.reshape(n, -1, 2)
            conf = np.nan_to_num(np.asarray(confidences, dtype=np.float64).reshape(n, -1),
                                 nan=0.0, posinf=0.0, neginf=0.0)
            bad = ~np.isfinite(kp).all(axis=2)
            conf = np.where(bad, 0.0, np.clip(conf, 0.0, 1.0))
            kp = np.where(bad[..., None], 0.0, kp)
        else:
            kp, conf = np.zeros((0, 0, 2)), np.zeros((0, 0))
        score = conf.mean(axis=1) if n else np.zeros(0)
        scales = _scales(kp, conf, c.joint_confidence)
        score = self._suppress_duplicates(kp, conf, scales, score)
        high = [i for i in range(n) if score[i] >= c.high_score]
        low = [i for i in range(n) if c.min_score <= score[i] < c.high_score]
        nobody = not self.tracks

        active = [tr for tr in self.tracks if tr.state in (CONFIRMED, LOST)]
        m1, rest, high_left = self._match(active, high, kp, conf, scales, t)
        seen = [tr for tr in rest if tr.state == CONFIRMED]  # ByteTrack: low scores keep tracks
        m2, _, _ = self._match(seen, low, kp, conf, scales, t)
        tentative = [tr for tr in self.tracks if tr.state == TENTATIVE]
        m3, _, new = self._match(tentative, high_left, kp, conf, scales, t)

        ids: List[Optional[int]] = [None] * n
        matched = set()
        for tr, d in m1 + m2 + m3:
            self._observe(tr, kp[d], conf[d], scales[d], t)
            matched.add(tr.key)
            if tr.state == LOST:
                tr.state = CONFIRMED
                self.counts['recovered'] += 1
            elif tr.state == TENTATIVE and tr.hits >= c.confirm_hits:
                self._confirm(tr)
            ids[d] = tr.id
        keep = []
        for tr in self.tracks:
            if tr.key not in matched:
                if tr.state == TENTATIVE:
                    continue  # a flicker: dropped without spending an id
                tr.misses += 1
                if tr.state == CONFIRMED:
                    tr.state = LOST
                    self.counts['lost'] += 1
                if tr.misses > c.max_age:
                    tr.state = ENDED
                    self.counts['ended'] += 1
                    continue
            keep.append(tr)
        for d in new:
            tr = Track(self._next_key, kp[d], conf[d], float(scales[d]), t)
            self._next_key += 1
            if nobody or c.confirm_hits <= 1:
                self._confirm(tr)
                ids[d] = tr.id
            keep.append(tr)
        self.tracks = keep
        return ids


# -- subject selection ----------------------------------------------------------------------
SUBJECT_MODES = ('all', 'largest', 'central', 'region:x0,y0,x1,y1', 'track:<id>')


class SubjectSelector:
    """Which tracked person(s) to output. The choice is sticky: once a track is the subject,
    it stays the subject until it ends (while it is lost, nobody is output); then the
    criterion chooses again among the people in view.

    ``spec``: 'all' | 'largest' (biggest on screen) | 'central' (nearest the image centre)
    | 'region:x0,y0,x1,y1' (nearest that box, normalised image coordinates; the biggest of
    those inside) | 'track:<id>' (that track id only)."""

    def __init__(self, spec: str = 'all'):
        self.spec = str(spec).strip()
        self.mode, self.region, self.fixed = self._parse(self.spec)
        self.current: Optional[int] = self.fixed

    @staticmethod
    def _parse(spec: str):
        bad = ValueError(f'subject must be one of {", ".join(SUBJECT_MODES)}; got {spec!r}')
        mode, _, arg = spec.partition(':')
        if mode in ('all', 'largest', 'central') and not arg:
            return mode, None, None
        if mode == 'track' and arg:
            try:
                fixed = int(arg)
            except ValueError:
                raise bad from None
            if fixed < 0:
                raise bad
            return mode, None, fixed
        if mode == 'region' and arg:
            try:
                box = [float(v) for v in arg.split(',')]
            except ValueError:
                raise bad from None
            if len(box) != 4 or not np.all(np.isfinite(box)) or box[0] > box[2] or \
                    box[1] > box[3]:
                raise ValueError(f'subject region needs x0,y0,x1,y1 with x0 <= x1 and y0 <= y1 '
                                 f'(normalised image coordinates), got {arg!r}')
            return mode, np.array(box), None
        raise bad

    def _score(self, tr: Track, size: Tuple[float, float], thr: float) -> Tuple[float, float]:
        """Smaller is better: (distance to the target, -size)."""
        if self.mode == 'largest':
            return 0.0, -tr.scale
        p = tr.centre(thr) / np.asarray(size, dtype=np.float64)
        if self.mode == 'central':
            return float(np.linalg.norm(p - 0.5)), -tr.scale
        lo, hi = self.region[:2], self.region[2:]
        return float(np.linalg.norm(p - np.clip(p, lo, hi))), -tr.scale

    def select(self, visible: Sequence[Track], live_ids: Sequence[int],
               image_size: Tuple[float, float], joint_confidence: float = 0.3) -> List[int]:
        """Ids to output among the confirmed tracks seen this frame."""
        ids = [tr.id for tr in visible]
        if self.mode == 'all':
            return ids
        if self.mode != 'track' and self.current not in live_ids:
            self.current = None
            if visible:
                best = min(visible, key=lambda tr: self._score(tr, image_size, joint_confidence))
                self.current = best.id
        return [i for i in ids if i == self.current]


class PeopleTracking:
    """What the 2D stage runs per frame: association, then the subject choice.

    ``step`` returns the indices of the detections to output and their track ids, in
    ascending id order; ``values`` is for diagnostics."""

    def __init__(self, subject: str = 'all', config: Optional[TrackerConfig] = None):
        self.tracker = PersonTracker(config)
        self.subject = SubjectSelector(subject)

    def step(self, keypoints, confidences, image_size: Tuple[float, float],
             t: Optional[float] = None) -> Tuple[List[int], List[int]]:
        ids = self.tracker.update(keypoints, confidences, t)
        by_id = {tr.id: tr for tr in self.tracker.tracks if tr.id is not None}
        visible = [by_id[i] for i in ids if i is not None]
        chosen = set(self.subject.select(visible, list(by_id), image_size,
                                         self.tracker.config.joint_confidence))
        out = sorted((i, d) for d, i in enumerate(ids) if i is not None and i in chosen)
        return [d for _, d in out], [i for i, _ in out]

    def reset(self) -> None:
        self.tracker.reset()

    def values(self) -> Dict[str, object]:
        tr = self.tracker
        counts = {f'tracks_{k}': v for k, v in tr.counts.items()}
        counts['tracks_active'] = sum(1 for t in tr.tracks if t.state == CONFIRMED)
        counts['tracks_lost_now'] = sum(1 for t in tr.tracks if t.state == LOST)
        counts['subject'] = ('all' if self.subject.mode == 'all' else
                             '-' if self.subject.current is None else self.subject.current)
        return counts
