"""The multi-view fusion demo (``make demo-fusion``): the bundled 4-camera clip, fused.

1. MediaPipe 2D on every frame of each camera (the offline path's ``detect_2d``).
2. The shipped lifter on camera 1's 2D: that camera's own root-relative skeleton.
3. Fusion of the four cameras (:func:`vp3d_ros.geometry.fusion.fuse_sequence`, with every
   camera's lifted skeleton as the prior) and plain triangulation of the same 2D, for
   comparison: reprojection error and bone-length variation.
4. Out: ``fused.npy`` ((T, 17, 3) world metres, z up), the 2D of each camera
   (``keypoints_camNN.npy``, (T, 17, 3) pixels + confidence, what ``vp3d-fuse`` reads), and
   ``fusion_strip.png``: camera 1's frames with its 2D and its own 3D skeleton above the fused
   world skeleton.
No network, no files outside the package.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .. import DATA_DIR

DATA = Path(DATA_DIR)
VIDEOS = [DATA / f'balancing_cam0{i}.mp4' for i in range(1, 5)]
CALIB = DATA / 'balancing_calib_qualisys.toml'


def detect(video: Path, name: str, max_frames=None):
    """(T, 17, 3) pixels + confidence (NaN where nobody was found), image size."""
    from .offline import run_pose, video_source
    res = run_pose([video_source(video, name, None, max_frames)], 'h36m', False)[0]
    kp = np.full((len(res.frames), 17, 3), np.nan)
    for t, f in enumerate(res.frames):
        if f.people:
            p, c = f.people[min(f.people)]
            kp[t] = np.concatenate([p, c[:, None]], -1)
    return kp, res.frames[0].size


def bone_cv(P) -> float:
    from ..core.skeletons import H36M17
    P = P[np.all(np.isfinite(P), axis=(1, 2))]
    L = np.stack([np.linalg.norm(P[:, c] - P[:, a], axis=-1) for a, c in H36M17.bones], 1)
    return float((L.std(0) / L.mean(0)).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='python -m vp3d_ros.apps.fusion_demo',
                                 description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='demo_output/fusion', help='output folder')
    ap.add_argument('--columns', type=int, default=5, help='frames in the picture')
    ap.add_argument('--max-frames', type=int, default=None, help='only the first N frames')
    ap.add_argument('--reuse', action='store_true',
                    help="reuse the 2D keypoints a previous run left in --out (MediaPipe is slow)")
    a = ap.parse_args(argv)
    import cv2
    from ..geometry import fusion as F
    from ..geometry.calibration import find_camera, load_calibration
    from ..geometry.view import level_view
    from ..core.lifter import SequenceLifter
    from ..core.lifter_config import resolve_lifter
    from ..vision.render import render_3d, strip, video_frames
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    missing = [str(p) for p in VIDEOS + [CALIB] if not p.is_file()]
    if missing:
        print(f'fusion demo: bundled files missing: {", ".join(missing)}', file=sys.stderr)
        return 2
    rig = load_calibration(CALIB)
    t0 = time.perf_counter()
    kps, cams = [], []
    for i, v in enumerate(VIDEOS):
        name = f'cam0{i + 1}'
        saved = out / f'keypoints_{name}.npy'
        if a.reuse and saved.is_file():
            kp = np.load(saved)
            cap = cv2.VideoCapture(str(v))
            size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        else:
            kp, size = detect(v, name, a.max_frames)
        kps.append(kp)
        cams.append(find_camera(rig, name).with_image_size(*size))
        np.save(out / f'keypoints_{name}.npy', kp)
        print(f'{name}: {len(kp)} frames, person in {np.isfinite(kp[:, 0, 0]).mean():.0%} '
              f'({time.perf_counter() - t0:.0f} s)', flush=True)
    T = min(len(k) for k in kps)
    kp = np.stack([k[:T] for k in kps])
    ck, layout = resolve_lifter(None, mode='symmetric')
    lifter = SequenceLifter(ck.build(), layout)
    lifted = []
    for c, k in zip(cams, kp):
        ok = np.isfinite(k[:, 0, 0])
        if ok.sum() < 2:
            lifted.append(None)
            continue
        idx = np.arange(T)
        filled = k[..., :2].copy()   # the lifter needs every frame: bridge frames without one
        for j in range(17):
            for d in range(2):
                filled[:, j, d] = np.interp(idx, idx[ok], k[ok, j, d])
        view = level_view(c, layout)    # calibrated: lifted as a level camera sees them
        lifted.append(view.lift(lifter, filled) if view is not None
                      else lifter.lift(filled, *c.size))
    fps = cv2.VideoCapture(str(VIDEOS[0])).get(cv2.CAP_PROP_FPS) or 60.0
    fused = F.fuse_sequence(cams, kp, fps, lifted)
    plain = F.triangulate(cams, kp[..., :2], weighted=False)
    np.save(out / 'fused.npy', fused.points)
    px, conf = F.split_keypoints(kp)
    for label, Y in (('plain triangulation', plain), ('fusion', fused.points)):
        e = np.stack([np.linalg.norm(c.project(Y) - px[i], axis=-1) for i, c in enumerate(cams)])
        e = e[(conf >= 0.5) & np.isfinite(e)]
        print(f'{label:20s}: reprojection median {np.median(e):5.1f} px, p95 '
              f'{np.percentile(e, 95):5.1f} px; bone-length CV {100 * bone_cv(Y):.1f}%')
    # picture: camera 1 (2D + its own 3D) above the fused world skeleton
    frames = video_frames(VIDEOS[0])
    pick = np.linspace(min(10, T // 4), T - 1 - min(10, T // 4), a.columns).astype(int)
    top = strip([frames[i] for i in pick], [kp[0, i, :, :2] for i in pick],
                [kp[0, i, :, 2] for i in pick], [lifted[0][i] if lifted[0] is not None else None
                                                 for i in pick],
                captions=[f'cam01 frame {i}' for i in pick])
    w = top.shape[1] // len(pick) - 4
    bottom = np.hstack([np.pad(np.vstack([
        render_3d(fused.points[i], w, 0.0, 'fused, 4 cameras, from -y', 'world'),
        render_3d(fused.points[i], w, 90.0, 'fused, 4 cameras, from +x', 'world')]),
        ((0, 0), (0, 4), (0, 0))) for i in pick])
    picture = np.vstack([top[:, :bottom.shape[1]], bottom])
    cv2.imwrite(str(out / 'fusion_strip.png'), picture)
    print(f'-> {out / "fused.npy"}, {out / "fusion_strip.png"} '
          f'({time.perf_counter() - t0:.0f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
