"""Gravity from balance: a person who is not falling keeps the body's centre of mass over
the foot that carries it. Over a few seconds the vector from the support to the centre of
mass therefore points up, whatever the posture (standing on one leg, crouching, leaning,
walking), and the support can be told without knowing up: it is the foot that does not
move. :func:`~.ground.estimate_up` uses this cue when the subject never stands upright, or
when the few frames that pass as upright lean with the subject; it fails where something
else carries the weight (a chair), which :func:`~.ground.balance_up` checks for.

Pure numpy; no ROS.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .world import LFOOT, LHIP, RFOOT, RHIP, _unit

# H36M-17 body segments as (proximal joint, distal joint, mass fraction, centre of mass as a
# fraction of the way from proximal to distal), after de Leva (1996, J Biomech 29:1223,
# adjusted Zatsiorsky-Seluyanov parameters, male): thighs, shanks, trunk (Hip -> Thorax),
# head with neck (Neck/Nose -> Head), upper arms, forearms with hands. The feet (2 x 1.37 %)
# sit at the foot (ankle) joints.
SEGMENTS = ((1, 2, 0.1416, 0.41), (4, 5, 0.1416, 0.41), (2, 3, 0.0433, 0.45),
            (5, 6, 0.0433, 0.45), (0, 8, 0.4346, 0.55), (9, 10, 0.0694, 0.50),
            (14, 15, 0.0271, 0.58), (11, 12, 0.0271, 0.58), (15, 16, 0.0223, 0.62),
            (12, 13, 0.0223, 0.62))
FOOT_MASS = 0.0137
# The centre of pressure of a standing foot lies ahead of the ankle joint (about mid-foot).
SUPPORT_AHEAD_M = 0.05
# How sharply the slower foot takes the weight: at the track's median speed difference
# between the feet, the slower one carries 88 %. (1, 2, 4, 8 measured alike on held-out
# mocap, within 0.1 deg; 1 left 6 deg of a synthetic one-leg stance to the raised foot.)
SUPPORT_SHARPNESS = 2.0


def centre_of_mass(poses: np.ndarray) -> np.ndarray:
    """Whole-body centre of mass (T, 3) of H36M-17 skeletons (T, 17, 3)."""
    p = np.asarray(poses, dtype=np.float64)
    c = FOOT_MASS * (p[:, RFOOT] + p[:, LFOOT])
    for a, b, mass, at in SEGMENTS:
        c = c + mass * (p[:, a] + at * (p[:, b] - p[:, a]))
    return c / (2 * FOOT_MASS + sum(s[2] for s in SEGMENTS))


def support_weights(poses: np.ndarray) -> np.ndarray:
    """Per frame (T,), how much of the weight the right foot carries (1: all of it), from
    which foot moves less over +-2 frames: soft, on the scale of the track's own typical
    speed difference, so that the frame rate and the units do not matter."""
    p = np.asarray(poses, dtype=np.float64)
    feet = np.stack([p[:, RFOOT], p[:, LFOOT]], 1)                  # (T, 2, 3)
    k = 2 if len(p) > 4 else 1
    speed = np.full(feet.shape[:2], np.nan)
    if len(p) > 2 * k:
        speed[k:-k] = np.linalg.norm(feet[2 * k:] - feet[:-2 * k], axis=-1) / (2 * k)
        speed[:k], speed[-k:] = speed[k], speed[-k - 1]
    diff = speed[:, 0] - speed[:, 1]                                 # > 0: right moves more
    scale = np.nanmedian(np.abs(diff)) if np.isfinite(diff).any() else np.nan
    if not np.isfinite(scale) or scale <= 0:
        return np.full(len(p), 0.5)
    w = 1.0 / (1.0 + np.exp(np.clip(SUPPORT_SHARPNESS * diff / scale, -50, 50)))
    return np.where(np.isfinite(w), w, 0.5)


def balance_axes(poses: np.ndarray, up: Optional[np.ndarray] = None) -> np.ndarray:
    """Per frame (T, 3), the unit vector from the support to the centre of mass (NaN where
    a joint is missing); ``up``, a first guess of gravity, only sets which way is ahead of
    the ankles (without it, the support is taken at the ankles)."""
    p = np.asarray(poses, dtype=np.float64)
    w = support_weights(p)[:, None]
    support = w * p[:, RFOOT] + (1 - w) * p[:, LFOOT]
    if up is not None:
        ahead = _unit(np.cross(p[:, LHIP] - p[:, RHIP], up))         # the way the hips face
        support = support + SUPPORT_AHEAD_M * ahead
    return _unit(centre_of_mass(p) - support)


__all__ = ['SEGMENTS', 'centre_of_mass', 'support_weights', 'balance_axes']
