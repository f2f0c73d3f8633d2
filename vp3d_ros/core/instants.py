"""Frames of one instant from cameras that are not hardware-synchronised, grouped by stamp.

Each camera's frames arrive in stamp order, but cameras drift against each other by up to a
frame and are delivered with different delays. A group collects at most one frame per camera
whose stamps lie within ``tolerance_s`` of the group's first stamp (keep it under half a
frame period). It is released when every
camera has contributed, when a newer group is complete (cameras send in order, so nothing
older will complete it), or when it has waited ``max_wait_s`` (wall clock) for late cameras:
then it goes with the cameras it has, and a late frame that arrives after its instant was
released is counted and dropped. Groups come out in stamp order. Pure Python; no ROS.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence


@dataclass
class Instant:
    stamp_ns: int                       # mean of the members' stamps
    frames: Dict[str, Any]              # camera -> payload
    stamps: Dict[str, int] = field(default_factory=dict)
    first_rx: float = 0.0               # wall time the first frame arrived


class InstantGrouper:
    def __init__(self, cameras: Sequence[str], tolerance_s: float = 0.02,
                 max_wait_s: float = 0.1):
        self.cameras = list(cameras)
        self.tol_ns = int(round(tolerance_s * 1e9))
        self.max_wait_s = float(max_wait_s)
        self.pending: List[Instant] = []
        self.released_ns = None    # stamp of the newest released instant
        self.late = 0              # frames dropped because their instant had gone
        self.duplicates = 0        # a second frame of a camera for one instant

    def add(self, camera: str, stamp_ns: int, payload, now: float) -> List[Instant]:
        """One camera frame in; the instants ready to fuse out (possibly none)."""
        group = next((g for g in self.pending
                      if abs(stamp_ns - min(g.stamps.values())) <= self.tol_ns), None)
        if group is None and self.released_ns is not None and \
                stamp_ns <= self.released_ns + self.tol_ns:
            self.late += 1     # its instant has gone out already
            return self.poll(now)
        if group is None:
            group = Instant(stamp_ns, {}, {}, now)
            self.pending.append(group)
        if camera in group.frames:
            self.duplicates += 1
            return self.poll(now)
        group.frames[camera] = payload
        group.stamps[camera] = stamp_ns
        group.stamp_ns = int(round(sum(group.stamps.values()) / len(group.stamps)))
        self.pending.sort(key=lambda g: g.stamp_ns)
        return self.poll(now)

    def poll(self, now: float) -> List[Instant]:
        """Instants due now (complete, overtaken by a complete newer one, or timed out)."""
        out: List[Instant] = []
        complete = [i for i, g in enumerate(self.pending)
                    if all(c in g.frames for c in self.cameras)]
        last = complete[-1] if complete else -1
        keep = []
        for i, g in enumerate(self.pending):
            if i <= last or now - g.first_rx >= self.max_wait_s:
                out.append(g)
            else:
                keep.append(g)
        if out:
            # released in stamp order: anything still pending older than a released one goes too
            newest = max(g.stamp_ns for g in out)
            rest = []
            for g in keep:
                (out if g.stamp_ns < newest else rest).append(g)
            keep = rest
            out.sort(key=lambda g: g.stamp_ns)
            self.released_ns = max(self.released_ns or newest, newest)
        self.pending = keep
        return out

    def flush(self) -> List[Instant]:
        out = sorted(self.pending, key=lambda g: g.stamp_ns)
        self.pending = []
        if out:
            self.released_ns = max(self.released_ns or out[-1].stamp_ns, out[-1].stamp_ns)
        return out
