"""Limbs refit to the 2D: one length per limb bone, each limb joint on its keypoint's ray.

One camera cannot see depth, so the lifter guesses it, and where a limb points along the
line of sight it hedges between the two folds the 2D allows: the knee comes out straighter
and the shin shorter than they are (held-out CMU crouches: knee flexion 27 degrees short
above 90 degrees). The 2D keypoint and the bone's length settle the depth up to that fold:
the joint lies on its keypoint's ray at the bone's length from its parent, and the lifter's
pose only has to say which side. :func:`refit_limbs` does this softly, over a whole placed
track (offline; :class:`CausalLimbs` live, frame by frame, for the world node): knees,
ankles, elbows and wrists move to minimise

- the reprojection error, ``pixel_sigma`` per keypoint (less weight at lower confidence,
  robust beyond ``ROBUST_SIGMAS``: a wrong detection does not drag the limb);
- each limb bone's deviation from its length, ``length_sigma``;
- the distance from the lifter's placed joint, ``prior_sigma`` (the fold, and the depth
  where a bone lies across the line of sight);
- the joint's acceleration, ``accel_sigma`` (m/s^2), against the noise of the 2D.

A bone's length is measured in the 2D (:func:`seen_lengths`), where the lifter has it
nearly square to the line of sight: there the image shows its length and the lifter does
not hedge. The lifter's own lengths would do on motion capture, but not on MediaPipe
keypoints, whose joints sit elsewhere on the limb: on the real 4-camera clip the lifter's
shins are 10-15% longer than the triangulated MediaPipe shins, and forcing them onto the
keypoints bent cam04's knees 13 degrees too far. Hips, spine, head and shoulders stay as
placed. Measured on held-out mocap through the four Human3.6M cameras, 5 px 2D noise
(benchmarks/kinematics.py, ``world1cam*``).

Needs torch (autograd and L-BFGS over the whole track), as the lifter does; no ROS.
"""
from __future__ import annotations

from collections import deque
from typing import Optional, Sequence

import numpy as np

from ..core.skeletons import H36M17
from .calibration import Camera

# H36M-17: knees, ankles (feet), elbows, wrists.
LIMB_JOINTS = (2, 3, 5, 6, 12, 13, 15, 16)

PIXEL_SIGMA = 5.0          # px, per keypoint at confidence 1
ACROSS_SIN = 0.87          # a bone within 30 degrees of square to the line of sight ...
MIN_ACROSS = 10            # ... on this many frames is measured in the 2D,
SEEN_PERCENTILE = 65.0     # this percentile of those frames' lengths (a fold seen is short)
LENGTH_PERCENTILE = 80.0   # else of the lifter's lengths over the track
SEEN_RANGE = np.array([0.8, 1.25])  # a length seen stays within this of the lifter's median
LENGTH_SIGMA = 0.003       # m
PRIOR_SIGMA = 0.03         # m, from the lifter's placed joint
ACCEL_SIGMA = 30.0         # m/s^2
MIN_CONFIDENCE = 0.05      # keypoints below this do not pull
ROBUST_SIGMAS = 4.0        # reprojection errors beyond this many sigmas pull less and less
ITERATIONS = 60            # L-BFGS; more changes < 0.1 degree on the benchmark
HISTORY = 10               # L-BFGS pairs kept (torch: 100, 4 GB for an hour at 30 fps; 10: 0.4 GB)


def refit_limbs(poses_cam: np.ndarray, keypoints_px: np.ndarray, camera: Camera,
                confidence: Optional[np.ndarray] = None, fps: float = 50.0,
                joints: Sequence[int] = LIMB_JOINTS, parents: Sequence[int] = H36M17.parents,
                pixel_sigma: float = PIXEL_SIGMA, length_sigma: float = LENGTH_SIGMA,
                prior_sigma: float = PRIOR_SIGMA, accel_sigma: float = ACCEL_SIGMA
                ) -> np.ndarray:
    """Absolute camera-frame skeletons (T, J, 3) and their 2D keypoints (T, J, 2) -> the same
    track with the limb ``joints`` refit (see the module). Frames with a missing joint or
    at or behind the camera are left as they are; a missing keypoint does not pull."""
    import torch
    poses = np.asarray(poses_cam, dtype=np.float64)
    kp = np.asarray(keypoints_px, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[-1] != 3:
        raise ValueError(f'expected poses of shape (T, J, 3), got {poses.shape}')
    if kp.shape[:2] != poses.shape[:2]:
        raise ValueError(f'keypoints {kp.shape} do not match poses {poses.shape}')
    for name, v in (('pixel_sigma', pixel_sigma), ('length_sigma', length_sigma),
                    ('prior_sigma', prior_sigma), ('accel_sigma', accel_sigma), ('fps', fps)):
        if not v > 0:
            raise ValueError(f'{name} must be positive, got {v}')
    out = poses.copy()
    ok = np.isfinite(poses).all(axis=(1, 2)) & (poses[..., 2] > 1e-3).all(axis=1)
    if ok.sum() < 3:
        return out
    par = np.asarray(parents)
    joints = [j for j in joints if par[j] >= 0]
    if confidence is None and kp.shape[-1] == 3:
        confidence = kp[..., 2]
    rays, weight = _rays(camera, kp, confidence)
    length = seen_lengths(poses[ok], rays[ok], weight[ok], joints, par)

    free, parent = torch.tensor(joints), torch.tensor(par[joints])
    L = torch.tensor(length)
    px_scale = float(np.sqrt(camera.K[0, 0] * camera.K[1, 1])) / pixel_sigma
    acc_per_frame = accel_sigma / fps ** 2
    for a, b in _runs(ok):
        P = torch.tensor(poses[a:b])
        ray = torch.tensor(rays[a:b][:, joints])
        w2 = torch.tensor(weight[a:b][:, joints])
        X = P[:, free].clone().requires_grad_(True)
        opt = torch.optim.LBFGS([X], lr=1, max_iter=ITERATIONS, history_size=HISTORY,
                                line_search_fn='strong_wolfe')

        def loss():
            opt.zero_grad()
            full = P.index_copy(1, free, X)
            proj = X[..., :2] / X[..., 2:3].clamp(min=1e-3)
            r2 = ((proj - ray) * px_scale).pow(2).sum(-1)
            # Cauchy: quadratic within ROBUST_SIGMAS of the keypoint, fading beyond
            f = (w2 * ROBUST_SIGMAS ** 2 * torch.log1p(r2 / ROBUST_SIGMAS ** 2)).sum()
            f = f + (((X - full[:, parent]).norm(dim=-1) - L) / length_sigma).pow(2).sum()
            f = f + ((X - P[:, free]) / prior_sigma).pow(2).sum()
            if len(X) > 2:
                f = f + ((X[2:] - 2 * X[1:-1] + X[:-2]) / acc_per_frame).pow(2).sum()
            f.backward()
            return f

        opt.step(loss)
        out[a:b, joints] = X.detach().numpy()
    return out


def seen_lengths(poses: np.ndarray, rays: np.ndarray, weight: np.ndarray,
                 joints: Sequence[int], parents: Sequence[int]) -> np.ndarray:
    """Each limb bone's length (one per ``joints``, the bone from its parent) as the 2D
    shows it: on the frames where the lifter has the bone nearly square to the line of
    sight, its span across that line, from the parent (its keypoint's ray at the lifter's
    depth when the parent is a limb joint too, else the placed parent: hips and shoulders
    are not where a detector's are) to the child's keypoint ray at the lifter's depth,
    divided by the lifter's sine, kept within ``SEEN_RANGE`` of the lifter's median length
    (a keypoint wrong on most frames). Bones seen so on too few frames: the
    ``LENGTH_PERCENTILE`` of the lifter's lengths (a hedged fold is short).

    ``poses`` (T, J, 3) camera frame, ``rays`` (T, J, 2) undistorted normalised keypoints,
    ``weight`` (T, J) > 0 where a keypoint is seen."""
    par = np.asarray(parents)
    joints = list(joints)
    lifted = np.linalg.norm(poses[:, joints] - poses[:, par[joints]], axis=-1)
    out = np.percentile(lifted, LENGTH_PERCENTILE, axis=0)
    lo, hi = np.median(lifted, axis=0) * SEEN_RANGE[:, None]
    limb = set(joints)
    one = np.ones((len(poses), 1))
    for i, j in enumerate(joints):
        p = par[j]
        child = np.concatenate([rays[:, j], one], -1) * poses[:, j, 2:3]
        if p in limb:
            parent = np.concatenate([rays[:, p], one], -1) * poses[:, p, 2:3]
            seen = (weight[:, j] > 0) & (weight[:, p] > 0)
        else:
            parent = poses[:, p]
            seen = weight[:, j] > 0
        d = poses[:, j] - poses[:, p]
        sight = 0.5 * (poses[:, j] + poses[:, p])
        sight /= np.linalg.norm(sight, axis=-1, keepdims=True)

        def across(v):
            return np.linalg.norm(v - (v * sight).sum(-1, keepdims=True) * sight, axis=-1)
        sin = across(d) / np.maximum(np.linalg.norm(d, axis=-1), 1e-9)
        use = seen & (sin > ACROSS_SIN)
        if use.sum() >= MIN_ACROSS:
            seen_length = np.percentile(across(child - parent)[use] / sin[use], SEEN_PERCENTILE)
            out[i] = np.clip(seen_length, lo[i], hi[i])
    return out


def _rays(camera: Camera, keypoints_px: np.ndarray, confidence: Optional[np.ndarray]):
    """(..., J, 2) pixels -> (their undistorted normalised rays, 0 where missing; the pull of
    each: its confidence, 0 where missing or below ``MIN_CONFIDENCE``)."""
    rays = camera.normalize_pixels(keypoints_px[..., :2])
    conf = (np.ones(rays.shape[:-1]) if confidence is None
            else np.asarray(confidence, dtype=np.float64))
    weight = np.where(np.isfinite(rays).all(-1) & (conf >= MIN_CONFIDENCE), conf, 0.0)
    return np.nan_to_num(rays), weight


def _runs(ok: np.ndarray):
    """(start, stop) of each run of consecutive True frames, three frames or longer."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(int), [0]])))
    return [(a, b) for a, b in zip(edges[::2], edges[1::2]) if b - a >= 3]


class CausalLimbs:
    """Live: :func:`refit_limbs` one frame at a time, for the world node. The bone lengths
    come from the frames seen so far (:func:`seen_lengths` over the last ``window`` frames,
    renewed every ``every``), and a few Gauss-Newton steps on the frame's 24 unknowns stand
    in for L-BFGS over the track. No smoothness term: from the two frames before alone it
    extrapolates, and it cost 2.6 degrees (held-out mocap, one camera: mean hip and knee
    error over the views 10.2 -> 9.2 degrees without it, 11.8 with it; offline 8.5). Until
    ``min_frames`` frames have been seen a pose passes unchanged."""

    def __init__(self, window: int = 300, every: int = 15, min_frames: int = 15,
                 joints: Sequence[int] = LIMB_JOINTS, parents: Sequence[int] = H36M17.parents,
                 iterations: int = 4):
        self.every, self.min_frames = int(every), int(min_frames)
        self.iterations = int(iterations)
        self.par = np.asarray(parents)
        self.joints = [j for j in joints if self.par[j] >= 0]
        self.seen: deque = deque(maxlen=int(window))
        self.length: Optional[np.ndarray] = None
        self.frames = 0

    def step(self, pose_cam: np.ndarray, keypoints_px: np.ndarray,
             confidence: Optional[np.ndarray], camera: Camera) -> np.ndarray:
        """One absolute camera-frame pose (J, 3) and its 2D (J, 2) -> the pose with its
        limbs refit (a copy); a pose with a missing joint passes unchanged."""
        pose = np.asarray(pose_cam, dtype=np.float64)
        if not np.isfinite(pose).all() or (pose[:, 2] <= 1e-3).any():
            return pose.copy()
        ray, weight = _rays(camera, np.asarray(keypoints_px, dtype=np.float64), confidence)
        self.seen.append((pose, ray, weight))
        self.frames += 1
        if self.frames < self.min_frames:
            return pose.copy()
        if self.length is None or self.frames % self.every == 0:
            p, r, w = (np.stack(x) for x in zip(*self.seen))
            self.length = seen_lengths(p, r, w, self.joints, self.par)
        return self._fit(pose, ray, weight, float(np.sqrt(camera.K[0, 0] * camera.K[1, 1])))

    def _fit(self, pose, ray, weight, focal):
        """Gauss-Newton on the limb joints of one frame; the terms of :func:`refit_limbs`,
        the reprojection's Cauchy weights renewed every step."""
        J, par = self.joints, self.par
        n = len(J)
        col = {j: i for i, j in enumerate(J)}
        X = pose[J].copy()
        P = pose[J]
        s = focal / PIXEL_SIGMA
        for _ in range(self.iterations):
            rows, res = [], []
            full = pose.copy()
            full[J] = X
            for i, j in enumerate(J):
                x, y, z = X[i]
                u = np.array([x / z, y / z]) - ray[j, :2]
                r2 = float((u * s) @ (u * s))
                sw = np.sqrt(weight[j] / (1.0 + r2 / ROBUST_SIGMAS ** 2)) * s
                d = np.zeros((2, 3 * n))
                d[:, 3 * i:3 * i + 3] = [[1 / z, 0, -x / z ** 2], [0, 1 / z, -y / z ** 2]]
                rows.append(sw * d)
                res.append(sw * u)
                v = X[i] - full[par[j]]
                nv = max(float(np.linalg.norm(v)), 1e-9)
                d = np.zeros((1, 3 * n))
                d[0, 3 * i:3 * i + 3] = v / nv / LENGTH_SIGMA
                if par[j] in col:
                    k = col[par[j]]
                    d[0, 3 * k:3 * k + 3] -= v / nv / LENGTH_SIGMA
                rows.append(d)
                res.append([(nv - self.length[i]) / LENGTH_SIGMA])
            eye = np.eye(3 * n)
            rows.append(eye / PRIOR_SIGMA)
            res.append((X - P).reshape(-1) / PRIOR_SIGMA)
            A = np.concatenate(rows)
            b = np.concatenate([np.ravel(r) for r in res])
            X = X - _solve_spd(np.einsum('ri,rj->ij', A, A),
                               np.einsum('ri,r->i', A, b)).reshape(n, 3)
        out = pose.copy()
        out[J] = X
        return out


def _solve_spd(M: np.ndarray, g: np.ndarray) -> np.ndarray:
    """M x = g for a small symmetric positive definite M, by Cholesky in numpy. Not LAPACK:
    OpenBLAS woke its threads for a 24 x 24 solve, and next to torch on a loaded machine
    one solve took 5 ms (70 ms a frame); this takes a few microseconds per column."""
    n = len(M)
    L = np.zeros_like(M)
    for j in range(n):
        d = M[j, j] - L[j, :j] @ L[j, :j]
        L[j, j] = np.sqrt(max(d, 1e-300))
        L[j + 1:, j] = (M[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]
    y = np.zeros(n)
    for j in range(n):
        y[j] = (g[j] - L[j, :j] @ y[:j]) / L[j, j]
    x = np.zeros(n)
    for j in reversed(range(n)):
        x[j] = (y[j] - L[j + 1:, j] @ x[j + 1:]) / L[j, j]
    return x
