"""vp3d-kinematics: joint angles with OpenSim from an H36M-17 marker track (TRC or bag).

Scales a generic full-body OpenSim model (Pose2Sim's simple model, BSD-3-Clause, with a
marker at each H36M joint centre) to the subject from the stillest half second of the first
three seconds (or to --height), then runs inverse kinematics over the whole track.

Input: a TRC with our marker names (Hip, RHip, RKnee, RFoot, LHip, LKnee, LFoot, Spine,
Thorax, Neck_Nose, Head, LShoulder, LElbow, LWrist, RShoulder, RElbow, RWrist; other
markers are ignored), Y up (--up z turns a Z-up file), metres (cm/mm read from the Units
field), blank or NaN cells for missing markers (frames without the pelvis are left NaN);
or a LandmarkRecord bag with a world-frame (REP-103, z up) H36M-17 track: /skeleton_3d/fused
first, else a topic with "world" in its name, or --topic; the person seen in most frames, or
--person; or a .npy (T, 17, 3) of world joints, REP-103 z up, as `vp3d-lift --frame world`
writes, with --fps. One camera without calibration: `vp3d-offline clip.mp4
--estimate-ground --out s`, then `vp3d-kinematics s`.

Writes to --out-dir, for an input named <name> (the file stem):

  <name>.mot                IK result, degrees: every model coordinate (hip_flexion_r,
                            knee_angle_r, ankle_angle_r, ..., _l, pelvis_*, L5_S1_*, arm_*,
                            elbow_flex_*)
  <name>_scaled.osim        the scaled model with its placed markers
  <name>.trc                from a bag or .npy: the markers IK used (Y up)
  <name>_scale_setup.xml    the ScaleTool setup that made it (+ <name>_scaled_generic.osim)
  <name>_angles.csv         time_s and every coordinate (_deg / _m)
  <name>_angles.png         hip, knee, ankle flexion both sides, pelvis tilt, trunk, shoulder, elbow
  <name>_summary.json/.txt  per-marker IK error (RMS, max), scale factors, what is not measured

Not measured (held at 0 and said so): ankle, subtalar, mtp, forearm rotation and wrist (no
foot or hand markers). Pelvis tilt, lumbar angles and humeral rotation lean on weak priors.

Needs the optional `opensim` package (PyPI wheel 4.6). Exit code 2 on bad input, 3 when
OpenSim is not installed.

Example::

    vp3d-export session_landmarks --out-dir exports --trc
    vp3d-kinematics exports/world_skeleton_p0.trc --out-dir angles --height 1.78
"""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='vp3d-kinematics', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('input', metavar='BAG|TRC',
                   help='TRC file (Y up), LandmarkRecord bag, or .npy world joints (with --fps)')
    p.add_argument('--out-dir', required=True, help='directory for the outputs (created if needed)')
    p.add_argument('--height', type=float, default=None, metavar='M',
                   help='subject height in metres: scale every segment by height / 1.70 m '
                        '(default: segment lengths measured from the standing start)')
    p.add_argument('--mass', type=float, default=None, metavar='KG',
                   help='subject mass for the scaled model (kinematics do not depend on it)')
    p.add_argument('--model', default=None, metavar='FILE',
                   help='OpenSim model whose marker set names the 17 TRC markers '
                        '(default: the bundled vp3d_h36m17.osim)')
    p.add_argument('--topic', default=None, help='bag input: the world/fused topic to use')
    p.add_argument('--person', type=int, default=None, metavar='ID',
                   help='bag input: the person id to follow (default: the person seen in most '
                        'frames); the summary names the one used')
    p.add_argument('--fps', type=float, default=None, help='.npy input: its frame rate')
    p.add_argument('--up', choices=('y', 'z'), default='y',
                   help="TRC input: its vertical axis. 'z' turns a Z-up file (Vicon, Qualisys, "
                        "REP-103 exports) to OpenSim's Y up: X, Y, Z -> X, Z, -Y. Default: y; "
                        'a subject that stands along another axis is refused')
    p.add_argument('--lowpass-hz', type=float, default=None, metavar='HZ',
                   help='zero-phase Butterworth low-pass of the markers before scaling and IK '
                        '(4th order, as the fusion smooths; e.g. 6). Default: none')
    p.add_argument('--keep-short-legs', action='store_true',
                   help='do not bend the knee of a leg that is shorter than its own length '
                        '(by default a leg under 90%% of it, each bone at its 80th percentile '
                        'over the track, has its knee bent until thigh and shin reach it, hip '
                        'and ankle kept: the fold one camera averaged away)')
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from pathlib import Path
    from ..kinematics import INSTALL_HINT
    try:
        from ..kinematics import require_opensim
        require_opensim()
    except ImportError:
        print(f'vp3d-kinematics: {INSTALL_HINT}', file=sys.stderr)
        return 3
    src = Path(args.input)
    if not src.exists():
        print(f'vp3d-kinematics: {src} does not exist', file=sys.stderr)
        return 2
    if args.height is not None and not 0.5 < args.height < 2.6:
        print(f'vp3d-kinematics: --height {args.height} m is not a human height', file=sys.stderr)
        return 2
    from ..io.bag_io import BagError
    from ..kinematics import pipeline, report
    try:
        out = pipeline.run(src, args.out_dir, height=args.height, mass=args.mass,
                           model_file=args.model, topic=args.topic, fps=args.fps,
                           lowpass_hz=args.lowpass_hz, up=args.up, person=args.person,
                           bend_legs=not args.keep_short_legs)
    except (ValueError, OSError, BagError) as e:   # OSError: unreadable input, unwritable out
        print(f'vp3d-kinematics: {e}', file=sys.stderr)
        return 2
    print(report.summary_text(out.summary_data))
    for path in (out.mot, out.scaled_model, out.csv, out.png, out.summary):
        print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
