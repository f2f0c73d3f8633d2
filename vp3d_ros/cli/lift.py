"""vp3d-lift: lift a .npy of pixel keypoints (T, 17, 2) to a .npy of 3D poses (T, 17, 3).

Usable with keypoints from any 2D detector; also how the lifter core is checked from
outside against upstream VideoPose3D.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def _widths(text: str):
    try:
        return [int(x) for x in text.replace(',', ' ').split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'filter widths must be integers, got {text!r}')


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='vp3d-lift', description=__doc__.splitlines()[0])
    p.add_argument('keypoints', help='input .npy, shape (T, 17, 2), pixels')
    p.add_argument('--checkpoint', default=None,
                   help='VideoPose3D checkpoint (.bin); default: the shipped default lifter')
    p.add_argument('--layout', choices=['coco', 'h36m'], default=None,
                   help='keypoint order of the input (default: from the checkpoint sidecar, '
                        'else h36m)')
    p.add_argument('--width', type=float, required=True, help='image width in pixels')
    p.add_argument('--height', type=float, required=True, help='image height in pixels')
    p.add_argument('--filter-widths', type=_widths, default=None,
                   help='e.g. "3,3,3,3,3" (default: inferred from the checkpoint)')
    p.add_argument('--channels', type=int, default=None,
                   help='default: inferred from the checkpoint')
    p.add_argument('--causal', action='store_true', default=None,
                   help='the checkpoint is causal (not stored in the file)')
    p.add_argument('--no-flip', action='store_true', help='disable test-time flip augmentation')
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', required=True, help='output .npy, shape (T, 17, 3), metres')
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..checkpoint import CheckpointError
    from ..lifter import SequenceLifter
    from ..lifter_config import resolve_lifter

    try:
        kp = np.load(args.keypoints, allow_pickle=False)
    except (OSError, ValueError) as e:
        print(f'vp3d-lift: cannot read {args.keypoints}: {e}', file=sys.stderr)
        return 2
    if kp.ndim != 3 or kp.shape[1:] != (17, 2):
        print(f'vp3d-lift: expected keypoints of shape (T, 17, 2), got {kp.shape}', file=sys.stderr)
        return 2
    if not np.all(np.isfinite(kp)):
        print('vp3d-lift: keypoints contain NaN or inf; fill or drop those frames first',
              file=sys.stderr)
        return 2
    try:
        ckpt, layout = resolve_lifter(args.checkpoint, args.filter_widths, args.channels,
                                      args.causal, args.layout)
    except CheckpointError as e:
        print(f'vp3d-lift: {e}', file=sys.stderr)
        return 2
    lifter = SequenceLifter(ckpt.build(args.device), input_layout=layout,
                            flip=not args.no_flip, device=args.device)
    poses = lifter.lift(kp, args.width, args.height)
    np.save(args.out, poses.astype(np.float32) if kp.dtype == np.float32 else poses)
    print(f'vp3d-lift: {len(poses)} frames, {ckpt.arch.describe()}, layout={layout}, '
          f'flip={not args.no_flip} -> {args.out}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
