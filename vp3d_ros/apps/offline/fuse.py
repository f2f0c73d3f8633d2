"""Several calibrated cameras of one offline run -> one world skeleton per person."""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from ...core.track_rules import DEFAULT as RULES
from ...geometry.people import PersonLinker, fused_confidence, group_root
from .frames import CameraResult


def fuse_in_world(cameras: Sequence[CameraResult], models, layout: str,
                  max_gap_s: float = RULES.max_gap_s
                  ) -> Dict[int, Dict[int, Tuple[np.ndarray, np.ndarray]]]:
    """One world skeleton per person from all cameras (:mod:`vp3d_ros.geometry.fusion`):
    frames of one instant grouped by stamp (within 0.4 of a frame period), persons matched
    across cameras, each person's track triangulated with outlier-view rejection, its gaps
    filled from the cameras' lifted skeletons, zero-phase smoothed. ``models``: one calibrated
    camera per entry of ``cameras``. -> {instant stamp: {person: (17x3 world, 17 conf)}}."""
    from ...geometry import fusion as F
    from ...geometry import world as W
    from ...core.instants import InstantGrouper
    names = [str(i) for i in range(len(cameras))]
    sizes = [{fr.size for fr in cam.frames} for cam in cameras]
    models = [m.with_image_size(*next(iter(sz))) if len(sz) == 1 else m
              for m, sz in zip(models, sizes)]
    stamps = sorted({fr.stamp_ns for cam in cameras for fr in cam.frames})
    period = float(np.median(np.diff(stamps))) if len(stamps) > 1 else 1e9 / 30
    periods = [np.median(np.diff([fr.stamp_ns for fr in cam.frames]))
               for cam in cameras if len(cam.frames) > 1]
    period = float(min(periods)) if periods else period
    grouper = InstantGrouper(names, 0.4 * period * 1e-9, float('inf'))
    events = sorted((fr.stamp_ns, c, fr) for c, cam in enumerate(cameras) for fr in cam.frames)
    instants = []
    for ns, c, fr in events:
        instants += grouper.add(names[c], ns, fr, 0.0)
    instants += grouper.flush()

    def kp_of(fr, pid):
        k, w = fr.people[pid]
        if layout == 'coco':
            k, w = W.coco_to_h36m_2d(k, w)
        return np.concatenate([k, np.asarray(w)[:, None]], -1)

    # persons across cameras, then across instants: the live fusion node's rule
    linker = PersonLinker(gate_m=0.5, timeout_s=max_gap_s)
    tracks: Dict[int, list] = {}   # fused id -> [(instant index, {camera: pid})]
    for i, inst in enumerate(instants):
        t = inst.stamp_ns * 1e-9
        linker.expire(t)
        people = [{pid: kp_of(inst.frames[n], pid) for pid in inst.frames[n].people}
                  if n in inst.frames else {} for n in names]
        groups = F.associate(models, people)
        taken: set = set()
        for group in groups:
            kp = np.full((len(names), 17, 3), np.nan)
            for c, pid in group.items():
                kp[c] = people[c][pid]
            root = group_root(models, kp)
            if root is None:
                continue
            fid = linker.link(root, t, taken, len(groups) == 1)
            linker.seen(fid, root, t)
            taken.add(fid)
            tracks.setdefault(fid, []).append((i, group))
    out: Dict[int, Dict[int, Tuple[np.ndarray, np.ndarray]]] = {}
    for fid, members in tracks.items():
        idx = [i for i, _ in members]
        kp = np.full((len(names), len(idx), 17, 3), np.nan)
        lifted = [np.full((len(idx), 17, 3), np.nan) for _ in names]
        for k, (i, group) in enumerate(members):
            inst = instants[i]
            for c, pid in group.items():
                kp[c, k] = kp_of(inst.frames[names[c]], pid)
                pose = cameras[c].poses.get(inst.stamps[names[c]], {}).get(pid)
                if pose is not None:
                    lifted[c][k] = pose.pose
        lifted = [p if np.isfinite(p).any() else None for p in lifted]
        fps = 1e9 / period
        fused = F.fuse_sequence(models, kp, fps, lifted)
        views = fused.views
        for k, i in enumerate(idx):
            if np.isfinite(fused.points[k]).all():
                conf = fused_confidence(views[k], fused.filled[k], len(cameras))
                out.setdefault(instants[i].stamp_ns, {})[fid] = (fused.points[k], conf)
    return out
