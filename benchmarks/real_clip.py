"""Skeleton stability on a real 4-camera lab clip: our lifted skeletons vs MediaPipe's own
world landmarks on the same frames (the 3D baseline labs compare against).

For every camera of ../shared/data/video/pose2sim_balancing (the bundled clip if absent):
MediaPipe Pose on every frame (video mode) gives 2D keypoints and world landmarks; the 2D are
lifted with the shipped symmetric and causal models. Reported per camera: bone-length standard
deviation over time (mean over the 16 H36M bones; a rigid body has 0), left/right bone-length
asymmetry (mean |left - right| over the 6 limb pairs), and mean joint acceleration.
MediaPipe's world landmarks are mapped to H36M-17 with the same joint synthesis as the 2D.
"""
from __future__ import annotations

import argparse
import os

import cv2
import numpy as np

from common import CLIP, REPO

SHARED = os.path.join(os.path.dirname(REPO), 'shared', 'data', 'video', 'pose2sim_balancing')
PAIRS = [((0, 4), (0, 1)), ((4, 5), (1, 2)), ((5, 6), (2, 3)),
         ((8, 11), (8, 14)), ((11, 12), (14, 15)), ((12, 13), (15, 16))]


def bone_stats(p, fps):
    from vp3d_ros.skeletons import H36M17
    ok = np.all(np.isfinite(p), axis=(1, 2))
    p = p[ok]
    lengths = np.stack([np.linalg.norm(p[:, c] - p[:, a], axis=-1) for a, c in H36M17.bones], 1)
    asym = np.mean([np.abs(np.linalg.norm(p[:, l1] - p[:, l0], axis=-1)
                           - np.linalg.norm(p[:, r1] - p[:, r0], axis=-1)).mean()
                    for (l0, l1), (r0, r1) in PAIRS])
    acc = np.linalg.norm(np.diff(p, 2, axis=0), axis=-1).mean() * fps ** 2 if len(p) > 2 else np.nan
    return 1000 * lengths.std(0).mean(), 1000 * asym, acc, 100 * lengths.mean()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--clips', nargs='*', default=None)
    a = ap.parse_args(argv)
    from vp3d_ros.keypoint_mapping import mediapipe_to_h36m
    from vp3d_ros.lifter import SequenceLifter
    from vp3d_ros.lifter_config import resolve_lifter
    from vp3d_ros.pose_estimation import create_estimator
    clips = a.clips or sorted(os.path.join(SHARED, f) for f in os.listdir(SHARED)
                              if f.endswith('.mp4')) if os.path.isdir(SHARED) else [CLIP]
    lifters = {}
    for kind in ('symmetric', 'causal'):
        ck, layout = resolve_lifter(None, default_kind=kind)
        lifters[kind] = SequenceLifter(ck.build(), layout)
    print(f'{"clip":10s} {"method":22s} {"bone std mm":>11s} {"L/R asym mm":>11s} '
          f'{"accel m/s2":>10s} {"mean bone cm":>12s}')
    rows = []
    for path in clips:
        cap = cv2.VideoCapture(path)
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        est = create_estimator('legacy', video_mode=True)
        kp, conf, world = [], [], []
        i = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            h, w = bgr.shape[:2]
            people = est.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), int(i * 1000 / fps))
            i += 1
            if not people:
                kp.append(np.full((33, 2), np.nan))
                conf.append(np.zeros(33))
                world.append(np.full((33, 3), np.nan))
                continue
            kp.append(people[0].landmarks_px)
            conf.append(people[0].visibility)
            world.append(people[0].world_landmarks)
        est.close()
        kp2, _ = mediapipe_to_h36m(np.array(kp), np.array(conf))
        w3, _ = mediapipe_to_h36m(np.array(world))
        seen = np.all(np.isfinite(kp2), axis=(1, 2))
        name = os.path.basename(path)[:-4]
        results = {'MediaPipe world': bone_stats(w3, fps)}
        for kind, lifter in lifters.items():
            results[f'vp3d_ros {kind}'] = bone_stats(lifter.lift(kp2[seen], w, h), fps)
        for method, (std, asym, acc, mean) in results.items():
            print(f'{name:10s} {method:22s} {std:11.1f} {asym:11.1f} {acc:10.1f} {mean:12.1f}')
            rows.append((name, method, std, asym, acc))
    for method in ('MediaPipe world', 'vp3d_ros symmetric', 'vp3d_ros causal'):
        sel = [r for r in rows if r[1] == method]
        print(f'{"mean":10s} {method:22s} {np.mean([r[2] for r in sel]):11.1f} '
              f'{np.mean([r[3] for r in sel]):11.1f} {np.mean([r[4] for r in sel]):10.1f}')
    return rows


if __name__ == '__main__':
    main()
