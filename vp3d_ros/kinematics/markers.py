"""Marker trajectories for OpenSim: TRC in and out, axis conventions, the standing period.

Pure numpy. A :class:`Markers` holds what the IK needs: times (s), marker names (our TRC
names: :func:`vp3d_ros.io.records.trc_marker_name` of the H36M joints) and positions in metres,
OpenSim axes (Y up), NaN where a marker is missing.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..geometry.bones import flexion_deg
from ..io.records import trc_marker_name
from ..core.skeletons import H36M17

H36M_MARKERS = tuple(trc_marker_name(j) for j in H36M17.joints)
UNITS = {'m': 1.0, 'mm': 1e-3, 'cm': 1e-2}
PELVIS = ('Hip', 'RHip', 'LHip')   # place and turn the model
MIN_MARKERS = 6                    # in a frame IK poses (:func:`solvable_frames`)
# REP-103 (x forward, y left, z up) -> OpenSim (X forward, Y up, Z right): a rotation
ZUP_TO_YUP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


class Markers(NamedTuple):
    times: np.ndarray        # (T,) seconds
    names: Tuple[str, ...]   # (M,)
    xyz: np.ndarray          # (T, M, 3) metres, Y up; NaN = missing

    @property
    def rate(self) -> float:
        d = np.diff(self.times)
        d = d[d > 0]
        return float(1.0 / np.median(d)) if len(d) else 0.0

    def subset(self, names: Sequence[str]) -> 'Markers':
        idx = [self.names.index(n) for n in names]
        return Markers(self.times, tuple(names), self.xyz[:, idx])


def zup_to_yup(xyz: np.ndarray) -> np.ndarray:
    """Points in a z-up (REP-103) frame -> the same points with OpenSim's Y up."""
    return np.asarray(xyz, dtype=np.float64) @ ZUP_TO_YUP.T


def read_trc(path) -> Markers:
    """An OpenSim TRC (PathFileType 4): header line 3 gives the units; blank cells = missing."""
    lines = Path(path).read_text().splitlines()
    if len(lines) < 5:
        raise ValueError(f'{path}: not a TRC file (fewer than 5 lines)')
    keys, vals = lines[1].split('\t'), lines[2].split('\t')
    header = dict(zip([k.strip() for k in keys], [v.strip() for v in vals]))
    units = header.get('Units', 'm')
    if units not in UNITS:
        raise ValueError(f'{path}: unknown TRC units {units!r} (m, cm or mm)')
    cells = lines[3].split('\t')
    names = tuple(c.strip() for c in cells[2:] if c.strip())
    rows = []
    for line in lines[5:]:
        if not line.strip():
            continue
        parts = line.split('\t')
        vals = [float(p) if p.strip() else np.nan for p in parts[1:2 + 3 * len(names)]]
        vals += [np.nan] * (1 + 3 * len(names) - len(vals))
        rows.append(vals)
    if not rows:
        raise ValueError(f'{path}: TRC file has no frames')
    data = np.asarray(rows, dtype=np.float64)
    xyz = data[:, 1:].reshape(len(data), len(names), 3) * UNITS[units]
    return Markers(data[:, 0], names, xyz)


def write_trc(markers: Markers, path) -> Path:
    """OpenSim TRC in metres; missing markers as NaN cells. Not blank: OpenSim's TRC reader
    drops trailing empty cells, so a frame whose last marker (RWrist) is missing was refused
    ("Unexpected number of columns ... Expected = 53. Received = 52")."""
    path = Path(path)
    rate = markers.rate or 1.0
    n, m = len(markers.times), len(markers.names)
    lines = [f'PathFileType\t4\t(X/Y/Z)\t{path.name}',
             'DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\t'
             'OrigDataStartFrame\tOrigNumFrames',
             f'{rate:.6g}\t{rate:.6g}\t{n}\t{m}\tm\t{rate:.6g}\t1\t{n}',
             'Frame#\tTime\t' + '\t\t\t'.join(markers.names) + '\t\t',
             '\t\t' + '\t'.join(f'X{i}\tY{i}\tZ{i}' for i in range(1, m + 1)), '']
    for t in range(n):
        cells = [str(t + 1), f'{markers.times[t]:.6f}']
        for p in markers.xyz[t]:
            cells += [f'{v:.6f}' for v in p] if np.all(np.isfinite(p)) else ['NaN'] * 3
        lines.append('\t'.join(cells))
    path.write_text('\n'.join(lines) + '\n')
    return path


STILL_M_S = 0.15   # mean marker speed of a standing window (S8 standing: 0.01-0.05 m/s)


def neutral_frames(markers: Markers) -> np.ndarray:
    """(T,) bool: standing in the anatomical posture the generic model is built in: trunk
    within 20 degrees of vertical, knees nearly straight (hip-ankle distance over 90% of
    thigh + shank) and both upper arms hanging (elbow below the shoulder by over 60% of the
    upper arm's length).

    Why it matters: Human3.6M's shoulder joints rise with the arms (the shoulder girdle), the
    model's are fixed in the torso. Scaled and placed in S8's opening T-pose, the trunk came
    out 8% longer (factor 0.919 against 0.849 from arms hanging) and IK on walking_1 left
    2.29 cm RMS marker error against 1.52 cm."""
    n, x = markers.names, markers.xyz

    def p(name):
        return x[:, n.index(name)]
    with np.errstate(invalid='ignore'):
        trunk = p('Thorax') - p('Hip')
        upright = trunk[:, 1] > np.cos(np.radians(20)) * np.linalg.norm(trunk, axis=-1)
        ok = upright
        for s in 'RL':
            hip, knee, foot = p(f'{s}Hip'), p(f'{s}Knee'), p(f'{s}Foot')
            legs = (np.linalg.norm(hip - foot, axis=-1) > 0.9 * (
                np.linalg.norm(hip - knee, axis=-1) + np.linalg.norm(knee - foot, axis=-1)))
            sh, el = p(f'{s}Shoulder'), p(f'{s}Elbow')
            arm = (sh[:, 1] - el[:, 1]) > 0.6 * np.linalg.norm(sh - el, axis=-1)
            ok = ok & legs & arm
    return ok


def static_window(markers: Markers, search_s: float = 3.0,
                  window_s: float = 0.5) -> Tuple[int, int]:
    """Frames [a, b) of the stillest ``window_s`` in the first ``search_s`` seconds.

    Stillness: the mean marker speed over the window. A frame qualifies when it has the
    three pelvis markers and misses at most two others (a limb marker dropped by
    :func:`drop_implausible` is no reason to give up the standing start). Windows in the
    neutral standing posture (:func:`neutral_frames`, in 80% of their frames) and still (mean
    marker speed of the track smoothed over 0.1 s under ``STILL_M_S``) come first: in the
    first ``search_s`` seconds, else anywhere in the track (Human3.6M takes open with a
    T-pose), else the stillest window of the first ``search_s`` seconds whatever the
    posture.
    Scaling and marker placement average over this window (see :func:`window_speed` for how
    still it was). At least two frames (OpenSim averages over a time range).
    """
    t = markers.times
    rate = markers.rate or 1.0
    w = min(len(t), max(2, int(round(window_s * rate))))
    end = int(np.searchsorted(t, t[0] + search_s, side='right'))
    end = max(end, w)
    present = np.all(np.isfinite(markers.xyz), axis=-1)               # (T, M)
    pelvis = [markers.names.index(n) for n in PELVIS if n in markers.names]
    ok = present[:, pelvis].all(axis=1) & (present.sum(axis=1) >= len(markers.names) - 2)
    speed = np.full(len(t), np.inf)
    if len(t) > 1:
        # speed of the track smoothed over ~0.1 s: frame-to-frame jitter (2 cm of noise is
        # 1.4 m/s at 50 fps) must not hide a standing subject
        sm = _smooth(markers.xyz, 0.1 * rate)
        d = np.linalg.norm(np.diff(sm, axis=0), axis=-1)    # (T-1, M), NaN if missing
        with np.errstate(invalid='ignore'), warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)   # frames with no marker: NaN
            v = np.nanmean(np.where(np.isfinite(d), d, np.nan), axis=-1) * rate
        speed[1:] = np.where(np.isfinite(v), v, np.inf)
        speed[0] = speed[1]
    neutral = neutral_frames(markers)

    def stillest(usable, stop, max_speed=np.inf, posture=None):
        best, best_cost = None, max_speed
        for a in range(0, max(1, stop - w + 1)):
            b = a + w
            if b > len(t) or not usable[a:b].all():
                continue
            if posture is not None and posture[a:b].mean() < 0.8:   # noise tips a few frames
                continue
            cost = float(speed[a:b].mean())
            if cost < best_cost:
                best, best_cost = (a, b), cost
        return best

    best = (stillest(ok, end, STILL_M_S, neutral) or stillest(ok, len(t), STILL_M_S, neutral)
            or stillest(ok, end))
    if best is None:  # no usable window at the start: the first usable frames anywhere
        idx = np.flatnonzero(ok)
        if not len(idx):
            raise ValueError('no frame has the pelvis markers and all but two others: '
                             'cannot scale the model')
        a = int(idx[0])
        return a, min(len(t), a + 2) if len(t) > 1 else a + 1
    return best


def _smooth(xyz: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian low-pass along time (edges padded with the end values; NaN stays NaN)."""
    if sigma_frames < 0.5 or len(xyz) < 3:
        return xyz
    r = int(np.ceil(3 * sigma_frames))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_frames) ** 2)
    k /= k.sum()
    pad = np.concatenate([np.repeat(xyz[:1], r, 0), xyz, np.repeat(xyz[-1:], r, 0)])
    out = np.zeros_like(xyz)
    for i, w in enumerate(k):
        out += w * pad[i:i + len(xyz)]
    return out


def window_speed(markers: Markers, a: int, b: int) -> float:
    """Mean marker speed (m/s) over frames [a, b)."""
    if b - a < 2:
        return 0.0
    d = np.linalg.norm(np.diff(markers.xyz[a:b], axis=0), axis=-1)
    return float(np.nanmean(d) * (markers.rate or 1.0))


def heading_deg(markers: Markers) -> float:
    """Mean heading of the subject about the vertical (Y), degrees: 0 when it faces +X.

    Facing = up x (RHip - LHip) (OpenSim: X forward, Y up, Z right), circular mean over
    the frames that have both hips."""
    n = markers.names
    right = markers.xyz[:, n.index('RHip')] - markers.xyz[:, n.index('LHip')]
    ok = np.all(np.isfinite(right), axis=-1)
    if not ok.any():
        return 0.0
    ang = np.arctan2(-right[ok, 0], right[ok, 2])   # right along +Z when facing +X
    return float(np.degrees(np.arctan2(np.sin(ang).mean(), np.cos(ang).mean())))


def rotate_about_vertical(markers: Markers, degrees: float) -> Markers:
    """The markers turned by ``degrees`` about Y (positive: +X towards -Z, right-handed)."""
    a = np.radians(degrees)
    r = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    return markers._replace(xyz=markers.xyz @ r.T)


def solvable_frames(markers: Markers, min_markers: int = MIN_MARKERS) -> np.ndarray:
    """(T,) bool: frames IK can pose: the three pelvis markers (they place and turn the
    model) and at least ``min_markers`` markers in all. A frame without them (the subject
    not yet in view, a tracker that lost the person) is left unsolved, NaN in the outputs:
    OpenSim's assembler stops the whole run on a frame with no marker."""
    present = np.all(np.isfinite(markers.xyz), axis=-1)
    pelvis = [markers.names.index(n) for n in PELVIS if n in markers.names]
    return (present[:, pelvis].all(axis=1) & (len(pelvis) == len(PELVIS))
            & (present.sum(axis=1) >= min_markers))


AXES = {'+X': (1, 0, 0), '-X': (-1, 0, 0), '+Y': (0, 1, 0), '-Y': (0, -1, 0),
        '+Z': (0, 0, 1), '-Z': (0, 0, -1)}


def standing_axes(markers: Markers, within_deg: float = 30.0) -> dict:
    """{axis: fraction of frames whose feet-to-head direction lies within ``within_deg`` of
    it} over the frames that show the feet and the head, neck or thorax. A Y-up recording
    of anyone on their feet is mostly '+Y'; a Z-up one (Vicon, Qualisys, REP-103 exports)
    mostly '+Z'."""
    n = markers.names
    top = [n.index(j) for j in ('Head', 'Neck_Nose', 'Thorax') if j in n]
    feet = [n.index(j) for j in ('RFoot', 'LFoot') if j in n]
    if not top or not feet:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)      # frames without any: NaN
        up = (np.nanmean(markers.xyz[:, top], axis=1)
              - np.nanmean(markers.xyz[:, feet], axis=1))
    up = up[np.all(np.isfinite(up), axis=-1)]
    norm = np.linalg.norm(up, axis=-1)
    up = up[norm > 0] / norm[norm > 0, None]
    if not len(up):
        return {}
    c = np.cos(np.radians(within_deg))
    return {a: float(np.mean(up @ np.array(v, float) > c)) for a, v in AXES.items()}


def check_y_up(markers: Markers, source: str, hints: Optional[dict] = None) -> None:
    """Refuse a track whose subject stands along another axis than +Y for most of it and
    never along +Y: IK would fit a model lying on its back (pelvis tilt -90 degrees, the
    standing window never found) without any error to show for it. ``hints``: {axis: what
    to do about it}, said with the error."""
    share = standing_axes(markers)
    if not share or share['+Y'] > 0.05:
        return
    axis = max(share, key=share.get)
    if share[axis] > 0.5:
        hint = (hints or {}).get(axis)
        raise ValueError(f'{source}: the subject stands along {axis} in '
                         f'{100 * share[axis]:.0f}% of the frames and never along +Y: '
                         f'OpenSim input is Y up' + (f' ({hint})' if hint else ''))


def bend_deg(markers: Markers, a: str, b: str, c: str) -> np.ndarray:
    """(T,) flexion at ``b`` in degrees: 0 when a-b-c is straight, 180 folded; NaN where a
    marker is missing (elbow: shoulder, elbow, wrist; knee: hip, knee, ankle)."""
    n = markers.names
    return flexion_deg(markers.xyz, n.index(a), n.index(b), n.index(c))


# (parent, child) joint centres a rigid segment joins: the child is the one dropped
LIMB_BONES = (('RHip', 'RKnee'), ('RKnee', 'RFoot'), ('LHip', 'LKnee'), ('LKnee', 'LFoot'),
              ('RShoulder', 'RElbow'), ('RElbow', 'RWrist'),
              ('LShoulder', 'LElbow'), ('LElbow', 'LWrist'))


LEGS = (('RHip', 'RKnee', 'RFoot'), ('LHip', 'LKnee', 'LFoot'))
LEG_PERCENTILE = 80.0    # a leg's own length: this percentile of thigh and of shin over the track
LEG_SHORTFALL = 0.9      # a leg shorter than this share of it has its knee bent back


def bend_short_legs(markers: Markers, percentile: float = LEG_PERCENTILE,
                    shortfall: float = LEG_SHORTFALL):
    """(markers, {knee marker: frames bent}): where a leg (thigh + shin) is shorter than
    ``shortfall`` of its own length (each bone's ``percentile`` over the track), the knee is
    moved until thigh and shin take that length, hip and ankle staying where they are, in
    the plane the three markers span.

    One camera cannot tell whether a foreshortened shin folds towards the camera or away,
    and a lifter trained for small joint errors then gives the average of the two folds: a
    straighter knee on shortened bones (13-23% short in deep crouches). Hip and ankle are
    better seen; the leg's true length puts the knee back on the bend they imply. Through
    OpenSim IK (``benchmarks/kinematics.py``, shipped lifter, one camera): S8 knee flexion
    RMSE 5.1-11.5 -> 4.4-9.8 deg, CMU 9.2-17.1 -> 9.2-14.8 deg, hip within 0.5 deg. A leg of
    constant length (motion capture, a rigid model) is left as it is."""
    xyz = markers.xyz.copy()
    bent = {}
    n = markers.names
    for hip, knee, ankle in LEGS:
        if not {hip, knee, ankle} <= set(n):
            continue
        h, k, a = (xyz[:, n.index(m)] for m in (hip, knee, ankle))
        thigh = np.linalg.norm(k - h, axis=-1)
        shin = np.linalg.norm(a - k, axis=-1)
        if not (np.isfinite(thigh).any() and np.isfinite(shin).any()):
            continue
        l1, l2 = np.nanpercentile(thigh, percentile), np.nanpercentile(shin, percentile)
        span = a - h
        d = np.linalg.norm(span, axis=-1)
        with np.errstate(invalid='ignore', divide='ignore'):
            along = span / d[:, None]
            x = (d ** 2 + l1 ** 2 - l2 ** 2) / (2 * d)      # the new knee, along hip -> ankle
            out = (k - h) - ((k - h) * along).sum(-1, keepdims=True) * along
            out = out / np.linalg.norm(out, axis=-1, keepdims=True)   # towards the old knee
            across = np.sqrt(np.clip(l1 ** 2 - x ** 2, 0, None))   # and away from that line
            new = h + x[:, None] * along + across[:, None] * out
            fix = ((thigh + shin < shortfall * (l1 + l2)) & (d < l1 + l2) & (d > abs(l1 - l2))
                   & np.isfinite(new).all(-1))
        if fix.any():
            xyz[fix, n.index(knee)] = new[fix]
            bent[knee] = int(fix.sum())
    return markers._replace(xyz=xyz), bent


def drop_implausible(markers: Markers, tolerance: float = 0.35):
    """(markers, {marker: frames dropped}): a limb marker whose segment is more than
    ``tolerance`` (fraction) longer or shorter than that segment's median length over the
    track is set missing in that frame.

    A model's segments are rigid; a monocular lifter's are not (the demo clip's right forearm
    measures 8 to 29 cm as the hand swings towards the camera). IK would bend the model to
    reach such a point (elbow pinned at its 150 degree stop); without it the joint is left to
    the other markers and the previous pose."""
    xyz = markers.xyz.copy()
    dropped = {}
    n = markers.names
    for a, b in LIMB_BONES:
        if a not in n or b not in n:
            continue
        length = np.linalg.norm(xyz[:, n.index(b)] - xyz[:, n.index(a)], axis=-1)
        med = np.nanmedian(length) if np.isfinite(length).any() else np.nan
        if not np.isfinite(med) or med <= 0:
            continue
        bad = np.abs(length / med - 1.0) > tolerance
        if bad.any():
            xyz[bad, n.index(b)] = np.nan
            dropped[b] = dropped.get(b, 0) + int(bad.sum())
    return markers._replace(xyz=xyz), dropped
