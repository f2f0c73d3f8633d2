"""One camera's depth folds on held-out mocap: what geometry cannot mend in its joint angles.

Where a thigh or shin points along the line of sight, the 2D keypoint and the bone's length
leave two places for its far joint, nearer or farther than its near one (the fold); only the
lifter says which. ``geometry.limbs`` puts the limbs back on their rays at their lengths but
keeps the lifter's side. This benchmark measures, per held-out dataset and camera (Human3.6M
S8 through its four cameras, 5 px 2D noise, and the CMU ``test_*`` takes through the same
cameras, as ``benchmarks/kinematics.py`` does):

- ``fold_right_pct``: of the frames where the true bone leaves the image plane by more than
  ``--fold-deg``, the share on which the lifted bone points to the same side;
- ``angles_lifter`` / ``angles_true_folds``: hip and knee angle RMSE (plain 3D angles: knee
  hip-knee-ankle, hip between the spine and the thigh) of the refit skeleton, with the
  lifter's folds and with every wrong fold mirrored to the true side before the same refit:
  how much a lifter that chose every fold right would gain;
- ``trunk_lean``: the trunk's (Hip -> Thorax) forward lean in the world frame against the
  truth, mean and RMSE in degrees. A lean in depth barely shortens the trunk in the image
  (cos 8 deg = 0.99), so nothing but the lifter can tell it; it is what sets pelvis tilt, and
  with it hip flexion, in OpenSim.

    python benchmarks/folds.py [--lifter CKPT] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vp3d_ros.core.skeletons import H36M17  # noqa: E402
from vp3d_ros.geometry.bones import flexion_deg  # noqa: E402
from vp3d_ros.geometry.world import _angle, _unit  # noqa: E402

# (hip, knee, ankle) per side, H36M-17
LEGS = ((1, 2, 3), (4, 5, 6))
HIP, SPINE, THORAX = 0, 7, 8


def hip_angle(x: np.ndarray, hip: int, knee: int) -> np.ndarray:
    """Angle (T,) between the spine (Hip -> Spine) and the thigh, degrees: 180 standing."""
    return _angle(x[:, SPINE] - x[:, HIP], x[:, knee] - x[:, hip])


def _depth_sides(poses, truth, p, j, sight, fold_deg):
    """Bone p -> j of the poses and of the truth along ``sight`` (T, 3): (its depth in the
    poses, in the truth, where the true bone leaves the image plane by over ``fold_deg``)."""
    d, g = poses[:, j] - poses[:, p], truth[:, j] - truth[:, p]
    zd, zg = (d * sight).sum(-1), (g * sight).sum(-1)
    return zd, zg, np.abs(zg) > np.sin(np.radians(fold_deg)) * np.linalg.norm(g, axis=-1)


def mirror_folds(poses: np.ndarray, truth: np.ndarray, fold_deg: float) -> np.ndarray:
    """Camera-frame poses (T, J, 3) with each leg bone whose depth side (along the line of
    sight through its middle) differs from the truth's mirrored to the true side, knees
    before ankles, the joints below it carried along. Only where the true bone leaves the
    image plane by more than ``fold_deg`` (elsewhere the side is noise)."""
    out = poses.copy()
    for hip, knee, ankle in LEGS:
        for p, j, below in ((hip, knee, (knee, ankle)), (knee, ankle, (ankle,))):
            sight = _unit(out[:, j] + out[:, p])
            zd, zg, matters = _depth_sides(out, truth, p, j, sight, fold_deg)
            flip = (np.sign(zd) != np.sign(zg)) & matters
            shift = np.where(flip[:, None], -2 * zd[:, None] * sight, 0.0)
            for b in below:
                out[:, b] += shift
    return out


def fold_right(poses: np.ndarray, truth: np.ndarray, fold_deg: float) -> dict:
    """Per bone kind: [frames where the fold matters, frames with the lifter's side right]."""
    out = {'thigh': [0, 0], 'shin': [0, 0]}
    for hip, knee, ankle in LEGS:
        for name, p, j in (('thigh', hip, knee), ('shin', knee, ankle)):
            sight = _unit(truth[:, j] + truth[:, p])
            zd, zg, matters = _depth_sides(poses, truth, p, j, sight, fold_deg)
            out[name][0] += int(matters.sum())
            out[name][1] += int((matters & (np.sign(zd) == np.sign(zg))).sum())
    return out


def forward_lean(world: np.ndarray) -> np.ndarray:
    """Forward lean (T,) of Hip -> Thorax from the world's z axis, degrees, forward from the
    hips' left-right axis (what ``training.losses.forward_lean`` trains, there in the camera
    frame)."""
    left = world[:, 4] - world[:, 1]
    left[:, 2] = 0
    up = np.array([0.0, 0.0, 1.0])
    fwd = np.cross(_unit(left), up)
    t = world[:, THORAX] - world[:, HIP]
    return np.degrees(np.arctan2((t * fwd).sum(-1), (t * up).sum(-1)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--lifter', default=None, metavar='CKPT',
                    help='symmetric lifter checkpoint (default: the shipped one)')
    ap.add_argument('--fold-deg', type=float, default=15.0,
                    help='a bone this far out of the image plane has a fold that matters')
    ap.add_argument('--s8-frames', type=int, default=1000, help='per S8 sequence')
    ap.add_argument('--out', default=None, help='JSON results file')
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
    import kinematics as K
    if not (os.path.exists(K.S8) and os.path.exists(K.CMU)):
        print(f'needs {K.S8} and {K.CMU} (../shared data)', file=sys.stderr)
        return 2
    from vp3d_ros.geometry import world as W
    from vp3d_ros.geometry.limbs import refit_limbs
    from vp3d_ros.geometry.view import level_view
    K._PIPE['checkpoint'] = args.lifter
    cams, lifter = K._pipeline()
    assert tuple(H36M17.parents[j] for j in (2, 3, 5, 6)) == (1, 2, 4, 5)
    rng = np.random.default_rng(0)
    acc: dict = {}

    def run(ds, xyz, rate):
        gt = xyz.copy()
        gt[..., :2] -= gt[:, 0, :2].mean(axis=0)
        px = np.stack([c.project(gt) for c in cams])
        px = px + rng.normal(0, 5.0, px.shape)
        # the truth's angles and lean, the same through every camera
        true_angles = [np.concatenate([hip_angle(gt, h, kn) for h, kn, _ in LEGS]),
                       np.concatenate([flexion_deg(gt, h, kn, an) for h, kn, an in LEGS])]
        true_lean = forward_lean(gt)
        for k, cam in enumerate(cams):
            rel = level_view(cam).lift(lifter, px[k])
            placed = W.place_skeletons(rel, px[k], cam, fps=rate, floor_z=0.0,
                                       refit=False).poses_cam
            truth = cam.to_camera(gt)
            lifted = refit_limbs(placed, px[k], cam, fps=rate)
            folded = refit_limbs(mirror_folds(placed, truth, args.fold_deg), px[k], cam,
                                 fps=rate)
            a = acc.setdefault((ds, k), {'fold': {'thigh': [0, 0], 'shin': [0, 0]},
                                         'lifter': [], 'true_folds': [], 'lean': []})
            for name, (n, right) in fold_right(placed, truth, args.fold_deg).items():
                a['fold'][name][0] += n
                a['fold'][name][1] += right
            for key, x in (('lifter', lifted), ('true_folds', folded)):
                a[key].append(np.stack([
                    np.concatenate([hip_angle(x, h, kn) for h, kn, _ in LEGS]) - true_angles[0],
                    np.concatenate([flexion_deg(x, h, kn, an) for h, kn, an in LEGS])
                    - true_angles[1]]))
            a['lean'].append(forward_lean(W.to_world(lifted, cam)) - true_lean)

    s8 = np.load(K.S8)
    for seq in K.DEFAULT_SEQUENCES:
        run('s8', s8[seq][:args.s8_frames].astype(np.float64), float(s8['fps']))
    cmu = np.load(K.CMU)
    for take in [t for t in cmu.files if t.startswith('test_')]:
        run('cmu', cmu[take].astype(np.float64), float(cmu['fps']))

    def rmse(x):
        return [round(float(np.sqrt(np.nanmean(v ** 2))), 2) for v in x]

    results = {'lifter': args.lifter or 'shipped symmetric', 'fold_deg': args.fold_deg,
               'noise_px': 5.0, 'views': {}}
    print(f'{"":10s} {"fold right % thigh/shin":>24s} | {"hip/knee lifter":>16s} | '
          f'{"true folds":>12s} | trunk lean mean/rmse deg')
    for (ds, k), a in sorted(acc.items()):
        pct = {n: round(100.0 * r / max(m, 1), 1) for n, (m, r) in a['fold'].items()}
        lif = rmse(np.concatenate(a['lifter'], axis=1))
        tru = rmse(np.concatenate(a['true_folds'], axis=1))
        lean = np.concatenate(a['lean'])
        entry = {'fold_right_pct': pct,
                 'fold_frames': {n: m for n, (m, _) in a['fold'].items()},
                 'angles_lifter': {'hip': lif[0], 'knee': lif[1]},
                 'angles_true_folds': {'hip': tru[0], 'knee': tru[1]},
                 'trunk_lean': {'mean_error': round(float(np.mean(lean)), 2),
                                'rmse': round(float(np.sqrt(np.mean(lean ** 2))), 2)}}
        results['views'][f'{ds}_camera{k + 1}'] = entry
        print(f'{ds:4s} cam {k + 1} {pct["thigh"]:11.1f} / {pct["shin"]:5.1f}  | '
              f'{lif[0]:6.1f} / {lif[1]:5.1f}  | {tru[0]:5.1f} / {tru[1]:4.1f} | '
              f'{entry["trunk_lean"]["mean_error"]:+5.1f} / {entry["trunk_lean"]["rmse"]:4.1f}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
            f.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
