"""The lifting engine: every camera's person tracks, the stamp and gap rules, the persons
limit, shared passes for the streams that are due, owed poses and the idle flush.

Why a module of its own: these rules are what makes live lifting right, and they are the
same live and offline. The engine is ROS-free and clock-free (times are arguments), so the
rules are unit-tested here; the lifter node is an adapter (it parses messages, hands the
engine their contents, logs the engine's notices and publishes what it returns), and
``vp3d-offline`` drives the same engine with whole-segment lifters.

One frame's way: :meth:`LiftingEngine.received` (every message: the stamp sequence, the
camera is alive) -> :meth:`~LiftingEngine.admit` (stamp rules) -> :meth:`~LiftingEngine.add`
(persons queued in their tracks, one per output) -> :meth:`~LiftingEngine.lift_due` (the
frames of every camera and person that are due, in shared passes) -> :class:`Ready` poses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .track_rules import DEFAULT as RULES, TrackRules
from .windowing import (LiftedPose, StampGaps, TrackWindow, ViewFactory, WindowLifter,
                        stamp_problem)

#: (width, height) -> a lifter for one track: what each output of the engine is made of.
LifterFactory = Callable[[float, float], WindowLifter]
#: person id -> (keypoints (J, 2) pixels, confidence (J,)) of one frame.
People = Mapping[int, Tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Notice:
    """Something a user should hear about, said once per ``key`` by the caller's rate limit."""
    level: str      # 'info' | 'warning' | 'error'
    key: str        # one kind of problem of one camera
    text: str
    count: str = ''  # what it counts as in diagnostics: '' | 'dropped' | 'error'


@dataclass
class Ready:
    """Poses of one camera and output, ready to publish: person -> poses in stamp order."""
    camera: str
    output: int     # index into the engine's outputs (the node: 0 main, 1 immediate)
    poses: Dict[int, List[LiftedPose]]


class CameraTracks:
    """One camera's state: per output its tracks and owed poses; its stamp sequence."""

    def __init__(self, name: str, outputs: int, max_gap_s: float,
                 make_view: Optional[ViewFactory] = None):
        self.name = name
        self.make_view = make_view  # the view its tracks lift through (None: the pixels)
        self.label = name or '.'
        self.tracks: List[Dict[int, TrackWindow]] = [{} for _ in range(outputs)]
        self.owed: List[Dict[int, List[LiftedPose]]] = [{} for _ in range(outputs)]
        self.last_stamp: Optional[int] = None   # newest admitted stamp (ns)
        self.last_rx_ns: Optional[int] = None   # when its last message arrived (caller's clock)
        self.gaps = StampGaps(int(max_gap_s * 1e9))


class LiftingEngine:
    """Person tracks of several cameras, lifted by one or more models (``outputs``).

    ``rules``: the gap rules of every track; ``idle_flush_s``: a camera quiet this long has
    its owed poses given back and its windows ended by :meth:`flush_idle`; ``views``: per
    camera, the view its keypoints are lifted through (``geometry.view.LevelView`` from a
    calibration), made for each track's image size."""

    def __init__(self, outputs: Sequence[LifterFactory], cameras: Sequence[str],
                 rules: TrackRules = RULES, idle_flush_s: float = 1.0,
                 views: Optional[Mapping[str, ViewFactory]] = None):
        if len(set(cameras)) != len(cameras):
            raise ValueError(f'cameras must be distinct, got {list(cameras)}')
        self.outputs = list(outputs)
        self.rules = rules
        self.idle_flush_ns = int(idle_flush_s * 1e9)
        views = dict(views or {})
        unknown = set(views) - set(cameras)
        if unknown:
            raise ValueError(f'views for cameras the engine does not have: {sorted(unknown)}')
        self.cameras: Dict[str, CameraTracks] = {
            c: CameraTracks(c, len(self.outputs), rules.max_gap_s, views.get(c))
            for c in cameras}
        self.resets = 0          # windows ended early (gaps, restarts, failures)
        self.out_of_image = 0    # joints refused for lying far outside their image
        self.swaps_repaired = 0  # limb-frames whose left/right labels were traded back
        self.frames_missing = 0  # frames missing from the cameras' stamp sequences
        self.passes = self.streams_lifted = 0  # how well streams share passes
        self._notices: List[Notice] = []

    # -- notices -------------------------------------------------------------------------
    def _note(self, level: str, key: str, text: str, count: str = ''):
        self._notices.append(Notice(level, key, text, count))

    def take_notices(self) -> List[Notice]:
        """What happened since the last call, oldest first."""
        out, self._notices = self._notices, []
        return out

    # -- one frame -----------------------------------------------------------------------
    def received(self, camera: str, stamp_ns: int, now_ns: int) -> None:
        """Every message of ``camera``, before anything else: it is alive, and frames
        missing before this one in its stamp sequence are counted (DDS drops what overflows
        a queue without a word)."""
        cam = self.cameras[camera]
        cam.last_rx_ns = now_ns
        if stamp_problem(stamp_ns, 0, sim_time=True) is not None:
            return
        n = cam.gaps.add(stamp_ns, now_ns)
        if n:
            self.frames_missing += n
            self._note('warning', f'missing-{camera}', (
                f'{cam.label}: {n} keypoints_2d frame(s) missing before stamp '
                f'{stamp_ns / 1e9:.6f} s (one expected every {cam.gaps.period_ns / 1e6:.1f} '
                'ms): lost in DDS while this node fell behind (its queue holds 50), or dropped '
                f"upstream (pose2d's dropped count); {cam.gaps.missing} missing so far "
                '(keypoints_missing in /diagnostics)'))

    def admit(self, camera: str, stamp_ns: int, wall_ns: int, sim_time: bool = False) -> bool:
        """The stamp rules for one frame: implausible stamps and duplicates are refused
        (False); a stamp far ahead of ``wall_ns``, time going back and long gaps are noted
        (the windows restart by themselves, owed poses first)."""
        cam = self.cameras[camera]
        shown = f'{stamp_ns // 1_000_000_000}.{stamp_ns % 1_000_000_000:09d}'
        problem = stamp_problem(stamp_ns, wall_ns, sim_time)
        if problem is not None and problem[0] == 'refuse':
            self._note('warning', f'stamp-{camera}-{problem[1][:12]}', (
                f'{cam.label}: keypoints with a {problem[1]} dropped (stamp {shown}; is the '
                'camera driver stamping its images? use_sim_time without /clock?)'), 'dropped')
            return False
        if problem is not None:
            self._note('warning', f'future-{camera}', (
                f'{cam.label}: keypoints stamped {shown}: {problem[1]}; lifted, but check the '
                'camera clock (time going back afterwards restarts the windows)'))
        last = cam.last_stamp
        if last is not None:
            if stamp_ns == last:
                self._note('warning', f'dup-{camera}', (
                    f'{cam.label}: duplicate stamp {stamp_ns / 1e9:.6f} s dropped (a frame is '
                    'published twice?)'), 'dropped')
                return False
            if stamp_ns < last:
                self._note('info', f'back-{camera}', (
                    f'{cam.label}: time went backwards by {(last - stamp_ns) / 1e9:.3f} s (bag '
                    'looping?): windows restarted'))
            elif stamp_ns - last > self.rules.max_gap_s * 1e9:
                self._note('info', f'gap-{camera}', (
                    f'{cam.label}: {(stamp_ns - last) / 1e9:.3f} s gap in stamps: windows '
                    'restarted'))
        return True

    def add(self, camera: str, stamp_ns: int, people: People, size: Tuple[int, int],
            total: Optional[int] = None) -> int:
        """An admitted frame's persons, queued in their tracks of every output (persons
        gone from view pass through their tracks too: gaps are bridged, then ended).
        ``total``: persons the frame had before the caller kept the most confident (the
        persons limit is applied where the frame is read, ``cloud_schema.unpack``'s
        ``max_persons``, so a flood of ids costs one sort); returns persons queued."""
        cam = self.cameras[camera]
        total = len(people) if total is None else int(total)
        if total > len(people):
            self._note('warning', f'persons-{camera}', (
                f'{cam.label}: {total} persons in one frame, lifting the {len(people)} most '
                'confident (max_persons)'))
        cam.last_stamp = stamp_ns
        for out in range(len(self.outputs)):
            self._queue(cam, out, people, stamp_ns, size)
        return len(people)

    def _queue(self, cam: CameraTracks, out: int, people: People, stamp_ns: int, size):
        tracks = cam.tracks[out]
        for pid in set(tracks) | set(people):
            track = tracks.get(pid)
            if track is None:
                r = self.rules
                track = tracks[pid] = TrackWindow(self.outputs[out], r.max_gap_frames,
                                                  r.max_gap_s, r.min_confidence,
                                                  cam.make_view, r.repair_swaps)
            kp, conf = people.get(pid, (None, None))
            resets, far = track.stats.resets, track.stats.out_of_image
            traded = track.stats.swaps_repaired
            poses = track.add(stamp_ns, kp, conf, size)
            far = track.stats.out_of_image - far
            traded = track.stats.swaps_repaired - traded
            if traded and out == 0:
                self.swaps_repaired += traded
                self._note('info', f'swap-{cam.name}', (
                    f'{cam.label}: the 2D detector named a limb of person {pid} the wrong way '
                    'round (left for right): traded back from the track\'s continuity '
                    f'({self.swaps_repaired} limb-frames so far; swaps_repaired in '
                    '/diagnostics; repair_swaps false to lift the labels as given)'))
            if far and out == 0:
                self.out_of_image += far
                self._note('warning', f'far-{cam.name}', (
                    f'{cam.label}: {far} joint(s) of person {pid} lie more than one image '
                    f'size outside the {size[0]}x{size[1]} image: treated as not detected '
                    f'(held), not lifted ({self.out_of_image} such joints so far; '
                    'joints_out_of_image in /diagnostics)'))
            if poses:
                cam.owed[out].setdefault(pid, []).extend(poses)
            self.resets += track.stats.resets - resets
            if pid not in people and track.idle:
                del tracks[pid]  # gone and nothing owed: a returning person starts afresh

    # -- lifting and giving back ---------------------------------------------------------
    def lift_due(self) -> List[Ready]:
        """Lift every due frame of every camera and person in shared passes (the weights
        are read once for all of them); returns every pose owed, per camera and output."""
        due = [(cam, out, pid, track) for cam in self.cameras.values()
               for out, owned in enumerate(cam.tracks) for pid, track in owned.items()
               if track.lifter is not None and track.lifter.due]
        if due:
            from .lifter import lift_queued  # torch: only once something is lifted
            self.passes += 1
            self.streams_lifted += len(due)
            try:
                lifted = lift_queued([track.lifter for *_, track in due])
            except Exception as e:  # noqa: BLE001 - drop these windows, keep serving
                for cam, out, pid, _ in due:  # their next frames start afresh
                    cam.tracks[out].pop(pid, None)
                self.resets += len(due)
                self._note('error', f'lift-{due[0][0].name}-{type(e).__name__}',
                           f'{due[0][0].label}: frame skipped: {type(e).__name__}: {e}', 'error')
                lifted = [[] for _ in due]
            for (cam, out, pid, track), results in zip(due, lifted):
                if results:
                    cam.owed[out].setdefault(pid, []).extend(track.collect(results))
        return self._take_owed()

    def _take_owed(self) -> List[Ready]:
        ready = []
        for cam in self.cameras.values():
            for out, owed in enumerate(cam.owed):
                if owed:
                    ready.append(Ready(cam.name, out, dict(owed)))
                    owed.clear()
        return ready

    def _end(self, cam: CameraTracks) -> int:
        """End every window of ``cam`` (owed poses first) and forget its idle tracks;
        returns the windows that held something."""
        ended = 0
        for out, tracks in enumerate(cam.tracks):
            for pid, track in list(tracks.items()):
                if not track.idle:
                    ended += 1
                    poses = track.finish()
                    if poses:
                        cam.owed[out].setdefault(pid, []).extend(poses)
                del tracks[pid]
        return ended

    def flush_idle(self, now_ns: int) -> List[Ready]:
        """Cameras quiet for ``idle_flush_s`` (pose2d stopped or restarting, a paused bag):
        their owed poses, windows ended, so what comes next is not mixed with stale context."""
        ready = self.lift_due()
        for cam in self.cameras.values():
            if cam.last_rx_ns is None or now_ns - cam.last_rx_ns < self.idle_flush_ns:
                continue
            ended = self._end(cam)
            if ended:
                self.resets += ended
                self._note('info', f'idle-{cam.name}', (
                    f'{cam.label}: no keypoints for {(now_ns - cam.last_rx_ns) / 1e9:.1f} s: '
                    'owed poses published, windows restarted'))
        return ready + self._take_owed()

    def finish(self) -> List[Ready]:
        """The end of the streams: every pose still owed (windows edge-padded)."""
        ready = self.lift_due()
        for cam in self.cameras.values():
            self._end(cam)
        return ready + self._take_owed()

    # -- what diagnostics show -----------------------------------------------------------
    def window_fills(self) -> Dict[str, Dict[int, int]]:
        """camera -> person -> frames waiting for future context (main output)."""
        return {c.name: {pid: t.fill for pid, t in c.tracks[0].items()}
                for c in self.cameras.values()} if self.outputs else {}

    @property
    def streams_per_pass(self) -> float:
        return round(self.streams_lifted / max(1, self.passes), 2)
