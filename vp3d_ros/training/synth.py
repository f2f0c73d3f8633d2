"""Synthesising (2D pixels, 3D camera-frame targets) training pairs from 3D motion capture.

Everything here is vectorised over a batch of N windows and works in numpy:

- :func:`sample_times` / :func:`interpolate` resample a sequence to another frame rate
  (linear interpolation between mocap frames, clamped at the ends, which reproduces the
  edge padding the lifter applies at inference).
- :func:`randomize_bones` rescales every bone in 3D (per-limb factors, left/right equal,
  times a global scale) before projection, so the model does not learn one fixed skeleton.
- :func:`sample_cameras` draws virtual pinhole cameras around the subject: distance,
  height, yaw, slight pitch/roll, focal length, portrait/landscape image sizes and an
  off-centre aim, in the spirit of the Human3.6M rigs (f ~ 1.15 x image size, 4-6 m,
  1.5 m high) but much more varied.
- :func:`world_to_camera` / :func:`project` give camera-frame points (x right, y down,
  z forward, metres) and pixels.
- :func:`mediapipe_definitions` moves hip and shoulder keypoints, in 3D, to where
  MediaPipe's landmarks sit instead of mocap joint centres (issue 15: lower, narrower hips;
  wider shoulders), so inputs and targets of a share of windows follow MediaPipe's keypoint
  definitions.
- :func:`detector_noise` adds MediaPipe-like errors: Gaussian jitter scaled by the person's
  size, occasional large outliers, dropped joints (held from the previous frame or
  collapsed onto a neighbour) and rare left/right leg swaps.
- :func:`normalize` is the lifter's input normalisation (``X / w * 2 - [1, h / w]``).

World frames of the mocap files are z-up (metres); camera frames are x right, y down,
z forward, the convention of :mod:`vp3d_ros.core.lifter`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..core.skeletons import H36M17

PARENTS = np.array(H36M17.parents)
FLIP_PERM = np.array(H36M17.flip_permutation())
NUM_JOINTS = 17

# Bone groups (indexed by child joint) sharing one random length factor; left and right
# twins share a group so the randomised skeleton stays symmetric.
_BONE_GROUP = {1: 0, 4: 0,        # hip width
               2: 1, 5: 1,        # thigh
               3: 2, 6: 2,        # shin
               7: 3, 8: 3,        # spine, thorax
               9: 4, 10: 5,       # neck, head
               11: 6, 14: 6,      # shoulder width
               12: 7, 15: 7,      # upper arm
               13: 8, 16: 8}      # forearm
NUM_BONE_GROUPS = 9

# Image sizes (w, h), landscape and portrait.
IMAGE_SIZES = np.array([(1000, 1000), (1000, 1002), (1280, 720), (1920, 1080), (640, 480),
                        (960, 540), (720, 1280), (1080, 1920), (480, 640), (540, 960)],
                       dtype=np.float64)

# Per-joint multiplier of the detector jitter (extremities noisier than the torso).
JOINT_NOISE = np.array([1.0, 0.9, 1.1, 1.4, 0.9, 1.1, 1.4, 0.9, 0.8, 0.9, 1.0, 0.8, 1.1,
                        1.5, 0.8, 1.1, 1.5])


@dataclass
class Cameras:
    """N pinhole cameras: ``X_cam = R @ (X_world - C)`` (R rows: right, down, forward)."""
    R: np.ndarray       # (N, 3, 3) world -> camera
    C: np.ndarray       # (N, 3) camera centres in world coordinates (metres)
    f: np.ndarray       # (N,) focal length in pixels
    c: np.ndarray       # (N, 2) principal point in pixels
    size: np.ndarray    # (N, 2) image width, height in pixels

    def __len__(self):
        return len(self.f)


# ----------------------------------------------------------------------------- timing

def sample_times(n: int, lengths: np.ndarray, src_fps: np.ndarray, dst_fps: np.ndarray,
                 num_frames: int, pad: int, num_out: int, rng: np.random.Generator,
                 jitter: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """Source-frame times of ``num_frames`` consecutive frames at ``dst_fps``.

    The ``num_out`` frames from index ``pad`` on (those the model predicts when trained on
    the window) start uniformly inside the sequence; context frames before/after may fall
    outside it and are clamped (= the edge padding of the lifter). ``jitter`` adds Gaussian
    timing noise (std in output frames) to the input times; exact times come back too.
    Returns (input_times, exact_times), both (n, num_frames).
    """
    step = src_fps / dst_fps                                   # source frames per output frame
    span = (num_out - 1) * step
    start = rng.random(n) * np.maximum(lengths - 1 - span, 0.0)
    idx = np.arange(num_frames)[None, :] - pad
    exact = start[:, None] + idx * step[:, None]
    times = exact
    if jitter > 0:
        times = exact + rng.normal(0.0, jitter, exact.shape) * step[:, None]
    hi = (lengths - 1)[:, None]
    return np.clip(times, 0, hi), np.clip(exact, 0, hi)


def interpolate(frames: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
                times: np.ndarray) -> np.ndarray:
    """Linear interpolation in a concatenation of sequences.

    frames (M, J, 3) all sequences back to back; offsets/lengths (n,) the sequence of each
    window; times (n, T) in that sequence's frames. Returns (n, T, J, 3).
    """
    t0 = np.floor(times).astype(np.int64)
    frac = (times - t0)[..., None, None]
    t1 = np.minimum(t0 + 1, (lengths - 1)[:, None])
    a = frames[offsets[:, None] + t0]
    b = frames[offsets[:, None] + t1]
    return a + (b - a) * frac


# ----------------------------------------------------------------------------- skeleton

def randomize_bones(poses: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Rescale bones: poses (n, T, 17, 3) world; factors (n, 17) per child joint (root
    entry: global scale of the root height). Children are rebuilt from their parents."""
    out = np.empty_like(poses)
    out[:, :, 0] = poses[:, :, 0]
    out[:, :, 0, 2] = poses[:, :, 0, 2] * factors[:, None, 0]
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        out[:, :, j] = out[:, :, p] + (poses[:, :, j] - poses[:, :, p]) * factors[:, None, j, None]
    return out


def sample_bone_factors(n: int, rng: np.random.Generator, limb_range=(0.85, 1.15),
                        global_range=(0.87, 1.12), asym: float = 0.02) -> np.ndarray:
    """(n, 17) factors: global scale x per-group scale x small left/right asymmetry."""
    g = rng.uniform(*global_range, n)
    groups = rng.uniform(*limb_range, (n, NUM_BONE_GROUPS))
    f = np.ones((n, NUM_JOINTS))
    for j, k in _BONE_GROUP.items():
        f[:, j] = groups[:, k]
    f *= 1.0 + rng.uniform(-asym, asym, (n, NUM_JOINTS))
    f *= g[:, None]
    f[:, 0] = g
    return f


def flip_pairs(x: np.ndarray) -> np.ndarray:
    """Mirror camera-frame data: negate x and swap left/right joints (axis -2)."""
    y = x[..., FLIP_PERM, :].copy()
    y[..., 0] *= -1
    return y


@dataclass
class Definitions:
    """Ranges of the per-window shift from mocap joint centres to MediaPipe landmarks.

    Measured on the real 4-camera clip (MediaPipe 2D triangulated) against the training
    mocap: MediaPipe's hip-centre-to-mid-shoulder distance is 0.68 of the leg length against
    0.48 (Human3.6M), its hip width 0.56 of the shoulder width against 0.96; per-bone
    factors alone barely reach that corner.
    """
    prob: float = 0.5                               # share of windows shifted
    hip_drop: Tuple[float, float] = (-0.05, 0.25)   # hips move down the trunk, x hip-thorax length
    hip_width: Tuple[float, float] = (0.6, 1.05)    # hip width factor (about the hip centre)
    shoulder_width: Tuple[float, float] = (0.95, 1.4)   # about mid-shoulders
    mapped_torso: float = 0.5   # of the shifted: Thorax, Spine rebuilt as the 2D mapping does


def mediapipe_definitions(poses: np.ndarray, rng: np.random.Generator,
                          level: Definitions = Definitions()) -> np.ndarray:
    """poses (n, T, 17, 3) world -> a copy where a share of windows has MediaPipe-like hip
    and shoulder keypoints (and the root follows the hips, as the mapping's Hip does)."""
    out = poses.copy()
    on = np.flatnonzero(rng.random(len(poses)) < level.prob)
    if not len(on):
        return out
    m = len(on)
    p = out[on]
    root = p[:, :, 0].copy()
    trunk = p[:, :, 8] - root
    trunk_len = np.linalg.norm(trunk, axis=-1, keepdims=True)
    up = trunk / np.maximum(trunk_len, 1e-6)
    drop = rng.uniform(*level.hip_drop, m)[:, None, None] * trunk_len
    wf = rng.uniform(*level.hip_width, m)[:, None, None]
    for j in (1, 4):
        p[:, :, j] = root + (p[:, :, j] - root) * wf - up * drop
    p[:, :, 0] = root - up * drop
    mid = (p[:, :, 11] + p[:, :, 14]) / 2
    sf = rng.uniform(*level.shoulder_width, m)[:, None, None]
    for j in (11, 14):
        p[:, :, j] = mid + (p[:, :, j] - mid) * sf
    mapped = rng.random(m) < level.mapped_torso
    p[mapped, :, 8] = mid[mapped]
    p[mapped, :, 7] = (p[mapped, :, 0] + mid[mapped]) / 2
    out[on] = p
    return out


# ----------------------------------------------------------------------------- cameras

def _rot(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues rotation matrices (n, 3, 3) about unit axes (n, 3)."""
    k = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    K = np.zeros(k.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2] = -k[..., 2], k[..., 1]
    K[..., 1, 0], K[..., 1, 2] = k[..., 2], -k[..., 0]
    K[..., 2, 0], K[..., 2, 1] = -k[..., 1], k[..., 0]
    s, c = np.sin(angle)[..., None, None], np.cos(angle)[..., None, None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def look_at(centres: np.ndarray, targets: np.ndarray, roll: Optional[np.ndarray] = None
            ) -> np.ndarray:
    """World->camera rotations (n, 3, 3) for cameras at ``centres`` looking at ``targets``
    (z-up world), rows = camera x (right), y (down), z (forward), optional roll (rad)."""
    fwd = targets - centres
    fwd /= np.linalg.norm(fwd, axis=-1, keepdims=True)
    up = np.broadcast_to(np.array([0.0, 0.0, 1.0]), fwd.shape)
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd], axis=-2)
    if roll is not None:  # rotate the image plane about the optical (camera z) axis
        R = _rot(np.broadcast_to(np.array([0.0, 0.0, 1.0]), fwd.shape), roll) @ R
    return R


def sample_cameras(n: int, subject_xy: np.ndarray, rng: np.random.Generator,
                   distance=(3.0, 7.0), height=(0.8, 2.0), focal_rel=(0.55, 1.5),
                   aim_height=(0.75, 1.15), max_tilt_deg: float = 5.0,
                   off_centre: float = 0.8, sizes: np.ndarray = IMAGE_SIZES,
                   person_height: float = 1.9, rig_prob: float = 0.0,
                   rig_distance=(2.5, 4.5), rig_height=(2.0, 3.6)) -> Cameras:
    """Random cameras around subjects standing near ``subject_xy`` (n, 2) (world metres).

    Focal length = long image side x U(focal_rel); distance U(distance) but pushed back
    when the person (``person_height``) would not fit the image height; random yaw over
    the full circle, camera height U(height), aim at U(aim_height) above the floor, then
    slight extra pitch/roll (<= ``max_tilt_deg``) and a pan/tilt of the aim so that the
    subject lands anywhere in up to ``off_centre`` of the free image margin.

    A fraction ``rig_prob`` of cameras is placed like a lab rig's instead: mounted high
    (U(rig_height)) and close (U(rig_distance)), so they look down steeply at the subject
    (20-45 degrees), which the real lab clips show and the default range never reaches.
    """
    size = sizes[rng.integers(0, len(sizes), n)]
    w, h = size[:, 0], size[:, 1]
    f = np.maximum(w, h) * rng.uniform(*focal_rel, n)
    d = rng.uniform(*distance, n)
    rig = rng.random(n) < rig_prob
    d = np.where(rig, rng.uniform(*rig_distance, n), d)
    d_fit = person_height * f / (0.92 * h)            # distance where the person fills 92% of h
    d = np.maximum(d, d_fit)
    too_far = d > distance[1] * 1.15
    f = np.where(too_far, f * distance[1] * 1.15 / d, f)
    d = np.minimum(d, distance[1] * 1.15)
    yaw = rng.uniform(-np.pi, np.pi, n)
    cam_h = np.where(rig, rng.uniform(*rig_height, n), rng.uniform(*height, n))
    C = np.stack([subject_xy[:, 0] + d * np.cos(yaw), subject_xy[:, 1] + d * np.sin(yaw), cam_h], -1)
    aim = np.concatenate([subject_xy, rng.uniform(*aim_height, n)[:, None]], -1)
    tilt = np.deg2rad(max_tilt_deg)
    R = look_at(C, aim, roll=rng.uniform(-tilt, tilt, n))
    # Off-centre framing: pan/tilt the camera so the aim point moves in the image, within
    # the margin left by the person's expected size.
    person_px = person_height * f / d
    margin_x = np.maximum(w - 0.45 * person_px, 0) / 2 * off_centre
    margin_y = np.maximum(h - person_px, 0) / 2 * off_centre
    dx = rng.uniform(-1, 1, n) * margin_x
    dy = rng.uniform(-1, 1, n) * margin_y
    pan = np.arctan2(dx, f)
    tilt_a = np.arctan2(dy, f) + rng.uniform(-tilt, tilt, n)
    Ry = _rot(np.broadcast_to(np.array([0.0, 1.0, 0.0]), (n, 3)), pan)
    Rx = _rot(np.broadcast_to(np.array([1.0, 0.0, 0.0]), (n, 3)), tilt_a)
    R = Rx @ Ry @ R
    c = np.stack([w, h], -1) / 2 * (1 + rng.uniform(-0.02, 0.02, (n, 2)))
    return Cameras(R=R, C=C, f=f, c=c, size=size)


def world_to_camera(points: np.ndarray, cams: Cameras, min_depth: float = 1.0) -> np.ndarray:
    """points (n, T, J, 3) world -> camera frame. Windows that come closer than
    ``min_depth`` (subject walking into the camera) are pushed back along the optical axis."""
    x = np.einsum('nij,ntkj->ntki', cams.R, points - cams.C[:, None, None, :])
    zmin = x[..., 2].reshape(len(x), -1).min(axis=1)
    push = np.maximum(min_depth - zmin, 0.0)
    x[..., 2] += push[:, None, None]
    return x


def project(x_cam: np.ndarray, f: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Pinhole projection (n, ..., 3) camera frame -> (n, ..., 2) pixels (no distortion)."""
    shape = (len(f),) + (1,) * (x_cam.ndim - 2)
    z = np.maximum(x_cam[..., 2], 1e-6)
    u = f.reshape(shape) * x_cam[..., 0] / z + c[:, 0].reshape(shape)
    v = f.reshape(shape) * x_cam[..., 1] / z + c[:, 1].reshape(shape)
    return np.stack([u, v], -1)


def normalize(px: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Lifter input normalisation, per window: px (n, ..., 2), size (n, 2)."""
    shape = (len(size),) + (1,) * (px.ndim - 2)
    w = size[:, 0].reshape(shape)
    h = size[:, 1].reshape(shape)
    return np.stack([px[..., 0] / w * 2 - 1, px[..., 1] / w * 2 - h / w], -1)


# ----------------------------------------------------------------------------- noise

@dataclass
class NoiseLevel:
    """Ranges of the per-window detector noise parameters (each drawn uniformly)."""
    clean_prob: float = 0.15                 # fraction of windows left noise-free
    jitter: Tuple[float, float] = (0.002, 0.02)   # std, fraction of person height
    outlier: Tuple[float, float] = (0.0, 0.01)    # per joint-frame probability
    outlier_size: Tuple[float, float] = (0.05, 0.3)  # fraction of person height
    drop: Tuple[float, float] = (0.0, 0.03)       # per joint-frame probability
    swap: Tuple[float, float] = (0.0, 0.005)      # per frame probability of a leg swap
    temporal_jitter: float = 0.15                 # timing std, in frames


# A fixed, moderate setting for evaluation ("detector-like" column of the benchmark).
EVAL_NOISE = NoiseLevel(clean_prob=0.0, jitter=(0.01, 0.01), outlier=(0.005, 0.005),
                        outlier_size=(0.05, 0.3), drop=(0.01, 0.01), swap=(0.002, 0.002),
                        temporal_jitter=0.1)


def person_size(px: np.ndarray) -> np.ndarray:
    """Per-window person height in pixels (n,): median over frames of the 2D bbox diagonal
    / sqrt(2)-ish (max of height and width)."""
    ext = px.max(axis=-2) - px.min(axis=-2)       # (n, T, 2)
    return np.median(ext.max(axis=-1), axis=-1)


def detector_noise(px: np.ndarray, rng: np.random.Generator, level: NoiseLevel = NoiseLevel()
                   ) -> np.ndarray:
    """Detector-like corruption of pixel keypoints (n, T, 17, 2); returns a new array."""
    n, t, j, _ = px.shape
    out = px.copy()
    size = person_size(px)[:, None, None]                                   # (n,1,1)
    noisy = rng.random(n) >= level.clean_prob
    if not noisy.any():
        return out

    def per_window(rng_range):
        return rng.uniform(*rng_range, n)[:, None, None] * noisy[:, None, None]

    sigma = per_window(level.jitter) * size * JOINT_NOISE[None, None, :]    # (n,1,17)
    out += rng.normal(size=out.shape) * sigma[..., None]
    # Outliers: a large displacement in a random direction.
    p_out = per_window(level.outlier)
    mask = rng.random((n, t, j)) < p_out
    if mask.any():
        mag = rng.uniform(*level.outlier_size, mask.sum()) * np.broadcast_to(size, mask.shape)[mask]
        ang = rng.uniform(0, 2 * np.pi, mask.sum())
        out[mask] += np.stack([np.cos(ang), np.sin(ang)], -1) * mag[:, None]
    # Left/right leg swaps for single frames.
    p_swap = per_window(level.swap)[..., 0]
    swap = rng.random((n, t)) < p_swap
    if swap.any():
        legs = np.array([1, 2, 3, 4, 5, 6])
        out[swap[..., None] & np.isin(np.arange(j), legs)[None, None]] = \
            out[swap][:, [4, 5, 6, 1, 2, 3]].reshape(-1, 2)
    # Dropped joints: 70% held from the previous frame, 30% collapsed onto the parent.
    p_drop = per_window(level.drop)
    drop = rng.random((n, t, j)) < p_drop
    drop[:, 0] = False
    if drop.any():
        collapse = drop & (rng.random((n, t, j)) < 0.3)
        collapse[..., 0] = False
        hold = drop & ~collapse
        if collapse.any():
            parent_vals = out[:, :, PARENTS.clip(0), :]
            out[collapse] = parent_vals[collapse]
        if hold.any():
            idx = np.where(hold, 0, np.arange(t)[None, :, None])
            idx = np.maximum.accumulate(idx, axis=1)
            out = np.take_along_axis(out, idx[..., None], axis=1)
    return out
