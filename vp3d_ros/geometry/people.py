"""Fused people over time: which fused person a group of matched detections continues, and
the live fusion of every person, one :class:`~.fusion.CausalFuser` each.

:func:`~.fusion.associate` says which detections of one instant are one person; this module
says who that person is across instants: the fused person whose last root is nearest, within
``gate_m`` and seen within ``timeout_s``, else a new id once two cameras agree on where it
stands. The live fusion node (:class:`FusedPeople`) and vp3d-offline (:class:`PersonLinker`,
then a zero-phase :func:`~.fusion.fuse_sequence` per person) follow the same rule, so a
recording re-processed offline keeps the ids the rig published.

Pure numpy; no ROS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set

import numpy as np

from . import fusion as F
from .calibration import Camera


def fused_confidence(views: np.ndarray, filled: np.ndarray, n_cameras: int) -> np.ndarray:
    """Per joint: 0.5 (two views) rising to 1 (every camera), 0.3 where filled from the
    lifted skeleton or held."""
    seen = 0.5 + 0.5 * np.clip(np.asarray(views) / max(2, n_cameras), 0.0, 1.0)
    return np.where(filled, 0.3, seen)


def root_of(points: np.ndarray) -> Optional[np.ndarray]:
    """The root (hip) where recovered, else the mean of the recovered joints; None without
    any."""
    ok = np.all(np.isfinite(points), -1)
    if not ok.any():
        return None
    return points[F.ROOT] if ok[F.ROOT] else points[ok].mean(0)


def group_root(cameras: Sequence[Camera], keypoints: np.ndarray) -> Optional[np.ndarray]:
    """Where a group of matched detections (C, J, 3) stands: the root of its triangulation,
    None when no joint is seen by two cameras."""
    return root_of(F.triangulate(cameras, keypoints))


class PersonLinker:
    """Person ids across instants: nearest last root within ``gate_m`` among the persons seen
    within ``timeout_s`` (:meth:`expire`, called by the user at each instant) and not yet
    taken at this instant. A new id is remembered once :meth:`seen` places it."""

    def __init__(self, gate_m: float = 0.5, timeout_s: float = 1.0):
        self.gate_m = float(gate_m)
        self.timeout_s = float(timeout_s)
        self.roots: Dict[int, np.ndarray] = {}   # pid -> last root
        self.last_t: Dict[int, float] = {}
        self.next_pid = 0

    def link(self, root: Optional[np.ndarray], t: float, taken: Set[int] = frozenset(),
             only_group: bool = False) -> Optional[int]:
        """The id a group continues, a new id, or None (no root and no one to continue).
        ``root``: where the group stands (two cameras triangulated it) or None;
        ``only_group``: it is the instant's only group, so the one person known continues
        whatever the distance (one person, one track: nothing to match)."""
        free = [p for p in self.roots if p not in taken]
        if only_group and len(self.roots) == 1 and free:
            return free[0]
        best, best_d = None, self.gate_m
        if root is not None:
            for p in free:
                d = float(np.linalg.norm(self.roots[p] - root))
                if d < best_d:
                    best, best_d = p, d
        elif len(self.roots) == 1 and free:
            best = free[0]            # one camera left: keep the one person
        if best is not None or root is None:
            return best
        self.next_pid += 1
        return self.next_pid - 1

    def seen(self, pid: int, root: np.ndarray, t: float) -> None:
        self.roots[pid] = np.asarray(root, dtype=np.float64)
        self.last_t[pid] = t

    def known(self, pid: int) -> bool:
        return pid in self.roots

    def expire(self, t: float) -> List[int]:
        """Forget the persons unseen for longer than ``timeout_s``; -> their ids."""
        gone = [p for p, last in self.last_t.items() if t - last > self.timeout_s]
        for p in gone:
            del self.roots[p], self.last_t[p]
        return gone


@dataclass
class FusedPerson:
    pid: int
    frame: F.FusedFrame
    confidence: np.ndarray   # (J,) fused_confidence, 0 where not recovered


class FusedPeople:
    """Live fusion of everyone in view, one instant at a time: detections matched across
    cameras (:func:`~.fusion.associate`, ``gate_px``), each group linked to its person
    (:class:`PersonLinker`) and fused by that person's :class:`~.fusion.CausalFuser`."""

    def __init__(self, config: F.FusionConfig = F.FusionConfig(), gate_px: float = 40.0,
                 gate_m: float = 0.5, timeout_s: float = 1.0):
        self.config = config
        self.gate_px = float(gate_px)
        self.linker = PersonLinker(gate_m, timeout_s)
        self.fusers: Dict[int, F.CausalFuser] = {}

    def __len__(self) -> int:
        return len(self.fusers)

    def step(self, cameras: Sequence[Camera], people: Sequence[Dict[int, np.ndarray]],
             t: float, lifted: Optional[Sequence[Dict[int, np.ndarray]]] = None
             ) -> List[FusedPerson]:
        """``people[c]``: camera ``c``'s detections, id -> (J, 3) pixels and confidence;
        ``lifted[c]``: its lifted root-relative poses by the same ids (this instant's);
        ``t`` seconds. -> the fused persons of this instant."""
        cameras = list(cameras)
        for pid in self.linker.expire(t):
            del self.fusers[pid]
        groups = F.associate(cameras, people, self.gate_px)
        J = next((kp.shape[0] for p in people for kp in p.values()), 17)
        out: List[FusedPerson] = []
        taken: Set[int] = set()
        for g in groups:
            kp = np.full((len(cameras), J, 3), np.nan)
            prior = {}
            for c, pid in g.items():
                kp[c] = people[c][pid]
                pose = lifted[c].get(pid) if lifted else None
                if pose is not None:
                    prior[c] = pose
            pid = self.linker.link(group_root(cameras, kp), t, taken, len(groups) == 1)
            if pid is None:
                continue
            fuser = self.fusers.get(pid)
            if fuser is None:
                fuser = self.fusers[pid] = F.CausalFuser(cameras, self.config)
            elif any(a is not b for a, b in zip(fuser.cameras, cameras)):
                fuser.cameras = cameras      # an image size changed since it began
            fr = fuser.step(kp, t, prior or None)
            root = root_of(fr.points)
            if root is None:
                if not self.linker.known(pid):   # a new person that nothing placed
                    del self.fusers[pid]
                continue
            self.linker.seen(pid, root, t)
            taken.add(pid)
            ok = np.all(np.isfinite(fr.points), -1)
            conf = np.where(ok, fused_confidence(fr.views, fr.filled, len(cameras)), 0.0)
            out.append(FusedPerson(pid, fr, conf))
        return out
