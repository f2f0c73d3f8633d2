"""The demo (``make demo``): the live system on the bundled real clip, then the offline path.

1. video_source -> pose2d -> lifter -> recorder as separate ROS 2 processes over real DDS,
   as on a rig (the clip is played at ``--rate`` fps like a camera; frames pose2d cannot keep
   up with are dropped and counted, as live).
2. The LandmarkRecord bag is exported to CSV and OpenSim TRC.
3. ``vp3d-offline`` processes every frame of the same clip with the same checkpoint (the
   causal one unless ``--mode symmetric``, so that the two compare; vp3d-offline's own default
   is the symmetric one); the demo reports how live and offline agree on the frames both have.
4. A PNG strip: frames with the 2D skeleton and the 3D skeleton rendered beside them; with a
   calibration (the bundled clip's own by default) a second strip shows the world skeleton
   (absolute, z up: upright although the camera looks down), exported for OpenSim (Y up).
No network, no files outside the package.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sys
import time

import numpy as np

from .. import PACKAGE_DIR
from ..core.lifter_config import DEFAULT_CHECKPOINTS
from ..nodes.video_source_node import BUNDLED_CLIP
from .rig import Rig, default_params_file, plan

BUNDLED_CALIBRATION = os.path.join(os.path.dirname(BUNDLED_CLIP), 'balancing_calib_qualisys.toml')


def _env(out_dir: str) -> dict:
    env = dict(os.environ)
    pkg_root = os.path.dirname(PACKAGE_DIR)
    profile = os.path.join(pkg_root, 'config', 'fastdds_shm_profile.xml')
    env.setdefault('ROS_DOMAIN_ID', str(random.randint(120, 220)))
    env['ROS_LOG_DIR'] = env.get('ROS_LOG_DIR') or os.path.join(out_dir, 'ros_log')
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    if os.path.isfile(profile):
        env.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', profile)
    return env


def run_live(out_dir: str, video: str, checkpoint: str, rate: float, mode: str,
             calibration: str = ''):
    """-> (bag path, frames the camera sent or None if its log does not say). With a
    calibration the lifter lifts in the level view, as the offline run does."""
    env = _env(out_dir)
    params = default_params_file()
    logs = os.path.join(out_dir, 'logs')
    bag = os.path.join(out_dir, 'live_landmarks')
    specs = plan(['cam01'], video=video, record=True, bag_dir=out_dir, checkpoint=checkpoint,
                 mode=mode, video_params=[f'rate:={rate}', 'stamp_source:=video',
                                          f'stamp_offset_s:={LIVE_OFFSET_S}'],
                 recorder_params=['bag_name:=live_landmarks'],
                 lifter_params=[f'calibration:={calibration}'] if calibration else [])
    nodes = Rig(specs[1:], params, env=env, log_dir=logs)  # pose2d, lifter, recorder first
    try:
        for key, text in (('cam01_pose2d', 'pose2d ready'), ('lifter', 'lifter ready'),
                          ('recorder', 'recording /cam01/skeleton_3d')):
            if not nodes.wait_for_log(key, text, 180):
                raise RuntimeError(f'{key} did not start; see {nodes.logs[key]}:\n'
                                   + nodes.log(key)[-2000:])
        camera = Rig(specs[:1], params, env=env, log_dir=logs)
        try:
            if not camera.wait_for_log('cam01_video_source', 'end of clip', 600):
                raise RuntimeError('video_source did not finish:\n'
                                   + camera.log('cam01_video_source')[-2000:])
            sent = re.search(r'end of clip after (\d+) frames', camera.log('cam01_video_source'))
        finally:
            camera.stop()
        time.sleep(2.5)  # pose2d's last frame, then the lifter's idle flush
    finally:
        codes = nodes.stop()
    if codes.get('recorder') not in (0, None):
        raise RuntimeError(f'recorder exited with {codes["recorder"]}: ' + nodes.log('recorder')[-2000:])
    return bag, int(sent.group(1)) if sent else None


# Live video stamps start here (a zero stamp means "unstamped" to the lifter); offline video
# stamps are frame_index / fps from 0.
LIVE_OFFSET_S = 100.0


def _by_frame(track, fps, offset=0.0):
    return {int(round((float(t) - offset) * fps)): i for i, t in enumerate(track.stamps_s)}


def agreement(live, offline, fps) -> dict:
    """Live vs offline on the frames both have, matched by frame index."""
    a, b = _by_frame(live, fps, LIVE_OFFSET_S), _by_frame(offline, fps)
    common = sorted(set(a) & set(b))
    if not common:
        return {'frames': 0}
    pa = live.positions[[a[s] for s in common]]
    pb = offline.positions[[b[s] for s in common]]
    ok = np.all(np.isfinite(pa), axis=(1, 2)) & np.all(np.isfinite(pb), axis=(1, 2))
    d = np.linalg.norm(pa[ok] - pb[ok], axis=-1)
    return {'frames': int(ok.sum()), 'mean_mm': float(1000 * d.mean()) if d.size else float('nan'),
            'max_mm': float(1000 * d.max()) if d.size else float('nan')}


def live_line(bag: str, sent, n2: int, n3: int) -> str:
    """What the live run did, drops only when there were some."""
    line = f'live bag      {bag}: {n2} keypoints_2d frames, {n3} skeleton_3d frames'
    if sent is not None and n2 < sent:
        line += (f'; {sent - n2} of the {sent} frames the camera sent were dropped (pose2d '
                 'works on the newest frame when MediaPipe falls behind, as on a rig)')
    elif sent is not None:
        line += f': every one of the {sent} frames the camera sent, none dropped'
    if n3 < n2:
        line += f'; {n2 - n3} 2D frames without a 3D pose (no person, or a lifter restart)'
    return line


def agreement_line(ag: dict, dropped: bool) -> str:
    """Live vs offline: the figures, and a reason only when they differ."""
    if not ag['frames']:
        return 'live vs offline: no frames in common to compare'
    line = f'live vs offline: {ag["frames"]} common frames, '
    if not ag['max_mm'] >= 0.05:  # also NaN: nothing finite to compare
        return line + '3D joints identical (within 0.05 mm)'
    line += (f'3D joints differ by {ag["mean_mm"]:.1f} mm on average (max {ag["max_mm"]:.1f} '
             'mm)')
    if dropped:
        line += ('; live MediaPipe tracked a stream with dropped frames and the lifter saw '
                 'those gaps, offline saw every frame')
    return line


def picture(video: str, tracks2d, tracks3d, path: str, n: int = 5, pose_frame: str = 'camera'):
    import cv2
    from ..vision.render import strip, video_frames
    t2, t3 = tracks2d[0], tracks3d[0]
    frames = video_frames(video)
    idx = np.linspace(0, min(len(frames), len(t3.stamps_s)) - 1, n).astype(int)
    img = strip([frames[i] for i in idx], [t2.positions[i] for i in idx],
                [t2.confidence[i] for i in idx], [t3.positions[i] for i in idx],
                captions=[f'frame {i}  t={t3.stamps_s[i]:.3f}s' for i in idx],
                pose_frame=pose_frame)
    cv2.imwrite(path, img)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='python -m vp3d_ros.apps.demo', description=__doc__.splitlines()[0])
    ap.add_argument('--video', default=BUNDLED_CLIP,
                    help='clip to use (default: the bundled one); from a clone: '
                         'make demo ARGS="--video clip.mp4"')
    ap.add_argument('--out', default='demo_output', help='output directory (replaced)')
    ap.add_argument('--mode', default='causal', choices=['causal', 'symmetric'],
                    help='which shipped lifter the live system and the offline run use')
    ap.add_argument('--checkpoint', default='', help='use this checkpoint instead of the shipped one')
    ap.add_argument('--rate', type=float, default=15.0, help='camera rate for the live run (fps)')
    ap.add_argument('--skip-live', action='store_true', help='only the offline part')
    ap.add_argument('--calibration', default=None,
                    help="camera calibration for world skeletons (default: the bundled clip's "
                         "own with the bundled clip, else none; '' = none)")
    a = ap.parse_args(argv)
    if a.calibration is None:
        a.calibration = BUNDLED_CALIBRATION if os.path.abspath(a.video) == \
            os.path.abspath(BUNDLED_CLIP) else ''
    from ..core.options import LifterOptions
    from ..io import records
    from .offline import process

    checkpoint = a.checkpoint or DEFAULT_CHECKPOINTS[a.mode]
    if not os.path.isfile(checkpoint):
        print(f'demo: checkpoint {checkpoint} not found', file=sys.stderr)
        return 2
    if os.path.isdir(a.out):
        shutil.rmtree(a.out)
    os.makedirs(a.out)
    print(f'demo: lifter checkpoint {checkpoint} '
          f'({"shipped default, " + a.mode if not a.checkpoint else "user-supplied"})')
    t0 = time.time()
    lines = []
    live_tracks = []
    dropped = False
    if not a.skip_live:
        print(f'demo: live run: video_source({os.path.basename(a.video)} @ {a.rate} fps) -> '
              'pose2d -> lifter -> recorder, separate processes over DDS ...')
        live_bag, sent = run_live(a.out, a.video, a.checkpoint, a.rate, a.mode,
                                  a.calibration)
        live_tracks = records.read_landmark_tracks(live_bag)
        for tr in live_tracks:
            if tr.dims == 3:
                records.write_csv(tr, os.path.join(a.out, f'live_{tr.name}.csv'))
                records.write_trc(tr, os.path.join(a.out, f'live_{tr.name}.trc'))
        n2 = sum(len(t.stamps_s) for t in live_tracks if t.dims == 2)
        n3 = sum(len(t.stamps_s) for t in live_tracks if t.dims == 3)
        lines.append(live_line(live_bag, sent, n2, n3))
        dropped = sent is not None and n2 < sent
    print(f'demo: offline run on every frame of the same clip ({a.mode} lifter, as the live '
          'run) ...')
    off_bag = os.path.join(a.out, 'offline_landmarks')
    # level view only where the live lifter has it too (a calibration), to compare like with like
    summary = process(a.video, off_bag, lifter=LifterOptions(checkpoint=checkpoint, mode=a.mode,
                                                             level_view=bool(a.calibration)),
                      progress=sys.stderr.isatty(), calibration=a.calibration or None)
    off_tracks = records.read_landmark_tracks(off_bag)
    off_world = [t for t in off_tracks if records.is_world_track(t)]
    off3 = [t for t in off_tracks if t.dims == 3 and not records.is_world_track(t)]
    off2 = [t for t in off_tracks if t.dims == 2]
    for tr in off3:
        records.write_csv(tr, os.path.join(a.out, f'offline_{tr.name}.csv'))
        records.write_trc(tr, os.path.join(a.out, f'offline_{tr.name}.trc'))
    for tr in off_world:   # OpenSim's axes: X = world x, Y = world z (up), Z = -world y
        records.write_world_csv(tr, os.path.join(a.out, f'offline_{tr.name}.csv'))
        records.write_world_trc(tr, os.path.join(a.out, f'offline_{tr.name}.trc'))
    records.write_npz(off_tracks, os.path.join(a.out, 'offline_landmarks.npz'))
    lines.append(f'offline bag   {off_bag}: {summary.frames} frames, {summary.frames_without_person} '
                 f'without a person, {summary.fps:.1f} frames/s, {a.mode} lifter'
                 + ('' if a.mode == 'symmetric' or a.checkpoint else
                    ' (as live, to compare; vp3d-offline defaults to the smoother symmetric one, '
                    '--mode causal gives this)'))
    live3 = [t for t in live_tracks if t.dims == 3]
    if live3 and off3:
        import cv2
        fps = cv2.VideoCapture(a.video).get(cv2.CAP_PROP_FPS) or 30.0
        lines.append(agreement_line(agreement(live3[0], off3[0], fps), dropped))
    png = picture(a.video, off2, off3, os.path.join(a.out, 'demo_strip.png')) if off3 and off2 else None
    png_world = picture(a.video, off2, off_world, os.path.join(a.out, 'demo_world_strip.png'),
                        pose_frame='world') if off_world and off2 else None
    bones = []
    if off3:
        from ..core.skeletons import H36M17
        p = off3[0].positions
        lengths = np.stack([np.linalg.norm(p[:, c] - p[:, par], axis=-1) for par, c in H36M17.bones], 1)
        bones = [np.nanmean(lengths), np.nanmean(np.nanstd(lengths, axis=0))]
    print('\n=== vp3d_ros demo summary ===')
    print(f'checkpoint    {checkpoint}')
    for line in lines:
        print(line)
    if bones:
        print(f'skeleton      mean bone length {100 * bones[0]:.1f} cm, bone-length std over time '
              f'{1000 * bones[1]:.1f} mm')
    if off3:
        print(f'exports       {a.out}/*.csv (timestamp_s,landmark,x_m,y_m,z_m,visibility; '
              'metres, camera frame), *.trc (OpenSim), *.npz')
    else:
        print(f'exports       none: nobody was detected in {a.video} (no 3D skeleton to export)')
    if png:
        print(f'picture       {png} (frames with the 2D skeleton; 3D from the camera and from '
              'its right, 0.5 m grid)')
    if off_world:
        w = off_world[0].positions
        print(f'world         {a.calibration}: {off_world[0].topic}, Hip at '
              f'{np.round(np.nanmedian(w[:, 0], axis=0), 2).tolist()} m (median), Head '
              f'{np.nanmedian(w[:, 10, 2]):.2f} m above the floor; {a.out}/offline_'
              f'{off_world[0].name}.trc in OpenSim axes (Y up)'
              + (f'; picture {png_world} (upright, z up)' if png_world else ''))
    print(f'total time    {time.time() - t0:.1f} s')
    print('next          your video: make demo ARGS="--video clip.mp4", or to CSV/TRC directly: '
          'make process VIDEO=clip.mp4\n'
          '              the tools: source .venv/bin/activate; vp3d-offline --help, '
          'vp3d-export --help (README: Offline and export)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
