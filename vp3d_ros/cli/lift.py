"""vp3d-lift: lift a .npy of pixel keypoints (T, 17, 2) to a .npy of 3D poses (T, 17, 3).

Usable with keypoints from any 2D detector; also how the lifter core is checked from
outside against upstream VideoPose3D.

Keypoints from a vp3d_ros bag: export the 2D topic to npz, then save its positions::

    vp3d-export session_landmarks --out-dir exports --npz --include-2d --topics /cam01/keypoints_2d
    python -c "import numpy as np; z = np.load('exports/cam01_keypoints_2d_p0.npz'); \\
        np.save('keypoints.npy', z['cam01_keypoints_2d_p0__positions'])"
    vp3d-lift keypoints.npy --width 1080 --height 1920 --out poses.npy

(H36M order, as pose2d and vp3d-offline write by default. Frames without the person are NaN
there: drop or fill them first. --width/--height: the source video's size.)
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ..core.options import OFFLINE_LIFTER, LifterOptions
from .options import add_options, options_from_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='vp3d-lift', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('keypoints', help='input .npy, shape (T, 17, 2) pixels, or (T, 17, 3) with '
                                     'a confidence last')
    p.add_argument('--width', type=float, required=True, help='image width in pixels')
    p.add_argument('--height', type=float, required=True, help='image height in pixels')
    g = p.add_argument_group("lifter (the lifter node's parameters of the same names)")
    add_options(g, LifterOptions, defaults={'mode': OFFLINE_LIFTER.mode},
                aliases={'input_layout': ['--layout']})
    p.add_argument('--out', required=True, help='output .npy, shape (T, 17, 3), metres')
    p.add_argument('--repair-swaps', action='store_true',
                   help='trade back left/right labels the 2D detector swapped for a run of '
                        "frames, as the lifter node and vp3d-offline do (their repair_swaps "
                        'rule; vp3d_ros.core.label_swaps; timing from --fps). Off by default: '
                        'vp3d-lift lifts the keypoints exactly as given')
    p.add_argument('--rigid-bones', action='store_true',
                   help="post-hoc: every bone gets its median length over the track, in the "
                        "direction the lifter gave it (vp3d_ros.geometry.bones; off by default: "
                        "the network's own output is what the accuracy tables report)")
    w = p.add_argument_group('world frame (see vp3d_ros.geometry.world)')
    w.add_argument('--frame', choices=['camera', 'world'], default='camera',
                   help='camera: root-relative, camera optical frame (default); world: '
                        'absolute positions in the calibration\'s world frame (without '
                        '--calibration: a gravity-aligned z-up frame estimated from the '
                        'subject, floor at z=0)')
    w.add_argument('--calibration', default=None,
                   help='camera calibration file (Pose2Sim/Anipose .toml, .json, .yaml, '
                        'OpenCV .yaml/.xml); also with --frame camera: lifted in the level '
                        'view (--level-view)')
    w.add_argument('--camera', default=None,
                   help='camera name in the calibration (default: its only camera)')
    w.add_argument('--subject-height', type=float, default=None, metavar='M',
                   help='subject height in metres: scales the skeleton (default: the '
                        "lifter's metric scale)")
    w.add_argument('--floor-z', type=float, default=0.0, metavar='Z',
                   help='height of the floor in the calibration\'s world (0: Pose2Sim, '
                        'Qualisys, Human3.6M); the feet standing on it tell the depth. '
                        'Skipped by itself when the world\'s z is not up')
    w.add_argument('--no-floor', action='store_true',
                   help='do not use the floor (depth from the skeleton size only)')
    w.add_argument('--refit-limbs', action=argparse.BooleanOptionalAction, default=True,
                   help='--frame world: refit knees, ankles, elbows and wrists to the 2D with '
                        'one length per bone (vp3d_ros.geometry.limbs; default: on)')
    w.add_argument('--fps', type=float, default=50.0,
                   help='frame rate of the keypoints, for smoothing the root track (50)')
    w.add_argument('--focal', type=float, default=None, metavar='PX',
                   help='focal length in pixels when there is no calibration (default: the '
                        'long image side)')
    return p


def _world_camera(args):
    """The calibrated camera for --frame world (or an intrinsics-only one), or raise."""
    from ..geometry.calibration import find_camera, guessed_camera, load_calibration
    if args.calibration:
        rig = load_calibration(args.calibration)
        if args.camera:
            cam = find_camera(rig, args.camera)
        elif len(rig) == 1:
            cam = next(iter(rig.values()))
        else:
            raise ValueError(f'--camera is needed: the calibration has {", ".join(sorted(rig))}')
        return cam.with_image_size(int(round(args.width)), int(round(args.height))), True
    return guessed_camera(args.width, args.height, args.focal, args.camera or 'camera'), False


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..core.checkpoint import CheckpointError
    from ..core.lifter import SequenceLifter

    try:
        kp = np.load(args.keypoints, allow_pickle=False)
    except (OSError, ValueError) as e:
        print(f'vp3d-lift: cannot read {args.keypoints}: {e}', file=sys.stderr)
        return 2
    conf = None
    if kp.ndim == 3 and kp.shape[1:] == (17, 3):  # confidence last
        kp, conf = kp[..., :2], kp[..., 2]
    if kp.ndim != 3 or kp.shape[1:] != (17, 2):
        print(f'vp3d-lift: expected keypoints of shape (T, 17, 2), got {kp.shape}', file=sys.stderr)
        return 2
    if not np.all(np.isfinite(kp)):
        print('vp3d-lift: keypoints contain NaN or inf; fill or drop those frames first',
              file=sys.stderr)
        return 2
    try:
        ckpt, layout = options_from_args(args, LifterOptions).resolve()
    except CheckpointError as e:
        print(f'vp3d-lift: {e}', file=sys.stderr)
        return 2
    if args.subject_height is not None and not 0.5 <= args.subject_height <= 2.8:
        print(f'vp3d-lift: --subject-height is the standing height in metres (0.5 to 2.8), '
              f'got {args.subject_height:g}', file=sys.stderr)
        return 2
    if args.trajectory and getattr(args, 'frame', 'camera') != 'camera':
        print('vp3d-lift: --trajectory places the skeleton in camera coordinates; it does not '
              'combine with --frame world, which places it itself', file=sys.stderr)
        return 2
    try:
        trajectory = ckpt.build_trajectory(args.device) if args.trajectory else None
    except CheckpointError as e:
        print(f'vp3d-lift: --trajectory: {e}', file=sys.stderr)
        return 2
    lifter = SequenceLifter(ckpt.build(args.device), input_layout=layout,
                            flip=args.flip, device=args.device, trajectory=trajectory)
    if args.repair_swaps:
        kp, conf = _repair_swaps(kp, conf, lifter.layout, args.fps)
    if args.frame == 'world' or args.calibration:
        from ..geometry.calibration import CalibrationError
        try:
            camera, calibrated = _world_camera(args)
        except (CalibrationError, ValueError) as e:
            print(f'vp3d-lift: {e}', file=sys.stderr)
            return 2
    if args.frame == 'world':
        poses = _lift_world(lifter, kp, conf, camera, calibrated, layout, args)
    elif args.calibration and args.level_view:   # camera frame, lifted in the level view
        view = _calibrated_view(camera, layout)
        poses = _rigid(view.lift(lifter, kp) if view is not None else
                       lifter.lift(kp, args.width, args.height), args)
    else:
        poses = _rigid(lifter.lift(kp, args.width, args.height), args)
    np.save(args.out, poses.astype(np.float32) if kp.dtype == np.float32 else poses)
    print(f'vp3d-lift: {len(poses)} frames, {ckpt.arch.describe()}, layout={layout}, '
          f'flip={args.flip}{", trajectory (camera-space root)" if trajectory else ""} '
          f'-> {args.out}', file=sys.stderr)
    return 0


def _repair_swaps(kp, conf, layout, fps):
    """The track rule of the node and vp3d-offline on a whole keypoints file."""
    from ..core.label_swaps import trade_back_track
    from ..core.track_rules import DEFAULT
    seen = np.ones(kp.shape[:2], bool) if conf is None else conf >= DEFAULT.min_confidence
    stamps = np.round(np.arange(len(kp)) * 1e9 / fps).astype(np.int64)
    perms = trade_back_track(kp, seen, stamps, layout)
    traded = int((perms != np.arange(kp.shape[1])).any(axis=1).sum())
    print(f'vp3d-lift: left/right labels traded back in {traded} frame(s)', file=sys.stderr)
    kp = np.take_along_axis(kp, perms[..., None], axis=1)
    return kp, None if conf is None else np.take_along_axis(conf, perms, axis=1)


def _rigid(poses, args):
    """--rigid-bones: one length per bone over the track (root-relative poses)."""
    if not args.rigid_bones:
        return poses
    from ..geometry.bones import rigid_bones
    return rigid_bones(poses)


def _calibrated_view(camera, layout):
    """The calibrated camera's level view, or None; says which."""
    from ..geometry.view import level_view
    view = level_view(camera, layout)
    print('vp3d-lift: ' + ('lifted in the level view (the camera turned level, aimed at the '
                           'person)' if view is not None else
                           "level view not used: the calibration's world z is not up for this "
                           'camera'), file=sys.stderr)
    return view


def _lift_world(lifter, kp, conf, camera, calibrated, layout, args):
    """Lift the keypoints (in the level view where up is known), place them through the
    camera, move them to the world. Without a calibration, up comes from the subject
    (``estimate_ground`` on a first, plain lift), then the track is lifted again in the
    level view that gives."""
    from ..geometry import world
    from ..geometry.ground import estimate_ground
    from ..geometry.limbs import refit_limbs
    from ..geometry.view import view_with_up
    kp2, w = kp, conf
    if layout == 'coco':
        kp2, w = world.coco_to_h36m_2d(kp, conf)
    floor = None if (args.no_floor or not calibrated) else args.floor_z

    def lift_and_place(view, refit):
        if view is not None:
            rel = view.lift(lifter, kp)
        else:
            und = camera.undistort_pixels(kp)  # the lifter was trained on pinhole projections
            rel = lifter.lift(und, args.width, args.height)
        return world.place_skeletons(_rigid(rel, args), kp2, camera, w, args.subject_height,
                                     args.fps, floor_z=floor, refit=refit)

    say = lambda text: print('vp3d-lift: ' + text, file=sys.stderr)  # noqa: E731
    view = _calibrated_view(camera, layout) if calibrated and args.level_view else None
    # without a calibration the ground comes from the lifter's own limbs (as vp3d-offline's)
    placed = lift_and_place(view, args.refit_limbs and calibrated)
    if floor is not None:
        say((f'depth from the feet on the floor (z = {floor:g})'
             + (' and the subject height' if args.subject_height else ''))
            if placed.floor_scale is not None else
            f'floor (z = {floor:g}) not used: the feet do not stand on it '
            "or the world's z is not up; depth from the skeleton size")
    if not calibrated:
        ground = estimate_ground(placed.poses_cam, camera.name, camera.K, camera.size)
        view = view_with_up(camera, ground.up_cam, layout) if args.level_view else None
        if view is not None:   # lifted again as a level camera sees the subject
            placed = lift_and_place(view, False)
        # the floor under the feet of the refit limbs
        refit = refit_limbs(placed.poses_cam, kp2, camera, w, args.fps) if args.refit_limbs \
            else None
        if view is not None or refit is not None:
            ground = estimate_ground(placed.poses_cam, camera.name, camera.K, camera.size,
                                     feet_from=refit)
        if refit is not None:
            placed.poses_cam, placed.limbs_refit = refit, True
        camera = ground.camera
        say(f'no calibration: estimated {ground.said()}'
            + ('; lifted again in the level view of that ground' if view is not None else ''))
    return world.to_world(placed.poses_cam, camera)


if __name__ == '__main__':
    sys.exit(main())
