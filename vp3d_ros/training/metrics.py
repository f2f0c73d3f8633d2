"""Pose-error and smoothness metrics (numpy; poses (T, 17, 3) in metres, reported in mm)."""
from __future__ import annotations

import numpy as np

from ..core.skeletons import H36M17


def root_relative(p: np.ndarray) -> np.ndarray:
    return p - p[..., :1, :]


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame mean per-joint position error after aligning the roots, (T,) metres."""
    return np.linalg.norm(root_relative(pred) - root_relative(gt), axis=-1).mean(-1)


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Similarity transform (rotation, scale, translation) of each pred frame onto gt."""
    mu_p = pred.mean(-2, keepdims=True)
    mu_g = gt.mean(-2, keepdims=True)
    x = pred - mu_p
    y = gt - mu_g
    nx = np.sqrt((x ** 2).sum((-2, -1), keepdims=True)) + 1e-12
    ny = np.sqrt((y ** 2).sum((-2, -1), keepdims=True)) + 1e-12
    x, y = x / nx, y / ny
    h = np.swapaxes(x, -1, -2) @ y
    u, s, vt = np.linalg.svd(h)
    v = np.swapaxes(vt, -1, -2)
    r = v @ np.swapaxes(u, -1, -2)
    # No reflections.
    sign = np.sign(np.linalg.det(r))
    v[..., :, -1] *= sign[..., None]
    s[..., -1] *= sign
    r = v @ np.swapaxes(u, -1, -2)
    scale = s.sum(-1)[..., None, None] * ny / nx
    return scale * (pred - mu_p) @ np.swapaxes(r, -1, -2) + mu_g


def p_mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame MPJPE after Procrustes alignment, (T,) metres."""
    return np.linalg.norm(procrustes_align(pred, gt) - gt, axis=-1).mean(-1)


def bone_lengths(p: np.ndarray) -> np.ndarray:
    bones = np.array(H36M17.bones)
    return np.linalg.norm(p[..., bones[:, 1], :] - p[..., bones[:, 0], :], axis=-1)


def bone_length_std(p: np.ndarray) -> float:
    """Std over time of each bone's length, averaged over bones (metres)."""
    return float(bone_lengths(p).std(axis=0).mean())


def mean_acceleration(p: np.ndarray, fps: float) -> float:
    """Mean joint acceleration magnitude of root-relative poses (m/s^2)."""
    if len(p) < 3:
        return float('nan')
    q = root_relative(p)
    acc = (q[2:] - 2 * q[1:-1] + q[:-2]) * fps * fps
    return float(np.linalg.norm(acc, axis=-1).mean())


def acceleration_error(pred: np.ndarray, gt: np.ndarray, fps: float) -> float:
    """Mean |acc_pred - acc_gt| over joints and frames, root-relative (m/s^2)."""
    if len(pred) < 3:
        return float('nan')
    d = root_relative(pred) - root_relative(gt)
    acc = (d[2:] - 2 * d[1:-1] + d[:-2]) * fps * fps
    return float(np.linalg.norm(acc, axis=-1).mean())
