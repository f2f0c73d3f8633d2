"""Lifted skeletons placed in the world: absolute position, subject scale, gravity-aligned axes.

The lifter gives root-relative skeletons in the camera's optical frame (x right, y down,
z forward, metres, Hip at 0). This module puts them where the person is:

1. **Scale** (:func:`skeleton_height`, :func:`scale_to_height`): the lifter's metric scale,
   or, when the subject's height is known, the skeleton scaled so that its height matches.
   Subject height means standing height, the figure a person would type (crown to sole,
   standing straight). As this package measures it on a skeleton: the straight distance
   from the Head joint to the midpoint of the two foot (ankle) joints, 90th percentile over
   the frames in which the body stands upright (:func:`standing_mask`), plus
   ``HEIGHT_OFFSET_M`` (the crown above the Head joint and the ankle joints above the
   floor). Only upright frames count: walking, sitting or crouching frames have a shorter
   head-to-ankle distance than the standing height (over a whole S8 clip the old all-frames
   90th percentile gave 1.35 m for "sitting down" and 1.66 m for "walking" where S8 stands
   1.69 m). A track with fewer than ``MIN_STANDING_FRAMES`` upright frames is measured by
   its joint chain instead (ankle-knee-hip + Hip-Spine-Thorax-Neck-Head, per-bone medians,
   pose-independent) times ``CHAIN_TO_STANDING``.
2. **Root translation** (:func:`solve_root`): per frame, the translation ``t`` that makes the
   skeleton project onto the 2D keypoints through the calibrated camera. The 2D points are
   undistorted to normalised image coordinates first (``Camera.normalize_pixels``), so the
   camera model is exact; ``(X_j + t)`` on the ray of ``x_j`` is linear in ``t``
   (confidence-weighted least squares), then a few Gauss-Newton steps minimise the
   reprojection error itself with Huber weights against 2D outliers.
3. **Smoothing** (:func:`smooth_root`): the direction of the root ray is well determined
   per frame, its depth is not (it rides on the skeleton's size and shape). The track is
   smoothed as direction (lightly) and log depth (more), robustly, zero-phase offline (a
   running median removes spikes, then a Gaussian) or causal for live use (level + trend
   filters with clipped innovations: no look-ahead and no lag on steady motion).
4. **Floor** (:func:`floor_depth_scale`, offline): when the calibration's world has its
   floor at a known height (Pose2Sim / Qualisys / Human3.6M: z = 0), the feet standing on
   it tell the depth independently of the skeleton's size. With a subject height as well
   the depth is overdetermined: :func:`combine_depth_cues` weights the two log depth
   factors by their inverse variances (``FLOOR_DEPTH_SIGMA``, ``HEIGHT_DEPTH_SIGMA``).
5. **Limbs** (:mod:`.limbs`, offline and live): knees, ankles, elbows and wrists refit to
   their 2D keypoints' rays with one length per bone, where the lifter hedged a limb along
   the line of sight into a straighter, shorter one.
6. **World** (:func:`to_world`): ``X_world = R^T (X_cam - t)`` with the calibration's
   world -> camera ``R, t``.
7. **No calibration**: :mod:`.ground` makes a world from the subject (gravity and floor),
   as a :class:`~.calibration.Camera`, so the same :func:`to_world` applies.

Pure numpy; no ROS.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .bones import median_bone_lengths
from .calibration import Camera
from .limbs import CausalLimbs, refit_limbs

# H36M-17 joint indices (vp3d_ros.core.skeletons.H36M17).
HIP, RHIP, RKNEE, RFOOT, LHIP, LKNEE, LFOOT, SPINE, THORAX, NECK, HEAD = range(11)

HEIGHT_OFFSET_M = 0.10       # standing height = Head-to-mid-ankle distance + this
HEIGHT_PERCENTILE = 90.0     # over upright frames
MIN_STANDING_FRAMES = 10     # fewer upright frames: measured by the joint chain instead
# Upright Head-to-mid-ankle distance / joint chain length of a skeleton standing straight:
# training mocap's most upright frames (99.9th percentile) give 0.967 on the Human3.6M
# skeleton, 0.991 on CMU's; held-out S8's upright frames 0.980.
CHAIN_TO_STANDING = 0.975
# Depth cues, as relative errors of the depth they give (1 sigma): the floor (a foot on
# it within every 2 s) and the subject's height (the lifter's skeleton scaled to it: its
# proportions and bone lengths differ from the subject's by a few percent). Measured per
# clip x camera on held-out mocap through the Human3.6M cameras: floor 1.2-1.8 % rms,
# height 2-3 % rms (the lifter sees S8 2 % small), hence weights 0.8 / 0.2.
FLOOR_DEPTH_SIGMA = 0.015
HEIGHT_DEPTH_SIGMA = 0.03
FOOT_JOINT_HEIGHT_M = 0.05   # foot (ankle) joints above the floor when standing (mocap: 3-5 cm)

# COCO-17 index of each H36M-17 joint that exists in both layouts (for 2D given in COCO).
H36M_FROM_COCO = {RHIP: 12, RKNEE: 14, RFOOT: 16, LHIP: 11, LKNEE: 13, LFOOT: 15,
                  11: 5, 12: 7, 13: 9, 14: 6, 15: 8, 16: 10}


def coco_to_h36m_2d(kp: np.ndarray, conf: Optional[np.ndarray] = None):
    """COCO-17 2D (T, 17, 2) -> H36M-17 order with confidence 0 where COCO has no such
    joint (Hip, Spine, Thorax, Neck, Head): for the root solve, not for the lifter."""
    kp = np.asarray(kp, dtype=np.float64)
    out = np.zeros(kp.shape[:-2] + (17, 2))
    w = np.zeros(kp.shape[:-2] + (17,))
    c = np.ones(kp.shape[:-1]) if conf is None else np.asarray(conf, dtype=np.float64)
    for h, k in H36M_FROM_COCO.items():
        out[..., h, :] = kp[..., k, :]
        w[..., h] = c[..., k]
    return out, w


# ----------------------------------------------------------------------------- scale

def chain_length(poses: np.ndarray) -> float:
    """Joint chain from the ankles to the Head (mean of the two legs: ankle-knee-hip; trunk:
    Hip-Spine-Thorax-Neck-Head), each bone its median over frames: the same for any pose."""
    b = median_bone_lengths(poses)        # indexed by each bone's child joint
    return float(b[[RFOOT, RKNEE, LFOOT, LKNEE]].sum() / 2 + b[[SPINE, THORAX, NECK, HEAD]].sum())


def skeleton_height(poses: np.ndarray) -> float:
    """Standing height (metres) of a (T, 17, 3) skeleton track, as defined in the module
    docstring (upright frames; the joint chain when there are too few); NaN frames are
    skipped."""
    p = np.asarray(poses, dtype=np.float64)
    p = p[np.isfinite(p).all((1, 2))]
    if not len(p):
        raise ValueError('no finite frame to measure the skeleton height on')
    up = standing_mask(p)
    if up.sum() >= MIN_STANDING_FRAMES:
        d = np.linalg.norm(p[up, HEAD] - (p[up, RFOOT] + p[up, LFOOT]) / 2, axis=-1)
        return float(np.percentile(d, HEIGHT_PERCENTILE)) + HEIGHT_OFFSET_M
    return CHAIN_TO_STANDING * chain_length(p) + HEIGHT_OFFSET_M


def height_factor(poses: np.ndarray, subject_height_m: float) -> float:
    """Factor by which to scale a skeleton track so that its height equals the subject's
    (only the part above ``HEIGHT_OFFSET_M`` scales: the offset is a fixed anatomical
    distance)."""
    return (_checked_height(subject_height_m) - HEIGHT_OFFSET_M) / \
        (skeleton_height(poses) - HEIGHT_OFFSET_M)


def _checked_height(subject_height_m: float) -> float:
    if not subject_height_m > HEIGHT_OFFSET_M:
        raise ValueError(f'subject height must be above {HEIGHT_OFFSET_M} m, got '
                         f'{subject_height_m}')
    return float(subject_height_m)


def scale_to_height(poses: np.ndarray, subject_height_m: float):
    """Root-relative poses scaled about the root so the skeleton height equals the
    subject's. Returns (scaled poses, factor)."""
    p = np.asarray(poses, dtype=np.float64)
    factor = height_factor(p, subject_height_m)
    root = p[:, :1]
    return root + (p - root) * factor, float(factor)


class RunningHeight:
    """:func:`height_factor` for live use, one frame at a time: the factor over the frames
    seen so far (the last ``max_frames``), re-measured every frame for the first
    ``2 * every``, then every ``every`` frames. Until ``MIN_STANDING_FRAMES`` upright frames
    have been seen it is the joint chain's (a step of a few percent when they arrive)."""

    def __init__(self, subject_height_m: float, max_frames: int = 600, every: int = 15):
        self.height = _checked_height(subject_height_m)
        self.frames = deque(maxlen=max_frames)
        self.every = max(1, int(every))
        self.factor = None

    def step(self, pose: np.ndarray) -> float:
        """Add a root-relative (17, 3) pose; the current factor."""
        p = np.asarray(pose, dtype=np.float64)
        if np.isfinite(p).all():
            self.frames.append(p)
        n = len(self.frames)
        if n and (self.factor is None or n <= 2 * self.every or n % self.every == 0):
            self.factor = height_factor(np.stack(self.frames), self.height)
        return 1.0 if self.factor is None else self.factor


def combine_depth_cues(floor_factor, height_factor_: float,
                       floor_sigma: float = FLOOR_DEPTH_SIGMA,
                       height_sigma: float = HEIGHT_DEPTH_SIGMA):
    """Depth factor from two independent cues (each: the factor by which to scale the
    depth): inverse-variance weighted mean of their logarithms."""
    wf = 1 / floor_sigma ** 2
    wh = 1 / height_sigma ** 2
    lf = np.log(np.asarray(floor_factor, dtype=np.float64))
    return np.exp((wf * lf + wh * math.log(height_factor_)) / (wf + wh))


# ----------------------------------------------------------------------------- root

def solve_root(poses: np.ndarray, keypoints_px: np.ndarray, camera: Camera,
               confidence: Optional[np.ndarray] = None, iterations: int = 3,
               huber: float = 0.01) -> np.ndarray:
    """Per-frame translation t (T, 3), camera frame, such that ``poses + t`` projects onto
    ``keypoints_px`` (T, J, 2) through ``camera`` (with its distortion).

    ``confidence`` (T, J) weights the joints (0 ignores one; NaN pixels are ignored);
    ``huber`` is the Huber threshold of the Gauss-Newton steps in normalised image units
    (0.01 ~ 10 px at f = 1000). A frame with fewer than 2 usable joints gives NaN.
    """
    X = np.asarray(poses, dtype=np.float64)
    T, J = X.shape[:2]
    xn = camera.normalize_pixels(np.asarray(keypoints_px, dtype=np.float64)[..., :2])
    w = np.ones((T, J)) if confidence is None else np.asarray(confidence, dtype=np.float64)
    w = np.where(np.isfinite(xn).all(-1) & np.isfinite(X).all(-1) & np.isfinite(w), w, 0.0)
    w = np.clip(w, 0, None)
    xn = np.nan_to_num(xn)
    X = np.nan_to_num(X)
    u, v = xn[..., 0], xn[..., 1]
    # Linear: (X + t)_x - u (X + t)_z = 0, (X + t)_y - v (X + t)_z = 0, per joint.
    A = np.zeros((T, J, 2, 3))
    A[..., 0, 0] = 1
    A[..., 0, 2] = -u
    A[..., 1, 1] = 1
    A[..., 1, 2] = -v
    b = np.stack([u * X[..., 2] - X[..., 0], v * X[..., 2] - X[..., 1]], -1)
    t = _weighted_lstsq(A, b, w)
    ok = (w > 0).sum(1) >= 2
    # Gauss-Newton on the reprojection error (normalised coordinates), Huber-weighted.
    for _ in range(iterations):
        P = X + t[:, None]
        z = P[..., 2]
        good = (z > 1e-3) & (w > 0)
        zs = np.where(good, z, 1.0)
        r = np.stack([P[..., 0] / zs - u, P[..., 1] / zs - v], -1)
        Jt = np.zeros((T, J, 2, 3))
        Jt[..., 0, 0] = 1 / zs
        Jt[..., 0, 2] = -P[..., 0] / zs ** 2
        Jt[..., 1, 1] = 1 / zs
        Jt[..., 1, 2] = -P[..., 1] / zs ** 2
        rn = np.linalg.norm(r, axis=-1)
        hw = np.where(rn > huber, huber / np.maximum(rn, 1e-12), 1.0)
        ww = np.where(good, w * hw, 0.0)
        dt = _weighted_lstsq(Jt, -r, ww)
        t = t + np.where(np.isfinite(dt), dt, 0.0)
    t[~ok] = np.nan
    return t


def _weighted_lstsq(A: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per frame argmin_t sum_j w_j |A_j t - b_j|^2; A (T, J, 2, 3), b (T, J, 2), w (T, J)."""
    Aw = A * w[..., None, None]
    N = np.einsum('tjki,tjkl->til', Aw, A)
    g = np.einsum('tjki,tjk->ti', Aw, b)
    N = N + np.eye(3) * 1e-12
    out = np.full(g.shape, np.nan)
    good = np.linalg.cond(N) < 1e12
    if good.any():
        out[good] = np.linalg.solve(N[good], g[good][..., None])[..., 0]
    return out


# ----------------------------------------------------------------------------- smoothing

def _fill_nan(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN rows (held at the ends); all-NaN stays NaN."""
    x = x.copy()
    ok = np.isfinite(x).all(-1)
    if ok.all() or not ok.any():
        return x
    idx = np.arange(len(x))
    for k in range(x.shape[1]):
        x[~ok, k] = np.interp(idx[~ok], idx[ok], x[ok, k])
    return x


def _pad(x: np.ndarray, before: int, after: int) -> np.ndarray:
    """Odd reflection about the end samples: a linear trend (walking) runs on through the
    padding, so zero-phase filters do not pull the ends back."""
    n = len(x) - 1
    if n < 1:
        return np.pad(x, ((before, after), (0, 0)), mode='edge')
    b = min(before, n)
    a = min(after, n)
    out = np.concatenate([2 * x[:1] - x[1:b + 1][::-1], x, 2 * x[-1:] - x[-a - 1:-1][::-1]])
    return np.pad(out, ((before - b, after - a), (0, 0)), mode='edge')


def _running_median(x: np.ndarray, half: int, causal: bool) -> np.ndarray:
    if half <= 0 or len(x) < 3:
        return x.copy()
    T = len(x)
    pad = np.pad(x, ((2 * half, 0), (0, 0)), mode='edge') if causal else _pad(x, half, half)
    win = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1, axis=0)
    return np.median(win, axis=-1)[:T]


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0 or len(x) < 2:
        return x.copy()
    r = int(math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = _pad(x, r, r)
    return np.stack([np.convolve(pad[:, i], k, mode='valid') for i in range(x.shape[1])], -1)


class Holt:
    """Causal level + trend (Holt / alpha-beta) smoothing, one sample at a time: no lag on a
    steady motion, which plain exponential smoothing has (a subject walking at 1 m/s would
    trail by tau metres). Innovations beyond ``clip`` are clipped, so single-frame spikes
    only nudge."""

    def __init__(self, tau_frames: float, clip: float):
        self.a = min(1.0, 2.0 / (max(tau_frames, 0.0) + 1))
        self.b = self.a * self.a / (2 - self.a)
        self.clip = clip
        self.level = None
        self.trend = None

    def step(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.level is None:
            self.level, self.trend = x.copy(), np.zeros_like(x)
            return self.level.copy()
        pred = self.level + self.trend
        e = np.clip(x - pred, -self.clip, self.clip)
        self.level = pred + self.a * e
        self.trend = self.trend + self.b * e
        return self.level.copy()


def _holt(x: np.ndarray, tau_frames: float, clip: float) -> np.ndarray:
    f = Holt(tau_frames, clip)
    return np.stack([f.step(v) for v in x]) if len(x) else x.copy()


DIRECTION_CLIP, LOG_DEPTH_CLIP = 0.05, 0.1


class CausalRootFilter:
    """:func:`smooth_root` with ``causal=True``, one frame at a time (live nodes)."""

    def __init__(self, fps: float = 30.0, depth_s: float = 0.12, direction_s: float = 0.03):
        self.direction = Holt(direction_s * fps, DIRECTION_CLIP)
        self.depth = Holt(depth_s * fps, LOG_DEPTH_CLIP)

    def step(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        if not np.isfinite(t).all() or t[2] <= 1e-3:
            if self.depth.level is None:
                return np.full(3, np.nan)
            d, lz = self.direction.level, self.depth.level   # hold the last estimate
        else:
            d = self.direction.step(t[:2] / t[2])
            lz = self.depth.step(np.log([t[2]]))
        z = float(np.exp(lz[0]))
        return np.array([d[0] * z, d[1] * z, z])


def smooth_root(t: np.ndarray, fps: float = 50.0, causal: bool = False,
                depth_s: float = 0.12, direction_s: float = 0.03, median_s: float = 0.1
                ) -> np.ndarray:
    """Smoothed root track (T, 3), camera frame. Smooths the ray direction (x/z, y/z) with
    time constant ``direction_s`` and log depth with ``depth_s`` (seconds; Gaussian sigma
    offline, twice-applied one-pole time constant when ``causal``), after a running median
    of ``median_s`` that removes single-frame spikes (causal: time constants of a level +
    trend filter whose innovations are clipped instead). NaN frames are bridged."""
    t = np.asarray(t, dtype=np.float64)
    if not len(t):
        return t.copy()
    t = _fill_nan(t)
    if not np.isfinite(t).all():
        return t
    z = np.maximum(t[:, 2], 1e-3)
    q = np.stack([t[:, 0] / z, t[:, 1] / z, np.log(z)], -1)
    if causal:
        d = _holt(q[:, :2], direction_s * fps, DIRECTION_CLIP)
        lz = _holt(q[:, 2:], depth_s * fps, LOG_DEPTH_CLIP)
    else:
        q = _running_median(q, int(round(median_s * fps / 2)), False)
        d = _gauss(q[:, :2], direction_s * fps)
        lz = _gauss(q[:, 2:], depth_s * fps)
    z = np.exp(lz[:, 0])
    return np.stack([d[:, 0] * z, d[:, 1] * z, z], -1)


# ----------------------------------------------------------------------------- pipeline

def floor_depth_scale(poses_cam: np.ndarray, camera: Camera, floor_z: float = 0.0,
                      fps: float = 50.0, window_s: float = 2.0, quantile: float = 20.0,
                      smooth_s: float = 0.25) -> Optional[np.ndarray]:
    """Per-frame factor (T,) by which to scale placed camera-frame skeletons (about the
    camera centre, which keeps every projection) so the lower foot stands on the floor
    (world ``z = floor_z``, foot joint ``FOOT_JOINT_HEIGHT_M`` above it).

    Scaling about the camera centre moves world heights linearly (``z(s) = s a + C_z``), so
    each frame gives the factor that puts its lower foot on the floor. A foot in the air
    (jumps, a raised leg, sitting) asks for a larger factor than the true one (it would be
    pushed down onto the floor), noise for both, so the factor is a low quantile over a
    sliding window, then Gaussian-smoothed. ``None``
    when the geometry cannot tell (camera near the floor height, or the world's z axis
    is not the body's up: the floor is then not at ``z = floor_z``, e.g. a calibration
    whose world is a camera frame)."""
    got = floor_factors(poses_cam, camera, floor_z)
    if got is None:
        return None
    s, up_z = got
    if not _world_z_is_up(up_z):
        return None
    if np.isfinite(s).sum() < max(3, 0.2 * len(s)):
        return None
    half = max(1, int(round(window_s * fps / 2)))
    pad = np.pad(s, (half, half), mode='edge')
    win = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1)
    with np.errstate(all='ignore'):
        q = np.nanpercentile(win, quantile, axis=-1)[:len(s)]
    q = _fill_nan(q[:, None])
    if not np.isfinite(q).all():
        return None
    q = _gauss(q, smooth_s * fps)[:, 0]
    if not FLOOR_FACTOR_RANGE[0] < float(np.median(q)) < FLOOR_FACTOR_RANGE[1]:
        return None
    return q


# The floor may disagree with the skeleton's size by this much (a child seen by an adult-sized
# lifter: ~0.7); beyond, rather the floor is not at floor_z than the lifter that wrong.
# Held-out mocap through the Human3.6M cameras needs 0.84-1.10.
FLOOR_FACTOR_RANGE = (0.7, 1.4)


def floor_factors(poses_cam: np.ndarray, camera: Camera, floor_z: float = 0.0):
    """Per frame: the factor (T,) that puts the lower foot joint on the floor (NaN where it
    cannot), and the world z component of the body axis (T,); ``None`` when the camera is
    within 0.5 m of the floor height (the factor is then ill-conditioned)."""
    p = np.asarray(poses_cam, dtype=np.float64).reshape(-1, 17, 3)
    cz = float(camera.centre[2]) - floor_z
    if abs(cz) < 0.5:
        return None
    up_z = (body_up(p) @ camera.R)[:, 2]                  # R^T v: the world direction
    d = (p[:, [RFOOT, LFOOT]] @ camera.R)[..., 2]          # a = world-z direction part
    with np.errstate(all='ignore'):
        a = np.nanmin(d, axis=1) if cz > 0 else np.nanmax(d, axis=1)
        s = (FOOT_JOINT_HEIGHT_M - cz) / a
    return np.where(np.isfinite(s) & (s > 0.3) & (s < 3.0), s, np.nan), up_z


def _world_z_is_up(up_z: np.ndarray) -> bool:
    ok = np.isfinite(up_z)
    return bool(ok.any()) and float(np.median(up_z[ok])) >= math.cos(math.radians(35))


class CausalFloorScale:
    """:func:`floor_depth_scale` for live use, one frame at a time: the low quantile of the
    past ``window_s`` of per-frame factors, smoothed by a level + trend filter on its log.
    ``step`` returns 1.0 (no change) until ``min_s`` of frames have been seen or while the
    floor is not usable (see :func:`floor_depth_scale`)."""

    def __init__(self, camera: Camera, floor_z: float = 0.0, fps: float = 30.0,
                 window_s: float = 2.0, quantile: float = 20.0, min_s: float = 0.5,
                 smooth_s: float = 0.25):
        from collections import deque
        n = max(2, int(round(window_s * fps)))
        self.camera, self.floor_z, self.quantile = camera, floor_z, quantile
        self.factors, self.up_z = deque(maxlen=n), deque(maxlen=n)
        self.min_frames = max(2, int(round(min_s * fps)))
        self.filter = Holt(smooth_s * fps, 0.05)
        self.active = False

    def step(self, pose_cam: np.ndarray) -> float:
        got = floor_factors(pose_cam, self.camera, self.floor_z)
        if got is None:
            self.active = False
            return 1.0
        self.factors.append(float(got[0][0]))
        self.up_z.append(float(got[1][0]))
        s = np.array(self.factors)
        if np.isfinite(s).sum() < self.min_frames or not _world_z_is_up(np.array(self.up_z)):
            self.active = False
            return 1.0
        q = float(np.nanpercentile(s, self.quantile))
        if not FLOOR_FACTOR_RANGE[0] < q < FLOOR_FACTOR_RANGE[1]:
            self.active = False
            return 1.0
        self.active = True
        return float(np.exp(self.filter.step(np.array([math.log(q)]))[0]))


class CausalPlacement:
    """Live placement of one person's track in one camera, frame by frame: the root from the
    2D keypoints (:func:`solve_root`), a causal root filter, and the depth cues
    :func:`place_skeletons` uses offline, causal: the subject's running size scaled to
    ``subject_height_m`` (:class:`RunningHeight`, 0: the lifter's scale) and the feet on the
    floor at ``floor_z`` (:class:`CausalFloorScale`, None: no floor cue); with both, the two
    depths are combined (:func:`combine_depth_cues`); ``refit_limbs``: then the limbs refit
    to the 2D (:class:`.limbs.CausalLimbs`). One per (camera, person)."""

    def __init__(self, camera: Camera, fps: float = 30.0, floor_z: Optional[float] = None,
                 subject_height_m: float = 0.0, refit_limbs: bool = True):
        self.filter = CausalRootFilter(fps)
        self.limbs = CausalLimbs() if refit_limbs else None
        self.floor = CausalFloorScale(camera, floor_z, fps) if floor_z is not None else None
        self.height = RunningHeight(subject_height_m) if subject_height_m > 0 else None

    def step(self, pose: np.ndarray, keypoints_px: np.ndarray, confidence: np.ndarray,
             camera: Camera) -> Optional[np.ndarray]:
        """One lifted pose (J, 3) and its 2D (J, 2) + (J,) -> the absolute camera-frame pose
        (J, 3), or None until a root can be had."""
        rel = pose - pose[:1]
        if self.height is not None:   # the track's size so far, not this frame's pose
            rel = rel * self.height.step(rel)
        root = self.filter.step(solve_root(rel[None], keypoints_px[None], camera,
                                           confidence[None])[0])
        if not np.isfinite(root).all():
            return None
        placed = rel + root
        if self.floor is not None:
            f = self.floor.step(placed)
            placed = (rel + root * float(combine_depth_cues(f, 1.0)) if self.height is not None
                      else placed * f)
        if self.limbs is not None:
            placed = self.limbs.step(placed, keypoints_px, confidence, camera)
        return placed


@dataclass
class Placement:
    """Absolute camera-frame skeletons and how they were obtained."""
    poses_cam: np.ndarray     # (T, J, 3) absolute, camera frame, metres
    root_raw: np.ndarray      # (T, 3) per-frame root before smoothing
    root: np.ndarray          # (T, 3) smoothed root
    scale: float              # factor applied to the lifter's skeleton (1 = lifter's scale)
    floor_scale: Optional[np.ndarray] = None  # (T,) depth factor from the floor, if used
    limbs_refit: bool = False  # limbs refit to the 2D (.limbs.refit_limbs)


def place_skeletons(poses: np.ndarray, keypoints_px: np.ndarray, camera: Camera,
                    confidence: Optional[np.ndarray] = None,
                    subject_height_m: Optional[float] = None, fps: float = 50.0,
                    smoothing: str = 'offline', floor_z: Optional[float] = None,
                    refit: bool = True) -> Placement:
    """Root-relative lifted poses (T, J, 3) -> absolute camera-frame poses.

    ``smoothing``: ``'offline'`` (zero-phase), ``'causal'`` (live) or ``'none'``.
    ``floor_z``: the calibration's world has its floor at this height (Pose2Sim, Qualisys,
    Human3.6M: 0): the root depth is then taken from the feet standing on it
    (:func:`floor_depth_scale`) rather than from the lifter's size, or, with
    ``subject_height_m``, from both (:func:`combine_depth_cues`); ignored when the geometry
    cannot tell (see there). Offline only.
    ``refit``: offline, the limbs are then refit to the 2D, one length per bone
    (:func:`.limbs.refit_limbs`: one camera's knee flexion on held-out CMU 2.6-7.7 degrees
    closer by view)."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[-1] != 3:
        raise ValueError(f'expected poses of shape (T, J, 3), got {poses.shape}')
    kp = np.asarray(keypoints_px, dtype=np.float64)
    if kp.shape[:2] != poses.shape[:2]:
        raise ValueError(f'keypoints {kp.shape} do not match poses {poses.shape}')
    if confidence is None and kp.shape[-1] == 3:
        confidence = kp[..., 2]
    root0 = poses[:, :1]
    rel = poses - root0
    scale = 1.0
    if subject_height_m:
        rel, scale = scale_to_height(rel, subject_height_m)
    t = solve_root(rel, kp[..., :2], camera, confidence)
    if smoothing == 'none':
        ts = t
    elif smoothing in ('offline', 'causal'):
        ts = smooth_root(t, fps, causal=smoothing == 'causal')
    else:
        raise ValueError(f"smoothing must be 'offline', 'causal' or 'none', got {smoothing!r}")
    placed = rel + ts[:, None]
    fs = None
    if floor_z is not None and smoothing != 'causal':
        fs = floor_depth_scale(placed, camera, floor_z, fps)
        if fs is not None:
            if subject_height_m:
                # Two independent depth cues (the skeleton's known size: factor 1 here,
                # the feet on the floor: fs), weighted; the skeleton keeps the subject's
                # size.
                fs = combine_depth_cues(fs, 1.0)
                placed = rel + (ts * fs[:, None])[:, None]
            else:  # the floor tells the depth and with it the size
                placed = placed * fs[:, None, None]
            ts = ts * fs[:, None]
    refit = refit and smoothing == 'offline'
    if refit:
        placed = refit_limbs(placed, kp[..., :2], camera, confidence, fps)
    return Placement(placed, t, ts, scale, fs, refit)


def to_world(poses_cam: np.ndarray, camera: Camera) -> np.ndarray:
    """Absolute camera-frame points (..., 3) -> the calibration's world frame:
    ``X_world = R^T (X_cam - t)``."""
    return camera.to_world(poses_cam)


def lift_to_world(poses: np.ndarray, keypoints_px: np.ndarray, camera: Camera,
                  confidence: Optional[np.ndarray] = None,
                  subject_height_m: Optional[float] = None, fps: float = 50.0,
                  smoothing: str = 'offline', floor_z: Optional[float] = None,
                  refit: bool = True) -> np.ndarray:
    """Root-relative lifted poses -> world-frame absolute poses (T, J, 3), metres."""
    pl = place_skeletons(poses, keypoints_px, camera, confidence, subject_height_m, fps,
                         smoothing, floor_z, refit)
    return to_world(pl.poses_cam, camera)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((_unit(a) * _unit(b)).sum(-1), -1, 1)))


def standing_mask(poses: np.ndarray, max_bend_deg: float = 25.0) -> np.ndarray:
    """Frames (T,) in which the body stands upright: knees and hips nearly straight
    (thigh/shin and legs/trunk within ``max_bend_deg``)."""
    p = np.asarray(poses, dtype=np.float64)
    ok = np.ones(len(p), dtype=bool)
    for hip, knee, foot in ((RHIP, RKNEE, RFOOT), (LHIP, LKNEE, LFOOT)):
        ok &= _angle(p[:, knee] - p[:, foot], p[:, hip] - p[:, knee]) < max_bend_deg
    legs = p[:, HIP] - (p[:, RFOOT] + p[:, LFOOT]) / 2
    ok &= _angle(legs, p[:, THORAX] - p[:, HIP]) < max_bend_deg
    return ok & np.isfinite(p).all((1, 2))


def body_up(poses: np.ndarray) -> np.ndarray:
    """Per-frame body axis (T, 3): the mean of the legs (feet midpoint -> Hip) and trunk
    (Hip -> Thorax) directions. (On held-out mocap through Human3.6M cameras this beat
    shins + thighs + trunk, legs only and adding the neck: 2.7 vs 3.3-4.4 degrees.)"""
    p = np.asarray(poses, dtype=np.float64)
    legs = p[:, HIP] - (p[:, RFOOT] + p[:, LFOOT]) / 2
    return _unit(_unit(legs) + _unit(p[:, THORAX] - p[:, HIP]))
