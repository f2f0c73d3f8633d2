"""vp3d-fuse: fuse 2D keypoints of several calibrated cameras into one world skeleton track.

    vp3d-fuse --calibration CALIB.toml --keypoints NAME=KP.npy [NAME=KP.npy ...] [--fps F]
              --out OUT.npy

Each KP.npy is (T, 17, 2) pixels or (T, 17, 3) with a confidence in [0, 1] last (NaN or
confidence 0 = not seen), H36M-17 order, frames aligned across cameras; NAME is the camera's
name in the calibration (``cam01`` matches ``cam_01``). Writes (T, 17, 3) absolute positions
in the calibration's world frame, metres; NaN where a joint could not be recovered at all
(fewer than two consistent views and no lifted pose or neighbouring frames to fill from).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ..geometry.fusion import FusionConfig

PROG = 'vp3d-fuse'


def _pair(text: str):
    name, sep, path = text.partition('=')
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f'expected NAME=FILE.npy, got {text!r}')
    return name, path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument('--calibration', required=True,
                   help='calibration file (Pose2Sim/Anipose TOML, JSON, YAML, OpenCV)')
    p.add_argument('--keypoints', type=_pair, nargs='+', required=True, metavar='NAME=KP.npy',
                   help='per camera: (T, 17, 2) pixels or (T, 17, 3) pixels + confidence')
    p.add_argument('--lifted', type=_pair, nargs='+', default=[], metavar='NAME=POSES.npy',
                   help='optional per camera: (T, 17, 3) lifted skeletons (camera frame, '
                        'root-relative, metres, e.g. from vp3d-lift), used where fewer than '
                        'two cameras see a joint')
    p.add_argument('--fps', type=float, default=30.0,
                   help='frame rate of the keypoints (temporal filter and gap limit; '
                        'default 30)')
    p.add_argument('--threshold-px', type=float, default=FusionConfig.threshold_px,
                   help='reprojection error above which a view is dropped (default %(default)s)')
    p.add_argument('--no-smooth', action='store_true',
                   help='no temporal low-pass (gaps are still filled)')
    p.add_argument('--causal', action='store_true',
                   help='the live (causal) filter instead of the zero-phase one')
    p.add_argument('--out', required=True, help='output .npy, (T, 17, 3) world metres')
    return p


class _Refused(Exception):
    pass


def _load(path: str, what: str, last: tuple) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise _Refused(f'cannot read {what} {path}: {e}')
    if a.ndim != 3 or a.shape[1] != 17 or a.shape[2] not in last:
        want = ' or '.join(f'(T, 17, {d})' for d in last)
        raise _Refused(f'{what} {path}: expected shape {want}, got {a.shape}')
    return a.astype(np.float64)


def run(args) -> np.ndarray:
    from ..geometry import fusion as F
    from ..geometry.calibration import CalibrationError, find_camera, load_calibration
    try:
        rig = load_calibration(args.calibration)
    except CalibrationError as e:
        raise _Refused(str(e))
    if not (args.fps > 0 and np.isfinite(args.fps)):
        raise _Refused(f'--fps must be positive, got {args.fps}')
    names = [n for n, _ in args.keypoints]
    cams, kps = [], []
    for name, path in args.keypoints:
        try:
            cam = find_camera(rig, name)
        except CalibrationError as e:
            raise _Refused(str(e))
        if any(c is cam for c in cams):
            raise _Refused(f'camera {cam.name!r} is given twice')
        cams.append(cam)
        kps.append(_load(path, f'keypoints of {name}', (2, 3)))
    if len(cams) < 2:
        raise _Refused(f'fusion needs at least two cameras, got {len(cams)}')
    lengths = {n: len(k) for n, k in zip(names, kps)}
    if len(set(lengths.values())) != 1:
        raise _Refused('keypoint files differ in length (frames must be aligned across '
                       'cameras): ' + ', '.join(f'{n}: {t}' for n, t in lengths.items()))
    kp = np.stack([np.concatenate([k, np.ones(k.shape[:2] + (1,))], -1) if k.shape[2] == 2
                   else k for k in kps])
    conf = kp[..., 2]
    if np.any(np.isfinite(conf) & ((conf < 0) | (conf > 1))):
        raise _Refused('confidences (last column) must lie in [0, 1]')
    lifted = None
    if args.lifted:
        lifted = [None] * len(cams)
        for name, path in args.lifted:
            try:
                cam = find_camera(rig, name)
            except CalibrationError as e:
                raise _Refused(str(e))
            idx = [i for i, c in enumerate(cams) if c is cam]
            if not idx:
                raise _Refused(f'--lifted {name}: no --keypoints for that camera')
            poses = _load(path, f'lifted poses of {name}', (3,))
            if len(poses) != kp.shape[1]:
                raise _Refused(f'lifted poses of {name} have {len(poses)} frames, keypoints '
                               f'{kp.shape[1]}')
            lifted[idx[0]] = poses
    if args.causal:
        return F.fuse_causal(cams, kp, args.fps, lifted,
                             F.FusionConfig(threshold_px=args.threshold_px))
    fused = F.fuse_sequence(cams, kp, args.fps, lifted,
                            F.FusionConfig(threshold_px=args.threshold_px),
                            smooth=not args.no_smooth)
    return fused.points


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        points = run(args)
    except _Refused as e:
        print(f'{PROG}: {e}', file=sys.stderr)
        return 2
    np.save(args.out, points)
    lost = ~np.all(np.isfinite(points), -1)
    print(f'{PROG}: {len(points)} frames, {len(args.keypoints)} cameras, '
          f'{100 * (1 - lost.mean()):.1f}% of joints recovered -> {args.out}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
