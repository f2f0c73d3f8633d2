"""Rigid bones: a post-hoc constraint that gives a lifted track one length per bone.

A monocular lifter re-guesses limb lengths from every window of 2D, so a person's bones
stretch and shrink from frame to frame (issue 15 measures it as limb bone-length CV). A
person's bones do not: :func:`rigid_bones` keeps every bone's direction from the lifter and
sets its length to the track's median, rebuilding the skeleton outwards from the root. It
is an option (``vp3d-lift --rigid-bones``), reported separately from the network's own
accuracy: it corrects lengths, not directions.

Pure numpy; no ROS.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..core.skeletons import H36M17


def median_bone_lengths(poses: np.ndarray, parents: Sequence[int] = H36M17.parents
                        ) -> np.ndarray:
    """(T, J, 3) -> (J,) median length of the bone ending at each joint (root: 0), over the
    frames where both ends are finite."""
    p = np.asarray(poses, dtype=np.float64)
    par = np.asarray(parents)
    lengths = np.zeros(p.shape[1])
    child = np.flatnonzero(par >= 0)
    with np.errstate(invalid='ignore'):
        lengths[child] = np.nanmedian(np.linalg.norm(p[:, child] - p[:, par[child]], axis=-1),
                                      axis=0)
    return lengths


def rigid_bones(poses: np.ndarray, lengths: Optional[np.ndarray] = None,
                parents: Sequence[int] = H36M17.parents) -> np.ndarray:
    """(T, J, 3) -> the same track with every bone ``lengths[child]`` long (default: its
    median over the track) and pointing where the lifter pointed it; the root stays put.
    Parents must come before their children (H36M-17 order does). Frames with a NaN joint
    keep NaN below it."""
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim != 3 or p.shape[-1] != 3:
        raise ValueError(f'expected poses of shape (T, J, 3), got {p.shape}')
    par = np.asarray(parents)
    if lengths is None:
        lengths = median_bone_lengths(p, par)
    out = p.copy()
    for j in range(p.shape[1]):
        if par[j] < 0:
            continue
        if par[j] >= j:
            raise ValueError('parents must come before their children')
        d = p[:, j] - p[:, par[j]]
        n = np.linalg.norm(d, axis=-1, keepdims=True)
        with np.errstate(invalid='ignore', divide='ignore'):
            unit = np.where(np.isnan(n) | (n > 1e-9), d / n, 0.0)
        out[:, j] = out[:, par[j]] + unit * lengths[j]
    return out


def flexion_deg(poses: np.ndarray, a: int, b: int, c: int) -> np.ndarray:
    """(...,) flexion at joint ``b`` of (..., J, 3) poses in degrees: 0 when a-b-c is
    straight, 180 folded; NaN where a joint is missing or a bone has no length (knee: hip,
    knee, foot; elbow: shoulder, elbow, wrist)."""
    u = poses[..., a, :] - poses[..., b, :]
    v = poses[..., c, :] - poses[..., b, :]
    with np.errstate(invalid='ignore', divide='ignore'):
        cos = (u * v).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
    return 180.0 - np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
