"""vp3d-export: LandmarkRecord bag -> CSV / OpenSim TRC / npz, one file per camera and person.

3D skeleton topics by default; --include-2d adds the 2D keypoint topics (CSV with pixels in
x_m/y_m and npz; no TRC). Files are named <topic>_p<person>.<ext>, e.g.
cam01_skeleton_3d_p0.trc. Exit code 2 on bad input (no bag, no keypoint topics).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='vp3d-export', description=__doc__.splitlines()[0])
    p.add_argument('bag', help='bag directory (or split set / .mcap / .db3 file)')
    p.add_argument('--out-dir', required=True, help='directory for the exported files')
    p.add_argument('--csv', action='store_true', help='write CSV (default: all formats)')
    p.add_argument('--trc', action='store_true', help='write OpenSim TRC (3D tracks only)')
    p.add_argument('--npz', action='store_true', help='write numpy .npz')
    p.add_argument('--topics', nargs='+', default=None,
                   help='only these PointCloud2 topics (default: all keypoint topics)')
    p.add_argument('--include-2d', action='store_true',
                   help='also export 2D keypoint tracks (pixels)')
    return p


def _fail(msg: str) -> int:
    print(f'vp3d-export: {msg}', file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..bag_io import BagError
    from ..records import read_landmark_tracks, write_csv, write_npz, write_trc

    formats = [f for f in ('csv', 'trc', 'npz') if getattr(args, f)] or ['csv', 'trc', 'npz']
    if not Path(args.bag).exists():
        return _fail(f'no bag at {args.bag}')
    try:
        tracks = read_landmark_tracks(args.bag, args.topics)
    except (BagError, ValueError) as e:
        return _fail(str(e))
    chosen = [t for t in tracks if t.dims == 3 or args.include_2d]
    if not chosen:
        found = sorted({t.topic for t in tracks})
        hint = f' (2D topics {found}: pass --include-2d)' if found else ''
        return _fail(f'no keypoint topics to export in {args.bag}{hint}')
    out = Path(args.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for tr in chosen:
            if 'csv' in formats:
                print(write_csv(tr, out / f'{tr.name}.csv', allow_2d=True))
            if 'trc' in formats and tr.dims == 3:
                print(write_trc(tr, out / f'{tr.name}.trc'))
            if 'npz' in formats:
                print(write_npz([tr], out / f'{tr.name}.npz'))
    except OSError as e:
        return _fail(f'cannot write to {out}: {e}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
