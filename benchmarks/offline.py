"""vp3d-offline frames per second vs a bare MediaPipe loop over the same video, same run.

The bare loop decodes the clip and runs MediaPipe Pose (legacy, video mode) on every frame:
the floor any offline tool pays. vp3d-offline adds mapping, whole-sequence lifting with the
shipped symmetric model and writing the LandmarkRecord bag (goal: ratio >= 0.9).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import cv2

from common import CLIP


def bare(path, max_frames):
    from vp3d_ros.vision.pose_estimation import create_estimator
    est = create_estimator('legacy', video_mode=True)
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    n = 0
    t0 = time.perf_counter()
    while max_frames is None or n < max_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        est.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), int(n * 1000 / fps))
        n += 1
    dt = time.perf_counter() - t0
    est.close()
    return n / dt, n


def main(argv=None):
    from vp3d_ros.core.allocator import keep_large_buffers
    keep_large_buffers()  # as the nodes and vp3d-offline do: the baselines get it too
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--video', default=CLIP)
    ap.add_argument('--frames', type=int, default=None)
    ap.add_argument('--repeat', type=int, default=2, help='alternate runs, best of each')
    a = ap.parse_args(argv)
    from vp3d_ros.apps.offline import process
    best_bare, best_off = 0.0, 0.0
    for _ in range(a.repeat):
        fps_bare, n = bare(a.video, a.frames)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            s = process(a.video, os.path.join(tmp, 'bag'), max_frames=a.frames)
            fps_off = s.frames / (time.perf_counter() - t0)
        best_bare, best_off = max(best_bare, fps_bare), max(best_off, fps_off)
    print(f'{n} frames of {os.path.basename(a.video)}')
    print(f'bare MediaPipe loop (decode + pose)  {best_bare:6.1f} frames/s')
    print(f'vp3d-offline (2D + lifting + bag)    {best_off:6.1f} frames/s  ratio '
          f'{best_off / best_bare:.2f} (goal >= 0.9)')
    return best_off / best_bare


if __name__ == '__main__':
    main()
