"""vp3d-export: LandmarkRecord bag -> CSV / OpenSim TRC / npz, one file per camera and person.

3D skeleton topics by default; --include-2d adds the 2D keypoint topics (CSV and npz; no
TRC). Files are named <topic>_p<person>.<ext>, e.g. cam01_skeleton_3d_p0.trc. Existing files
are not overwritten without --overwrite. Exit code 2 on bad input (no bag, no keypoint
topics, nobody detected, files in the way).

Examples::

    vp3d-export session_landmarks --out-dir exports                 # CSV + TRC + npz
    vp3d-export session_landmarks --out-dir exports --trc --topics /cam01/skeleton_3d
    vp3d-export session_landmarks --out-dir exports --csv --include-2d --overwrite

Columns:

  3D CSV   timestamp_s,landmark,x_m,y_m,z_m,visibility   (metres, camera optical frame:
           x right, y down, z forward, root-relative; one row per landmark per frame)
  2D CSV   timestamp_s,landmark,x_px,y_px,confidence     (pixels of the source image)
  TRC      OpenSim marker file, Units m, DataRate from the stamps, blank cells where a
           marker is missing ("Neck/Nose" is written Neck_Nose)
  World tracks (*/skeleton_3d/world, /skeleton_3d/fused: absolute, REP-103 z up) go out
           in OpenSim's axes in CSV and TRC: X = world x, Y = world z (up), Z = -world y,
           metres, absolute; the mapping is the first header line (CSV: a '#' line)
  npz      <name>__positions (T, J, D), __confidence (T, J), __stamps_s, __joint_names, ...;
           read back with vp3d_ros.io.records.read_npz. The positions of a 2D track are the
           (T, 17, 2) keypoints that vp3d-lift takes.
Empty cells (CSV, TRC) and NaN (npz) mark frames where the person was not detected.

Joint angles (sensor_msgs/JointState topics: the kinematics node's /kinematics/joint_states,
which the recorder keeps) go out as <topic>.mot (OpenSim motion file, degrees; with the TRC
format), <topic>.csv (time_s, <coordinate>_deg, pelvis_t*_m) and <topic>.npz (stamps_s,
names, positions as published: radians / metres); vp3d_ros.io.joint_states.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='vp3d-export', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('bag', help='bag directory (or split set / .mcap / .db3 file)')
    p.add_argument('--out-dir', required=True,
                   help='directory for the exported files (created if needed)')
    p.add_argument('--overwrite', action='store_true',
                   help='replace files of the same names in --out-dir (default: refuse)')
    p.add_argument('--csv', action='store_true', help='write CSV (default: all formats)')
    p.add_argument('--trc', action='store_true',
                   help='write OpenSim TRC (3D tracks only; joint angles: OpenSim .mot)')
    p.add_argument('--npz', action='store_true', help='write numpy .npz')
    p.add_argument('--topics', nargs='+', default=None,
                   help='only these topics: PointCloud2 keypoint topics and JointState topics '
                        '(default: all of both)')
    p.add_argument('--include-2d', action='store_true',
                   help='also export 2D keypoint tracks (pixels; CSV and npz)')
    return p


def _fail(msg: str) -> int:
    print(f'vp3d-export: {msg}', file=sys.stderr)
    return 2


def _why_nothing(args, tracks, topics) -> str:
    """The message when no track is chosen: no keypoint topics, only 2D ones, or nobody."""
    empty3 = [t for t in topics if t.dims == 3 and not t.frames_with_person]
    with2d = sorted({t.topic for t in tracks})
    if not topics:
        return f'no keypoint topics to export in {args.bag}'
    if with2d and not empty3:
        return (f'no 3D skeleton topics in {args.bag} (2D topics {with2d}: pass '
                '--include-2d)')
    seen = [t for t in topics if t.dims == 3 or args.include_2d] or topics
    return ('nobody was detected: ' + '; '.join(
        f'{t.topic} has {t.frames} frame(s), none with a person' for t in seen)
        + '. Nothing to export (check that the person is in view of the camera)'
        + (f'; 2D topics {with2d} have people: pass --include-2d' if with2d else ''))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..io import joint_states as js
    from ..io.bag_io import BagError
    from ..io.records import (is_world_track, keypoint_topic_frames, read_landmark_tracks,
                           write_csv, write_npz, write_trc, write_world_csv, write_world_trc)

    formats = [f for f in ('csv', 'trc', 'npz') if getattr(args, f)] or ['csv', 'trc', 'npz']
    if not Path(args.bag).exists():
        return _fail(f'no bag at {args.bag}')
    try:
        angle_topics = js.joint_state_topics(args.bag)
        clouds = (None if args.topics is None
                  else [t for t in args.topics if t not in angle_topics])
        tracks = read_landmark_tracks(args.bag, clouds) if clouds != [] else []
        angles = js.read_joint_states(args.bag, args.topics)
        chosen = [t for t in tracks if t.dims == 3 or args.include_2d]
        if not chosen and not angles:   # why: read the topics' frames again, this once
            return _fail(_why_nothing(args, tracks, keypoint_topic_frames(args.bag, clouds)
                                      if clouds != [] else []))
    except (BagError, ValueError) as e:
        return _fail(str(e))
    out = Path(args.out_dir)
    jobs = [(tr, out / f'{tr.name}.{ext}', ext) for tr in chosen for ext in formats
            if ext != 'trc' or tr.dims == 3]
    jobs += [(tr, out / f'{tr.name}.{"mot" if ext == "trc" else ext}', ext)
             for tr in angles for ext in formats]
    if not args.overwrite and (there := [str(path) for _, path, _ in jobs if path.exists()]):
        return _fail(f'{len(there)} file(s) already exist in {out} ({", ".join(there[:3])}'
                     f'{", ..." if len(there) > 3 else ""}); pass --overwrite to replace them, '
                     'or choose another --out-dir')
    try:
        out.mkdir(parents=True, exist_ok=True)
        for tr, path, ext in jobs:
            if isinstance(tr, js.JointTrack):
                print({'csv': js.write_joint_csv, 'trc': js.write_joint_mot,
                       'npz': js.write_joint_npz}[ext](tr, path))
                continue
            world = is_world_track(tr)
            if ext == 'csv':
                print(write_world_csv(tr, path) if world else write_csv(tr, path, allow_2d=True))
            elif ext == 'trc':
                print(write_world_trc(tr, path) if world else write_trc(tr, path))
            else:
                print(write_npz([tr], path))
    except OSError as e:
        return _fail(f'cannot write to {out}: {e}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
