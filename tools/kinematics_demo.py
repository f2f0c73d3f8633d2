#!/usr/bin/env python3
"""Joint angles from the bundled demo clip in one command (needs opensim; see README).

Usage: tools/kinematics_demo.py [VIDEO] [--out DIR] [--height M]

The documented commands, in order, on one camera without calibration:

  1. vp3d-offline VIDEO --out DIR/bag            MediaPipe 2D + lifted 3D -> bag
  2. (the bag's /cam01/keypoints_2d -> DIR/keypoints.npy, (T, 17, 3) pixels + confidence)
  3. vp3d-lift DIR/keypoints.npy --frame world   world skeletons (gravity from the subject,
                                                 floor at z = 0) -> DIR/<clip>_world.npy
  4. vp3d-kinematics DIR/<clip>_world.npy --fps F --out-dir DIR/angles
                                                 scaled OpenSim model, IK .mot, angles
                                                 CSV and PNG, summary

The plot is DIR/angles/<clip>_world_angles.png.
"""
import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout
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
    import cv2
    import numpy as np
    from vp3d_ros.io.records import read_landmark_tracks
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(args.video)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    stem = Path(args.video).stem
    bag = out / 'bag'
    if not bag.exists():
        _run(BIN / 'vp3d-offline', args.video, '--out', bag)
    tracks = [t for t in read_landmark_tracks(bag) if t.dims == 2]
    if not tracks:
        print(f'{bag}: no 2D keypoint track (nobody found?)', file=sys.stderr)
        return 2
    track = max(tracks, key=lambda t: int(np.isfinite(t.positions).all(-1).all(-1).sum()))
    kp = np.concatenate([track.positions, track.confidence[..., None]], axis=-1)
    np.save(out / 'keypoints.npy', kp)
    world = out / f'{stem}_world.npy'
    lift = [BIN / 'vp3d-lift', out / 'keypoints.npy', '--width', width, '--height', height,
            '--frame', 'world', '--fps', f'{fps:g}', '--out', world]
    kin = [BIN / 'vp3d-kinematics', world, '--fps', f'{fps:g}', '--out-dir', out / 'angles']
    if args.height:
        lift += ['--subject-height', args.height]
        kin += ['--height', args.height]
    _run(*lift)
    _run(*kin)
    print(f'plot: {out / "angles" / f"{stem}_world_angles.png"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
