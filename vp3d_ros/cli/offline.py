"""vp3d-offline: a video file or a camera bag -> a LandmarkRecord bag (every frame, whole-
sequence lifting). Bad input exits with status 2 and leaves no output behind.

Examples::

    vp3d-offline clip.mp4 --out session_landmarks --camera-name cam01
    vp3d-offline cameras.mcap --topics /cam01/image /cam02/image/compressed --storage sqlite3
    vp3d-offline rig_cam01.mp4 rig_cam02.mp4 rig_cam03.mp4 --calibration calib.toml  # + fused
    vp3d-export session_landmarks --out-dir exports     # then: CSV, OpenSim TRC, npz
    vp3d-offline clip.mp4 --estimate-ground --out s && vp3d-kinematics s --out-dir angles

(From a clone without activating .venv: ``make offline VIDEO=clip.mp4 OUT=session_landmarks``,
or ``make process VIDEO=clip.mp4`` for the bag and its CSV/TRC in one go.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.options import OFFLINE_LIFTER, LifterOptions, PoseOptions
from ..core.track_rules import TrackRules
from .options import add_options, options_from_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='vp3d-offline', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('input', nargs='+',
                   help='video file, or rosbag2 bag (directory, .mcap or .db3) with '
                        'sensor_msgs/Image or CompressedImage topics; or several videos of '
                        'synchronised cameras (one camera each, named from the file: '
                        '..._cam01.mp4 -> cam01); with --calibration and two or more cameras '
                        'the bag also holds /skeleton_3d/fused (one world skeleton per person '
                        'from all cameras)')
    p.add_argument('--out', default=None,
                   help='output bag (a new directory; default: <input name>_landmarks here)')
    p.add_argument('--storage', choices=['mcap', 'sqlite3'], default='mcap',
                   help='output bag storage format: mcap (default, as the recorder) or sqlite3 '
                        '(.db3, for tools that only read rosbag2\'s older format)')
    p.add_argument('--topics', nargs='+', default=None, metavar='TOPIC',
                   help='bag image topics to process (default: every image topic)')
    p.add_argument('--camera-name', default=None,
                   help='camera namespace of the output topics (default: for a video, from the '
                        'file name, e.g. cam01; for a bag, the image topic namespace)')
    p.add_argument('--frame-id', default=None,
                   help='video input: header frame_id (default: camera_optical_frame, as '
                        'video_source)')
    p.add_argument('--max-frames', type=int, default=None,
                   help='stop after this many frames per camera (default: all)')
    g = p.add_argument_group('lifter (the lifter node\'s parameters of the same names)')
    add_options(g, LifterOptions, defaults={'mode': OFFLINE_LIFTER.mode}, skip=('trajectory',),
                aliases={'input_layout': ['--layout']})
    add_options(g, TrackRules)
    w = p.add_argument_group('world frame (vp3d_ros.geometry.world)')
    w.add_argument('--calibration', default=None, metavar='FILE',
                   help='camera calibration (Pose2Sim/Anipose .toml, .json, .yaml, OpenCV): '
                        'also write /<cam>/skeleton_3d/world (absolute, metres, the '
                        "calibration's world frame); cameras matched by name")
    w.add_argument('--subject-height', type=float, default=None, metavar='M',
                   help="subject height in metres (default: the lifter's scale)")
    w.add_argument('--world-frame', default='world', help='frame_id of the world skeletons')
    w.add_argument('--floor-z', type=float, default=0.0, metavar='Z',
                   help="floor height in the calibration's world (default 0)")
    w.add_argument('--no-floor', action='store_true', help='do not use the floor cue')
    w.add_argument('--refit-limbs', action=argparse.BooleanOptionalAction, default=True,
                   help='world skeletons: refit knees, ankles, elbows and wrists to the 2D '
                        'with one length per bone (vp3d_ros.geometry.limbs; default: on)')
    w.add_argument('--estimate-ground', action='store_true',
                   help='without a calibration: estimate each camera\'s floor and gravity from '
                        'the subject (as vp3d-lift --frame world does; intrinsics guessed: '
                        'focal = the long image side) and also write /<cam>/skeleton_3d/world '
                        'in that ground frame (REP-103: x along the optical axis on the floor, '
                        'y left, z up, origin on the floor under the camera; frame_id '
                        '<cam>_ground), what vp3d-kinematics needs from one uncalibrated camera')
    m = p.add_argument_group("pose (MediaPipe; the pose2d node's parameters of the same names)")
    add_options(m, PoseOptions)
    p.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True,
                   help='progress line on stderr when it is a terminal (default: on)')
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..core.allocator import keep_large_buffers
    from ..apps.offline import OfflineError, process
    keep_large_buffers()  # per-frame image buffers: reuse heap memory (see allocator.py)
    first = args.input[0]
    out = args.out or f'{Path(first.rstrip("/")).stem or "offline"}_landmarks'
    try:
        summary = process(
            args.input[0] if len(args.input) == 1 else args.input, out,
            lifter=options_from_args(args, LifterOptions),
            rules=options_from_args(args, TrackRules),
            pose=options_from_args(args, PoseOptions),
            storage=args.storage, topics=args.topics, camera_name=args.camera_name,
            frame_id=args.frame_id, max_frames=args.max_frames,
            progress=args.progress,
            calibration=args.calibration, subject_height_m=args.subject_height,
            world_frame=args.world_frame, floor_z=None if args.no_floor else args.floor_z,
            estimate_ground=args.estimate_ground, refit_limbs=args.refit_limbs)
    except OfflineError as e:
        print(f'vp3d-offline: error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('vp3d-offline: interrupted; no bag written', file=sys.stderr)
        return 130
    print(f'vp3d-offline: {summary.line()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
