"""Multi-view fusion: one metric world skeleton from every calibrated camera that sees it.

Per frame and joint (vectorised over both):

1. **Triangulation** (:func:`triangulate`): a linear least-squares (DLT) solve in
   undistorted normalised coordinates (``Camera.normalize_pixels``: lens distortion is
   removed first), each view's two rows weighted by its confidence and by ``f / depth``
   so that the algebraic residual approximates the pixel reprojection error (one
   re-weighting pass after a first solve).
2. **Outlier views** (:func:`robust_triangulate`): while the worst view's reprojection error
   exceeds ``threshold_px`` and at least three views are in use, drop the view whose removal
   leaves the smallest error (leave-one-out, as Pose2Sim's and Anipose's triangulation do by
   removing cameras) and solve again.
3. **Temporal stage**: offline (:func:`fuse_sequence`), joints seen by fewer than two cameras
   (or still inconsistent) are filled from the lifted skeletons where given (each camera's
   root-relative pose rotated into the world with its ``R``, scaled to the triangulated body,
   placed by the frame's triangulated joints, with the residual against the triangulation
   interpolated across the gap), else by interpolation over gaps up to ``max_gap_s``; then a
   zero-phase Butterworth low-pass (``scipy.signal.filtfilt``) per continuous run. Live
   (:class:`CausalFuser`): the same triangulation per frame, gaps held from the lifted pose or
   the last position (short gaps only), and a One-Euro filter (causal, low lag when moving).

Why our own code and not aniposelib / Pose2Sim: the maths is ~100 lines of numpy, both pull
heavy dependencies (aniposelib: numba, pandas, opencv-contrib-python next to our
opencv-python; Pose2Sim: its whole pipeline, GUI and ONNX stack), and neither is vectorised
over frames and joints for a live per-frame call.

Pure numpy (+ cv2 through ``normalize_pixels``, scipy for the offline filter); no ROS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np

from .calibration import Camera

ROOT = 0  # H36M-17 hip


@dataclass
class FusionConfig:
    """Knobs of :func:`fuse_sequence` and :class:`CausalFuser`. Rejection threshold and
    low-pass (15 px; 4th order, 6 Hz) are Pose2Sim's defaults; the One-Euro settings were
    tuned on held-out motion capture (benchmarks/fusion.py)."""
    threshold_px: float = 15.0   # reprojection error above which views are dropped
    max_error_px: float = 30.0   # a point still worse than this is treated as not seen
    min_views: int = 2
    max_gap_s: float = 0.5       # longest gap filled by interpolation alone (no lifted prior)
    cutoff_hz: float = 6.0       # zero-phase Butterworth low-pass (offline)
    order: int = 4
    # One-Euro filter (live): cutoff = min_cutoff + beta * |speed in m/s|
    min_cutoff_hz: float = 1.0
    beta: float = 5.0
    d_cutoff_hz: float = 1.0
    hold_s: float = 0.25         # live: how long a joint without views keeps its last position


@dataclass
class Triangulation:
    points: np.ndarray      # (..., J, 3) world metres, NaN where < min_views consistent views
    error_px: np.ndarray    # (..., J) mean reprojection error of the views used (NaN if none)
    used: np.ndarray        # (C, ..., J) bool: view used for the point
    seen: np.ndarray        # (C, ..., J) bool: view had the joint at all

    @property
    def views(self) -> np.ndarray:
        """(..., J) number of cameras used per joint."""
        return self.used.sum(0)


# ----------------------------------------------------------------------------- observations

def split_keypoints(kp: np.ndarray):
    """(..., 2) pixels or (..., 3) pixels + confidence -> (pixels, confidence); NaN pixels or
    confidence <= 0 become confidence 0 (not seen)."""
    kp = np.asarray(kp, dtype=np.float64)
    if kp.shape[-1] == 3:
        px, conf = kp[..., :2], np.clip(kp[..., 2], 0.0, 1.0)
    elif kp.shape[-1] == 2:
        px, conf = kp, np.ones(kp.shape[:-1])
    else:
        raise ValueError(f'keypoints end in 2 (pixels) or 3 (pixels, confidence), got {kp.shape}')
    ok = np.all(np.isfinite(px), -1) & np.isfinite(conf) & (conf > 0)
    return px, np.where(ok, conf, 0.0)


_UNDISTORT = (3, 30, 1e-10)   # cv2.TERM_CRITERIA_COUNT | EPS, as Camera.normalize_pixels


def normalized(cameras: Sequence[Camera], px: np.ndarray) -> np.ndarray:
    """(C, ..., 2) pixels -> (C, ..., 2) undistorted normalised image coordinates: what
    ``Camera.normalize_pixels`` gives per camera (the same OpenCV call on the same points),
    with one finiteness test and one output array for all cameras (the live path's
    per-frame cost)."""
    px = np.asarray(px, dtype=np.float64)
    C = len(cameras)
    flat = px.reshape(C, -1, 2)
    ok = np.isfinite(flat).all(-1)
    out = np.full(flat.shape, np.nan)
    for c, cam in enumerate(cameras):
        okc = ok[c]
        every = okc.all()
        pts = flat[c] if every else flat[c][okc]
        if not len(pts):
            continue
        if cam.dist.any():
            import cv2
            und = cv2.undistortPointsIter(pts.reshape(-1, 1, 2), cam.K, cam.dist, None, None,
                                          _UNDISTORT).reshape(-1, 2)
        else:
            und = (pts - cam.K[:2, 2]) / np.diag(cam.K)[:2]
        if every:
            out[c] = und
        else:
            out[c][okc] = und
    return out.reshape(px.shape)


_EXTRINSICS: Dict[tuple, tuple] = {}


def _stack_extrinsics(cameras: Sequence[Camera]):
    """(R (C,3,3), t (C,3), f (C,2)) of a camera list, cached: the live path asks for the same
    rig every frame (the cache holds the cameras, so their ids stay theirs)."""
    key = tuple(id(c) for c in cameras)
    hit = _EXTRINSICS.get(key)
    if hit is not None:
        return hit[0]
    R = np.stack([c.R for c in cameras])           # (C, 3, 3)
    t = np.stack([c.t for c in cameras])           # (C, 3)
    f = np.array([[c.K[0, 0], c.K[1, 1]] for c in cameras])  # (C, 2)
    if len(_EXTRINSICS) > 64:
        _EXTRINSICS.clear()
    _EXTRINSICS[key] = ((R, t, f), list(cameras))
    return R, t, f


def _rows(R, t, xn):
    """The DLT's rows per point, (N, 2C, 4) ``[a | b]`` for ``a . X = b``: (x r3 - r1) . X =
    t1 - x t3 and (y r3 - r2) . X = t2 - y t3 of each camera, i.e. ``x q3 - q1`` with
    ``q = [R | -t]``. Computed once per point set; both weighting passes reuse them."""
    Q = np.concatenate((R, -t[:, :, None]), -1)                # (C, 3, 4)
    xz = np.where(np.isfinite(xn), xn, 0.0).transpose(1, 0, 2)  # (N, C, 2)
    u = xz[..., None] * Q[None, :, 2:3, :] - Q[None, :, :2, :]  # (N, C, 2, 4)
    return u.reshape(len(u), -1, 4)


def _solve(u, w):
    """Weighted linear solve of rows u (N,2C,4) (:func:`_rows`) with row weights w (C,N,2)
    (>= 0) -> (N, 3) and a mask of well-posed solves. One batched product gives the normal
    matrix and the right-hand side: S = sum w^2 [a|b]^T [a|b], M = S[:3,:3], v = S[:3,3]."""
    w2 = (w * w).transpose(1, 0, 2).reshape(len(u), -1, 1)     # (N, 2C, 1)
    S = np.matmul((w2 * u).transpose(0, 2, 1), u)
    M, v = S[:, :3, :3], S[:, :3, 3]
    tr = M[:, 0, 0] + M[:, 1, 1] + M[:, 2, 2]
    det = np.linalg.det(M)
    # relative conditioning: two rays at an angle give a full-rank M
    ok = (tr > 0) & (det > 1e-9 * np.maximum(tr, 1e-300) ** 3)
    if ok.all():
        return np.linalg.solve(M, v[..., None])[..., 0], ok
    M, v = M.copy(), v.copy()
    M[~ok] = np.eye(3)
    v[~ok] = 0
    X = np.linalg.solve(M, v[..., None])[..., 0]
    X[~ok] = np.nan
    return X, ok


def _depths(R, t, X):
    """(C, N) depth of X (N, 3) in each camera."""
    return R[:, 2] @ X.T + t[:, 2, None]


def _errors_px(R, t, f, xn, X):
    """(C, N) reprojection error in (undistorted) pixels of X (N, 3) against xn (C, N, 2)."""
    Xc = np.matmul(X, R.transpose(0, 2, 1)) + t[:, None]
    front = Xc[..., 2] > 1e-6
    e = (Xc[..., :2] / np.where(front, Xc[..., 2], 1.0)[..., None] - xn) * f[:, None]
    return np.where(front, np.sqrt((e * e).sum(-1)), np.inf)


def _triangulate_flat(R, t, f, xn, conf, use, weighted=True, refine=True):
    """Core on flattened points: xn (C, N, 2), conf/use (C, N)."""
    u = _rows(R, t, xn)
    if weighted:
        w = np.sqrt(np.where(use, conf, 0.0))[..., None] * f[:, None]
    else:
        w = np.repeat(use[..., None].astype(np.float64), 2, -1)
    # first pass: depth-free algebraic weights, scaled by a nominal depth per camera
    X, ok = _solve(u, w)
    if refine and weighted:
        z = _depths(R, t, np.where(ok[:, None], X, 0))
        z = np.where(np.isfinite(z) & (z > 1e-3), z, 1.0)
        X2, ok2 = _solve(u, w / z[..., None])
        X = np.where(ok2[:, None], X2, X)
        ok = ok | ok2
    ok &= use.sum(0) >= 2
    if not ok.all():
        X[~ok] = np.nan
    return X


def triangulate(cameras: Sequence[Camera], px: np.ndarray, conf: Optional[np.ndarray] = None,
                weighted: bool = True, xn: Optional[np.ndarray] = None) -> np.ndarray:
    """(C, ..., 2) pixels (+ (C, ...) confidence; NaN / 0 = not seen) -> (..., 3) world.

    ``weighted=False`` is plain DLT: every seeing view counts alike, no depth re-weighting
    (the baseline of the benchmark). Points seen by fewer than two cameras are NaN."""
    px = np.asarray(px, dtype=np.float64)
    if conf is None:
        px, conf = split_keypoints(px)
    R, t, f = _stack_extrinsics(cameras)
    xn = normalized(cameras, px) if xn is None else xn
    shape = px.shape[1:-1]
    C = len(cameras)
    xn2 = xn.reshape(C, -1, 2)
    conf2 = np.asarray(conf, dtype=np.float64).reshape(C, -1)
    use = (conf2 > 0) & np.all(np.isfinite(xn2), -1)
    X = _triangulate_flat(R, t, f, xn2, conf2, use, weighted, refine=weighted)
    return X.reshape(shape + (3,))


def robust_triangulate(cameras: Sequence[Camera], px: np.ndarray,
                       conf: Optional[np.ndarray] = None, threshold_px: float = 15.0,
                       max_error_px: float = np.inf, min_views: int = 2,
                       weighted: bool = True, xn: Optional[np.ndarray] = None) -> Triangulation:
    """Confidence-weighted triangulation with outlier-view rejection (see the module doc).

    Points whose views still disagree by more than ``max_error_px`` after rejection, or that
    fewer than ``min_views`` cameras see, come back NaN. ``xn``: the pixels already through
    :func:`normalized` (the live path reuses them)."""
    px = np.asarray(px, dtype=np.float64)
    if conf is None:
        px, conf = split_keypoints(px)
    C = len(cameras)
    if px.shape[0] != C:
        raise ValueError(f'{C} cameras but keypoints for {px.shape[0]}')
    shape = px.shape[1:-1]
    R, t, f = _stack_extrinsics(cameras)
    xn = (normalized(cameras, px) if xn is None else xn).reshape(C, -1, 2)
    conf = np.asarray(conf, dtype=np.float64).reshape(C, -1)
    seen = (conf > 0) & np.all(np.isfinite(xn), -1)
    use = seen.copy()
    X = _triangulate_flat(R, t, f, xn, conf, use, weighted)
    err = np.where(use, _errors_px(R, t, f, xn, X), np.nan)
    for _ in range(max(0, C - min_views)):
        worst = np.where(use, err, -np.inf).max(0)   # no NaN where used
        bad = np.isfinite(X[:, 0]) & (worst > threshold_px) & (use.sum(0) > min_views)
        if not bad.any():
            break
        idx = np.flatnonzero(bad)
        sub_use, n_sub = use[:, idx], len(idx)
        # all leave-one-out candidates in one solve: (views, candidate * point)
        cand = np.repeat(sub_use[:, None, :], C, 1)
        cand[np.arange(C), np.arange(C)] = False
        cand = cand.reshape(C, C * n_sub)
        sub_xn = np.tile(xn[:, idx], (1, C, 1))
        Xc = _triangulate_flat(R, t, f, sub_xn, np.tile(conf[:, idx], (1, C)), cand, weighted)
        e = np.where(cand, _errors_px(R, t, f, sub_xn, Xc), -np.inf).max(0).reshape(C, n_sub)
        e = np.where(sub_use & np.isfinite(e), e, np.inf)
        best_c = np.argmin(e, 0)
        has = np.isfinite(e[best_c, np.arange(n_sub)])
        use[best_c[has], idx[has]] = False
        X[idx[has]] = _triangulate_flat(R, t, f, xn[:, idx[has]], conf[:, idx[has]],
                                        use[:, idx[has]], weighted)
        err[:, idx[has]] = np.where(use[:, idx[has]],
                                    _errors_px(R, t, f, xn[:, idx[has]], X[idx[has]]), np.nan)
    n = use.sum(0)
    mean_err = np.where(n > 0, np.where(use, err, 0).sum(0) / np.maximum(n, 1), np.nan)
    drop = (n < min_views) | ~np.isfinite(X[:, 0]) | (mean_err > max_error_px)
    if drop.any():
        X[drop] = np.nan
        use[:, drop] = False
        mean_err[drop] = np.nan
    return Triangulation(X.reshape(shape + (3,)), mean_err.reshape(shape),
                         use.reshape((C,) + shape), seen.reshape((C,) + shape))


# ----------------------------------------------------------------------------- lifted prior

def lifted_in_world(cameras: Sequence[Camera], lifted: Sequence[Optional[np.ndarray]]
                    ) -> Optional[np.ndarray]:
    """Each camera's root-relative camera-frame skeletons (T, J, 3) rotated into the world
    (``R^T p``) and averaged over the cameras that have them -> (T, J, 3) root-relative, world
    axes; None when no camera has any."""
    rotated = [np.asarray(p, dtype=np.float64) @ cam.R for cam, p in zip(cameras, lifted)
               if p is not None]
    if not rotated:
        return None
    stack = np.stack(rotated)
    stack = stack - stack[..., ROOT:ROOT + 1, :]
    if len(stack) == 1:
        return stack[0]
    ok = np.isfinite(stack)
    with np.errstate(invalid='ignore'):
        return np.where(ok, stack, 0).sum(0) / np.where(ok.any(0), ok.sum(0), np.nan)


def _prior_scale(points: np.ndarray, prior: np.ndarray) -> float:
    """Scale that brings the lifted (relative) skeleton to the triangulated body's size."""
    def mean(a):   # over joints, NaN-aware, quiet on frames with none
        ok = np.isfinite(a)
        return (np.where(ok, a, 0).sum(-2, keepdims=True)
                / np.maximum(ok.sum(-2, keepdims=True), 1))
    tri = points - mean(points)
    pri = prior - mean(np.where(np.isfinite(points), prior, np.nan))
    both = np.isfinite(tri) & np.isfinite(pri)
    num = np.where(both, tri * pri, 0).sum()
    den = np.where(both, pri * pri, 0).sum()
    return float(num / den) if den > 0 and num > 0 else 1.0


def place_on_rays(cameras: Sequence[Camera], px: np.ndarray, conf: np.ndarray,
                  relative: np.ndarray) -> np.ndarray:
    """The translation that puts a root-relative world-axes skeleton onto the rays of the
    2D keypoints: (C, N, J, 2) pixels, (C, N, J) confidence, (N, J, 3) skeleton -> (N, 3)
    (NaN with fewer than three observed joints). Linear least squares like the triangulation
    (``(x r3 - r1) . (P_j + T) = t1 - x t3``); one camera suffices, the skeleton's size
    giving the depth, so a person seen by a single camera is still placed."""
    R, t, f = _stack_extrinsics(cameras)
    xn = normalized(cameras, px)                                   # (C, N, J, 2)
    P = np.asarray(relative, dtype=np.float64)                     # (N, J, 3)
    use = (np.asarray(conf) > 0) & np.all(np.isfinite(xn), -1) & np.all(np.isfinite(P), -1)[None]
    xz = np.where(use[..., None], xn, 0.0)
    a = xz[..., None] * R[:, None, None, 2, None, :] - R[:, None, None, :2, :]  # (C,N,J,2,3)
    b = t[:, None, None, :2] - xz * t[:, None, None, 2, None] \
        - np.einsum('cnjri,nji->cnjr', a, np.nan_to_num(P))
    w = np.where(use, np.asarray(conf, dtype=np.float64), 0.0)[..., None] * f[:, None, None] ** 2
    M = np.einsum('cnjr,cnjri,cnjrk->nik', w, a, a)
    v = np.einsum('cnjr,cnjri,cnjr->ni', w, a, b)
    ok = use.sum((0, 2)) >= 3
    M[~ok] = np.eye(3)
    v[~ok] = 0
    T = np.linalg.solve(M, v[..., None])[..., 0]
    T[~ok] = np.nan
    return T


def _place_per_camera(R, t, f, xn, conf, relative):
    """:func:`place_on_rays` of one skeleton for each camera on its own, all at once: R
    (C,3,3), t (C,3), f (C,2), xn (C, J, 2) normalised, conf (C, J), relative (J, 3) ->
    (C, 3), NaN for a camera with fewer than three usable joints."""
    P = np.asarray(relative, dtype=np.float64)
    use = (conf > 0) & np.all(np.isfinite(xn), -1) & np.all(np.isfinite(P), -1)[None]
    xz = np.where(use[..., None], xn, 0.0)
    a = xz[..., None] * R[:, None, 2, None, :] - R[:, None, :2, :]           # (C, J, 2, 3)
    b = t[:, None, :2] - xz * t[:, None, 2, None] - (a * np.nan_to_num(P)[None, :, None]).sum(-1)
    u = np.concatenate((a, b[..., None]), -1).reshape(len(a), -1, 4)       # (C, 2J, 4)
    w = (np.where(use, conf, 0.0)[..., None] * f[:, None] ** 2).reshape(len(a), -1, 1)
    S = np.matmul((w * u).transpose(0, 2, 1), u)    # per camera: [M | v] = sum w [a|b]^T [a|b]
    M, v = S[:, :3, :3].copy(), S[:, :3, 3].copy()
    ok = use.sum(1) >= 3
    M[~ok] = np.eye(3)
    v[~ok] = 0
    T = np.linalg.solve(M, v[..., None])[..., 0]
    T[~ok] = np.nan
    return T


def place_by_cameras(cameras: Sequence[Camera], px: np.ndarray, conf: np.ndarray,
                     relative: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Offline placement of a skeleton sequence where it cannot be triangulated: each camera
    places it on its own rays (:func:`place_on_rays`, depth from the skeleton's size), that
    camera's offset from the triangulated placement (``known``, (T, 3), NaN where none) is
    interpolated over time and added, so a camera's depth bias is calibrated on the frames
    around the gap; cameras seeing a frame are averaged. -> (T, 3), NaN where none sees it."""
    T = len(relative)
    acc, cnt = np.zeros((T, 3)), np.zeros(T)
    for c in range(len(cameras)):
        rc = place_on_rays(cameras[c:c + 1], px[c:c + 1], conf[c:c + 1], relative)
        d = known - rc
        if not np.isfinite(d).all(-1).any():
            continue
        for k in range(3):
            d[:, k] = _hold_ends(_interp_series(d[:, k], None))
        v = rc + d
        ok = np.isfinite(v).all(-1)
        acc[ok] += v[ok]
        cnt[ok] += 1
    with np.errstate(invalid='ignore'):
        return np.where(cnt[:, None] > 0, acc / cnt[:, None], np.nan)


def _hold_ends(y: np.ndarray) -> np.ndarray:
    ok = np.isfinite(y)
    if ok.any() and not ok.all():
        idx = np.arange(len(y))
        y = np.where(ok, y, np.interp(idx, idx[ok], y[ok]))
    return y


def _interp_series(y: np.ndarray, max_gap: Optional[int], hold: bool = True) -> np.ndarray:
    """Linear interpolation of NaN runs of a 1D series not longer than ``max_gap`` (None: any
    length); a run at either end holds the nearest value (``hold``) or stays NaN; longer gaps
    stay NaN."""
    ok = np.isfinite(y)
    if ok.sum() < 2 or ok.all():
        return y
    idx = np.arange(len(y))
    out = y.copy()
    filled = np.interp(idx, idx[ok], y[ok])
    # run lengths of gaps
    gap = ~ok
    start = np.flatnonzero(gap & ~np.r_[False, gap[:-1]])
    end = np.flatnonzero(gap & ~np.r_[gap[1:], False])
    for s, e in zip(start, end):
        if max_gap is not None and e - s + 1 > max_gap:
            continue
        if not hold and (s == 0 or e == len(y) - 1):
            continue
        out[s:e + 1] = filled[s:e + 1]
    return out


def fill_gaps(points: np.ndarray, prior: Optional[np.ndarray] = None,
              max_gap: Optional[int] = None, place=None) -> np.ndarray:
    """Fill NaN joints of (T, J, 3) world points.

    With a prior (root-relative world-axes skeletons, (T, J, 3)): a missing joint becomes the
    prior, scaled to the body, placed by the frame's triangulated joints, plus the residual
    (triangulated - placed prior) of that joint interpolated across its gap, so a short gap
    follows the prior's motion and joins both ends without a jump. Frames without a single
    triangulated joint take the placement interpolated between the triangulated frames around
    them (over a second lost by three of four cameras: 35 mm on held-out motion capture,
    against 58 mm placing on the remaining camera's rays); at the ends of the sequence, where
    one side is missing, ``place(scaled prior, known translations) -> (T, 3)``
    (:func:`place_by_cameras`: the rays of the cameras that still see the person). Without a
    prior (or where it cannot be placed): linear interpolation over gaps up to ``max_gap``
    frames."""
    pts = np.array(points, dtype=np.float64)
    T, J, _ = pts.shape
    if prior is not None and np.isfinite(prior).any():
        prior = np.asarray(prior, dtype=np.float64) * _prior_scale(pts, prior)
        # translation per frame from the joints both have; frames with none: interpolated
        both = np.all(np.isfinite(pts), -1) & np.all(np.isfinite(prior), -1)
        with np.errstate(invalid='ignore'):
            trans = np.where(both.any(1)[:, None],
                             np.nansum(np.where(both[..., None], pts - prior, 0), 1)
                             / np.maximum(both.sum(1), 1)[:, None], np.nan)
        for k in range(3):   # across gaps: anchored on both sides (best, measured)
            trans[:, k] = _interp_series(trans[:, k], None, hold=False)
        if place is not None and np.isnan(trans).any():   # the ends: cameras' rays
            none = np.isnan(trans).any(1)
            trans[none] = place(prior, np.where(both.any(1)[:, None], trans, np.nan))[none]
        for k in range(3):
            trans[:, k] = _interp_series(trans[:, k], None)
        placed = prior + trans[:, None, :]
        resid = pts - placed
        for j in range(J):
            for k in range(3):
                r = _interp_series(resid[:, j, k], None)
                # ends of the sequence: hold the nearest known residual
                ok = np.isfinite(r)
                if ok.any() and not ok.all():
                    idx = np.arange(T)
                    r = np.where(ok, r, np.interp(idx, idx[ok], r[ok]))
                resid[:, j, k] = np.where(np.isfinite(r), r, 0.0)
        filled = placed + resid
        pts = np.where(np.isfinite(pts), pts, filled)
    if np.isnan(pts).any():
        for j in range(J):
            for k in range(3):
                pts[:, j, k] = _interp_series(pts[:, j, k], max_gap)
    return pts


# ----------------------------------------------------------------------------- temporal

def smooth_zero_phase(points: np.ndarray, fps: float, cutoff_hz: float = 6.0,
                      order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth low-pass of (T, ...) along time, per continuous finite run
    (runs too short for the filter are left as they are)."""
    from scipy.signal import butter, filtfilt
    x = np.array(points, dtype=np.float64)
    if fps <= 0 or cutoff_hz <= 0 or cutoff_hz >= fps / 2:
        return x
    b, a = butter(order, cutoff_hz / (fps / 2))
    flat = x.reshape(len(x), -1)
    need = 3 * max(len(a), len(b))
    for col in range(flat.shape[1]):
        y = flat[:, col]
        ok = np.isfinite(y)
        if not ok.any():
            continue
        edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))
        for s, e in zip(edges[::2], edges[1::2]):
            if e - s > need:
                y[s:e] = filtfilt(b, a, y[s:e])
    return flat.reshape(x.shape)


@dataclass
class FusedSequence:
    points: np.ndarray      # (T, J, 3) world metres after filling and smoothing; NaN: lost
    triangulated: np.ndarray  # (T, J, 3) before the temporal stage
    error_px: np.ndarray    # (T, J) mean reprojection error of the views used
    views: np.ndarray       # (T, J) cameras used
    filled: np.ndarray      # (T, J) bool: position from the prior / interpolation


def fuse_sequence(cameras: Sequence[Camera], keypoints: np.ndarray, fps: float,
                  lifted: Optional[Sequence[Optional[np.ndarray]]] = None,
                  config: FusionConfig = FusionConfig(), smooth: bool = True) -> FusedSequence:
    """Offline fusion of (C, T, J, 2|3) keypoints of time-aligned cameras (see module doc).
    ``lifted``: per camera None or (T, J, 3) root-relative camera-frame skeletons."""
    kp = np.asarray(keypoints, dtype=np.float64)
    px, conf = split_keypoints(kp)
    tri = robust_triangulate(cameras, px, conf, config.threshold_px, config.max_error_px,
                             config.min_views)
    prior = lifted_in_world(cameras, lifted) if lifted is not None else None
    max_gap = max(1, int(round(config.max_gap_s * fps))) if fps > 0 else None
    place = (lambda rel, known: place_by_cameras(cameras, px, conf, rel, known)) \
        if prior is not None else None
    pts = fill_gaps(tri.points, prior, max_gap, place)
    filled = ~np.all(np.isfinite(tri.points), -1) & np.all(np.isfinite(pts), -1)
    if smooth:
        pts = smooth_zero_phase(pts, fps, config.cutoff_hz, config.order)
    return FusedSequence(pts, tri.points, tri.error_px, tri.views, filled)


# ----------------------------------------------------------------------------- live

class OneEuro:
    """One-Euro filter (Casiez et al. 2012) over arrays: little lag when moving, strong
    smoothing when still. NaN inputs leave the state untouched and give NaN."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 5.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x = None
        self.dx = None
        self.t = None

    @staticmethod
    def _alpha(cutoff, dt):
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def reset(self):
        self.x = self.dx = self.t = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.x is None:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t
        if not dt > 0:
            return np.where(np.isfinite(x), self.x, np.nan)
        self.t = t
        seen = np.isfinite(x)
        fresh = seen & ~np.isfinite(self.x)  # reacquired: restart there
        dx = np.where(seen & ~fresh, (x - self.x) / dt, 0.0)
        ad = self._alpha(self.d_cutoff, dt)
        self.dx = np.where(seen, ad * dx + (1 - ad) * self.dx, self.dx)
        speed = np.linalg.norm(self.dx, axis=-1, keepdims=True) if x.ndim else np.abs(self.dx)
        a = self._alpha(self.min_cutoff + self.beta * speed, dt)
        out = np.where(fresh, x, a * x + (1 - a) * self.x)
        self.x = np.where(seen, out, self.x)
        self.dx = np.where(fresh, 0.0, self.dx)
        return np.where(seen, out, np.nan)


@dataclass
class FusedFrame:
    points: np.ndarray      # (J, 3) world metres; NaN: not recovered
    raw: np.ndarray         # (J, 3) triangulation of this instant
    error_px: np.ndarray    # (J,)
    views: np.ndarray       # (J,) cameras used
    filled: np.ndarray      # (J,) bool: from the lifted prior or held


class CausalFuser:
    """Frame-by-frame fusion of one person (live): triangulate, fill joints without two
    consistent views from the lifted skeleton (placed on the triangulated joints) or hold the
    last position up to ``hold_s``, then a One-Euro filter."""

    def __init__(self, cameras: Sequence[Camera], config: FusionConfig = FusionConfig()):
        self.cameras = list(cameras)
        self.config = config
        self.filter = OneEuro(config.min_cutoff_hz, config.beta, config.d_cutoff_hz)
        self.last = None        # (J, 3) last output
        self.last_t = None      # (J,) time each joint was last measured or filled
        self.resid = None       # (J, 3) last residual triangulation - placed prior
        self.scale = None       # lifted skeleton -> triangulated body size
        self.bias: Dict[int, np.ndarray] = {}   # camera -> its ray placement's offset

    def reset(self):
        self.filter.reset()
        self.last = self.last_t = self.resid = self.scale = None
        self.bias = {}

    def step(self, keypoints: np.ndarray, t: float,
             lifted: Optional[Dict[int, np.ndarray]] = None) -> FusedFrame:
        """keypoints (C, J, 2|3) of one instant (NaN rows for cameras without this frame),
        ``t`` seconds; ``lifted``: camera index -> (J, 3) root-relative camera-frame pose."""
        cfg = self.config
        px, conf = split_keypoints(keypoints)
        xn = normalized(self.cameras, px)
        tri = robust_triangulate(self.cameras, px, conf, cfg.threshold_px, cfg.max_error_px,
                                 cfg.min_views, xn=xn)
        X = tri.points.copy()
        J = X.shape[0]
        have = np.all(np.isfinite(X), -1)
        filled = np.zeros(J, bool)
        if lifted:   # scale and residuals learnt while seen, used when not
            prior = lifted_in_world([self.cameras[i] for i in lifted], list(lifted.values()))
            pok = np.all(np.isfinite(prior), -1)
            both = have & pok
            if both.sum() >= 4:     # the lifter's scale against the triangulated body, smoothed
                now = _prior_scale(X[None], prior[None])
                self.scale = now if self.scale is None else 0.9 * self.scale + 0.1 * now
            prior = prior * (self.scale or 1.0)
            seen = np.flatnonzero((conf > 0).sum(1) >= 3)
            rays = {}
            if len(seen):           # each camera's own placement on its rays, all at once
                Rs, ts, fs = _stack_extrinsics(self.cameras)
                placed = _place_per_camera(Rs[seen], ts[seen], fs[seen], xn[seen], conf[seen],
                                           prior)
                rays = {int(c): r for c, r in zip(seen, placed) if np.all(np.isfinite(r))}
            if both.any():
                trans = (X[both] - prior[both]).mean(0)
                for c, r in rays.items():   # that camera's depth bias, learnt while triangulated
                    b = trans - r
                    self.bias[c] = b if c not in self.bias else 0.8 * self.bias[c] + 0.2 * b
            elif rays:              # nothing triangulated: the rays of who still sees it
                trans = np.mean([r + self.bias.get(c, 0.0) for c, r in rays.items()], 0)
            else:
                trans = np.full(3, np.nan)
            if np.all(np.isfinite(trans)):
                placed = prior + trans
                if self.resid is None:
                    self.resid = np.zeros((J, 3))
                self.resid[both] = X[both] - placed[both]
                take = ~have & pok
                X[take] = placed[take] + self.resid[take]
                filled |= take
        if self.last_t is None:
            self.last_t = np.full(J, -np.inf)
        self.last_t = np.where(np.all(np.isfinite(X), -1), t, self.last_t)
        if self.last is not None:
            hold = ~np.all(np.isfinite(X), -1) & np.all(np.isfinite(self.last), -1) & \
                (t - self.last_t <= cfg.hold_s)
            X[hold] = self.last[hold]
            filled |= hold
        now = np.all(np.isfinite(X), -1)
        out = self.filter(X, t)
        self.last = np.where(now[:, None], out, np.nan)
        return FusedFrame(out, tri.points, tri.error_px, tri.views, filled)


def fuse_causal(cameras: Sequence[Camera], keypoints: np.ndarray, fps: float,
                lifted: Optional[Sequence[Optional[np.ndarray]]] = None,
                config: FusionConfig = FusionConfig()) -> np.ndarray:
    """The live fusion run over a whole (C, T, J, 2|3) sequence -> (T, J, 3)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    fuser = CausalFuser(cameras, config)
    out = np.full(kp.shape[1:3] + (3,), np.nan)
    for i in range(kp.shape[1]):
        lf = None
        if lifted is not None:
            lf = {c: p[i] for c, p in enumerate(lifted) if p is not None}
        out[i] = fuser.step(kp[:, i], i / fps, lf).points
    return out


# ----------------------------------------------------------------------------- persons

def associate(cameras: Sequence[Camera], people: Sequence[Dict[int, np.ndarray]],
              gate_px: float = 40.0) -> list:
    """Which detections of the cameras are the same person, at one instant.

    ``people[c]``: person id -> (J, 2|3) keypoints of camera ``c``. Every pair of detections
    in two cameras is triangulated from those two views; its mean reprojection error is the
    pair's cost. Pairs are merged cheapest first (at most one detection per camera in a
    person, cost under ``gate_px``). Returns a list of persons, each ``{camera index: person
    id}``, largest first; a detection no other camera confirms is a person of its own."""
    keys = [(c, pid) for c in range(len(cameras)) for pid in people[c]]
    if all(len(p) <= 1 for p in people):
        return [dict(keys)] if keys else []
    R, t, f = _stack_extrinsics(cameras)
    obs = {}
    for c, pid in keys:
        px, conf = split_keypoints(people[c][pid])
        obs[c, pid] = (cameras[c].normalize_pixels(px), conf)
    pairs = []
    for i, (ca, pa) in enumerate(keys):
        for cb, pb in keys[i + 1:]:
            if ca == cb:
                continue
            xa, wa = obs[ca, pa]
            xb, wb = obs[cb, pb]
            idx = [ca, cb]
            use = np.stack([wa > 0, wb > 0]) & np.all(np.isfinite(np.stack([xa, xb])), -1)
            if use.all(0).sum() < 3:
                continue
            xn = np.stack([xa, xb])
            X = _triangulate_flat(R[idx], t[idx], f[idx], xn, np.stack([wa, wb]), use)
            e = _errors_px(R[idx], t[idx], f[idx], xn, X)
            both = use.all(0) & np.isfinite(X[:, 0])
            if both.sum() < 3:
                continue
            cost = float(e[:, both].mean())
            if cost < gate_px:
                pairs.append((cost, (ca, pa), (cb, pb)))
    pairs.sort(key=lambda p: p[0])
    group = {k: {k[0]: k[1]} for k in keys}   # every detection starts as its own person
    for _, a, b in pairs:
        ga, gb = group[a], group[b]
        if ga is gb or set(ga) & set(gb):
            continue
        ga.update(gb)
        for c, pid in gb.items():
            group[c, pid] = ga
    out, seen = [], set()
    for g in group.values():
        if id(g) not in seen:
            seen.add(id(g))
            out.append(g)
    return sorted(out, key=len, reverse=True)
