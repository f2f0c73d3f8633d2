"""Left/right label swaps traded back from a track's continuity (``core.label_swaps``,
the ``repair_swaps`` rule of every track): how many swaps it undoes, how many good labels it
spoils.

    python benchmarks/label_swaps.py [--data DIR] [--video DIR]

Held-out motion capture (Human3.6M S8 and the six CMU ``test_*`` takes; skipped when
absent), every take through two seeded random cameras of the training distribution
(``training.synth.sample_cameras``) with 3 px Gaussian noise, at the capture rate and at
half of it, lifted through nothing: only the 2D labels are judged, by
``label_swaps.trade_back_track`` (what ``TrackWindow`` does frame by frame).
- clean: limb-frames traded where nothing was swapped (per 10,000 frames);
- swapped: MediaPipe-like runs injected (3 frames to 0.7 s long, every 1-4 s, the legs alone
  or the whole body, half of them begun where the two legs are closest in the image, where
  a swap cannot be seen beginning): mislabelled limb-frames as detected and after the
  trades, and the trades that were right and wrong.

The real 4-camera clip (``--video``, default ../shared/data/video/pose2sim_balancing):
MediaPipe on every frame (as ``real_clip.py``), the multi-view reference triangulated the
same way; a limb of a camera counts as swapped in a frame where its traded names lie
within half the distance of its own names from the reference reprojected into that camera.
Printed per camera: the swapped limb-frames and what the trades left mislabelled.
The P-MPJPE this is worth is in ``real_clip.py`` (``labels as detected`` rows).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from common import REPO

SHARED = os.path.join(os.path.dirname(REPO), 'shared', 'data')
LIMBS = ((np.array([4, 5, 6, 1, 2, 3]), np.array([1, 2, 3, 4, 5, 6])),       # legs
         (np.array([11, 12, 13, 14, 15, 16]), np.array([14, 15, 16, 11, 12, 13])))  # arms


def trades(px: np.ndarray, fps: float) -> np.ndarray:
    """(T, 17, 2) -> (T, 2) bool: legs / arms traded back."""
    from vp3d_ros.core.label_swaps import trade_back_track
    from vp3d_ros.core.skeletons import H36M17
    stamps = np.round(np.arange(len(px)) * 1e9 / fps).astype(np.int64)
    perms = trade_back_track(px, np.ones(px.shape[:2], bool), stamps, H36M17)
    return np.stack([(perms[:, kept] != kept).any(axis=1) for kept, _ in LIMBS], axis=1)


def inject(px: np.ndarray, fps: float, rng) -> tuple:
    """MediaPipe-like swap runs -> (swapped (T, 17, 2), mislabelled (T, 2) bool)."""
    T = len(px)
    wrong = np.zeros((T, 2), bool)
    t = int(rng.integers(10, 60))
    while t < T - 5:
        if rng.random() < 0.5:   # begun where the legs are closest: unseen
            seg = px[t:t + int(fps / 2)]
            t += int(np.argmin(np.linalg.norm(seg[:, [1, 2, 3]] - seg[:, [4, 5, 6]],
                                              axis=-1).mean(axis=1)))
        n = int(rng.integers(3, int(0.7 * fps)))
        wrong[t:t + n, 0] = True
        wrong[t:t + n, 1] = rng.random() < 0.5
        t += n + int(rng.integers(int(fps), int(4 * fps)))
    out = px.copy()
    for g, (kept, traded) in enumerate(LIMBS):
        rows = np.flatnonzero(wrong[:, g])
        out[rows[:, None], kept] = px[rows[:, None], traded]
    return out, wrong


def mocap(data_dir: str):
    from vp3d_ros.training import synth
    from vp3d_ros.training.data import is_validation, load_clips
    clips = [c for c in load_clips(data_dir) if is_validation(c)]
    print(f'held-out motion capture: {len(clips)} takes, '
          f'{sum(len(c.poses) / c.fps for c in clips) / 60:.1f} min, 2 cameras each, 3 px noise')
    rng = np.random.default_rng(0)
    for step in (1, 2):
        frames = clean = before = after = right = wrong_trades = 0
        for clip in clips:
            x = clip.poses[::step].astype(np.float64)
            fps = clip.fps / step
            cams = synth.sample_cameras(2, np.repeat(x[:, 0, :2].mean(0)[None], 2, 0), rng)
            px = synth.project(synth.world_to_camera(np.repeat(x[None], 2, 0), cams),
                               cams.f, cams.c) + rng.normal(0, 3.0, (2,) + x.shape[:2] + (2,))
            for p in px:
                frames += len(p)
                clean += trades(p, fps).sum()
                bad, mislabelled = inject(p, fps, rng)
                got = trades(bad, fps)
                before += mislabelled.sum()
                after += (mislabelled ^ got).sum()
                right += (got & mislabelled).sum()
                wrong_trades += (got & ~mislabelled).sum()
        print(f'  {"capture rate" if step == 1 else "half rate":12s} {frames:7d} frames: clean '
              f'{1e4 * clean / frames:.2f} limb-frames traded per 10,000 frames; swapped: '
              f'{before} limb-frames mislabelled as detected, {after} after the trades '
              f'({100 * after / max(before, 1):.0f}%; {right} right trades, {wrong_trades} wrong)')


def real_clip(video_dir: str, cache: str):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import real_clip as rc
    from vp3d_ros.core.keypoint_mapping import mediapipe_to_h36m
    from vp3d_ros.geometry.calibration import find_camera, load_calibration
    from vp3d_ros.geometry.fusion import robust_triangulate
    rig = load_calibration(os.path.join(video_dir, 'Calib_qualisys.toml'))
    videos = sorted(f for f in os.listdir(video_dir) if f.endswith('.mp4'))
    cams, kp2, conf2, fps = [], [], [], 60.0
    for v in videos:
        px, conf, _, size, fps = rc.detect(os.path.join(video_dir, v), cache)
        k, c = mediapipe_to_h36m(px, conf)
        cams.append(find_camera(rig, v[:-4]).with_image_size(*size))
        kp2.append(k)
        conf2.append(np.where(np.all(np.isfinite(k), -1), c, 0.0))
    ref = robust_triangulate(cams, np.stack(kp2), np.stack(conf2), threshold_px=15.0,
                             max_error_px=25.0).points
    print(f'\nreal clip ({os.path.basename(video_dir)}, {len(ref)} frames, MediaPipe): limb-frames '
          'swapped against the multi-view reference, and left mislabelled after the trades')
    from vp3d_ros.core.label_swaps import trade_back_track
    from vp3d_ros.core.skeletons import H36M17
    from vp3d_ros.core.track_rules import DEFAULT
    for name, cam, k, c in zip(videos, cams, kp2, conf2):
        rp = cam.project(ref.reshape(-1, 3)).reshape(ref.shape[0], 17, 2)
        swapped = np.stack([np.linalg.norm(k[:, traded] - rp[:, kept], axis=-1).mean(1)
                            < 0.5 * np.linalg.norm(k[:, kept] - rp[:, kept], axis=-1).mean(1)
                            for kept, traded in LIMBS], axis=1)
        stamps = np.round(np.arange(len(k)) * 1e9 / fps).astype(np.int64)
        perms = trade_back_track(k, c >= DEFAULT.min_confidence, stamps, H36M17)
        got = np.stack([(perms[:, kept] != kept).any(axis=1) for kept, _ in LIMBS], axis=1)
        print(f'  {name[:-4]}: swapped legs {swapped[:, 0].sum():3d}, arms {swapped[:, 1].sum():3d}'
              f'; mislabelled after the trades: legs {(swapped ^ got)[:, 0].sum():3d}, arms '
              f'{(swapped ^ got)[:, 1].sum():3d} ({(got & ~swapped).sum()} of them traded '
              'where nothing was swapped)')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=os.path.join(SHARED, 'mocap', 'h36m17'),
                    help='mocap/h36m17 folder (held-out takes are used)')
    ap.add_argument('--video', default=os.path.join(SHARED, 'video', 'pose2sim_balancing'),
                    help="the 4-camera clip with Calib_qualisys.toml ('' = skip)")
    ap.add_argument('--cache', default='', help='folder to cache the MediaPipe results in')
    a = ap.parse_args(argv)
    if os.path.isdir(a.data):
        mocap(a.data)
    else:
        print(f'{a.data} not found: no motion-capture figures')
    if a.video and os.path.isfile(os.path.join(a.video, 'Calib_qualisys.toml')):
        real_clip(a.video, a.cache)
    return 0


if __name__ == '__main__':
    sys.exit(main())
