#!/usr/bin/env python3
"""Joint angles from the bundled demo clip in one command (needs opensim; see README).

Usage: tools/kinematics_demo.py [VIDEO] [--out DIR] [--height M]

The two documented commands, on one camera without calibration:

  1. vp3d-offline VIDEO --estimate-ground --out DIR/<clip>_landmarks
         MediaPipe 2D, lifted 3D, and world skeletons in a ground frame the subject tells
         (gravity from the body, floor at z = 0) -> bag
  2. vp3d-kinematics DIR/<clip>_landmarks --out-dir DIR/angles
         the bag's /<cam>/skeleton_3d/world track -> scaled OpenSim model, IK .mot,
         angles CSV and PNG, summary

The plot is DIR/angles/<clip>_landmarks_angles.png.
"""
import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*cmd):
    print('$', ' '.join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('video', nargs='?', default=str(ROOT / 'vp3d_ros' / 'data' /
                                                    'balancing_cam01.mp4'))
    ap.add_argument('--out', default='demo_output/kinematics')
    ap.add_argument('--height', type=float, default=None, help='subject height (m), if known')
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bag = out / f'{Path(args.video).stem}_landmarks'
    offline = [BIN / 'vp3d-offline', args.video, '--estimate-ground', '--out', bag]
    kin = [BIN / 'vp3d-kinematics', bag, '--out-dir', out / 'angles']
    if args.height:
        offline += ['--subject-height', args.height]
        kin += ['--height', args.height]
    if not bag.exists():
        _run(*offline)
    _run(*kin)
    print(f'plot: {out / "angles" / f"{bag.name}_angles.png"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
