"""World-frame skeletons: absolute position, subject scale and the no-calibration up estimate.

    python benchmarks/world.py [--max-frames N] [--skip-real] [--skip-mocap] [--lifter CKPT]
                               [--gravity-only]

1. Held-out motion capture (Human3.6M S8, 30 sequences, and the six CMU ``test_*`` clips),
   each moved to stand where the four Human3.6M cameras of S8 look (mean root on the world
   origin, floor z = 0, as in benchmarks/accuracy.py), seen through those cameras (their
   intrinsics, distortion and placement from ../shared/data/cameras/h36m_cameras.json,
   written as a Pose2Sim calibration TOML and read back). 2D = exact projection with
   distortion ("ground-truth 2D"). Lifted with the shipped symmetric model in each camera's
   level view (vp3d_ros.geometry.view: what a calibration gives vp3d-lift, vp3d-offline and
   the lifter node; the no-calibration rows lift the pixels as they are), then:
   - baseline: plain per-frame least-squares root through K (distorted pixels, lifter scale);
   - world, no floor: vp3d_ros.geometry.world (undistorted 2D, Gauss-Newton, smoothed),
     depth from the lifter's scale, or from the subject's height: one figure per subject,
     as a user would type it, W.skeleton_height of the subject's ground truth (upright
     frames' Head-to-mid-ankle, 90th percentile, + 0.10 m; S8: its 30 sequences pooled,
     1.69 m; CMU subjects are not named: each test clip its own, by the joint chain where
     it has too few upright frames);
   - world (floor): the same, depth from the feet on the floor (world z = 0), with the
     subject's height: both depth cues, weighted (what vp3d-lift does).
   - live: the world node's causal path (per-frame root, level + trend filter, causal floor
     cue over the past 2 s), lifter scale, without and with the floor; and floor + subject
     height (the track's size so far, W.RunningHeight).
   The floor cue assumes a foot on the floor within every 2 s; where both feet stay up
   longer (sittingdown: on the floor, legs raised; walkingdog: the true lower foot is a
   median 14 cm up) it errs.
   Metrics, world frame: root position error (mm, mean over frames) and absolute MPJPE (mm).
   No calibration: estimate_ground on the lifted, placed skeletons (intrinsics known):
   up-axis error (degrees) and camera height error (mm).
2. The real 4-camera clip (../shared/data/video/pose2sim_balancing, Calib_qualisys.toml,
   world z up, floor z = 0): MediaPipe 2D per camera (cached in out/world_cache/), lifted
   and placed in the world as ``vp3d-offline --calibration`` does (``apps.offline``: the
   engine's track rules, left/right swaps traded back, the level view, ``place_in_world``).
   Reference: the 4-camera triangulation of the same 2D (``geometry.fusion.robust_triangulate``
   as in ``real_clip.py``: confidence-weighted, views more than 15 px off dropped, so a camera
   whose labels are swapped does not pull it). Per camera: distance to the triangulation (root, all joints),
   cross-camera agreement = distance to the median of the other three cameras' world
   skeletons, and the lower foot joint's height above the floor (median over frames; the
   subject balances on one leg), with the lifter's scale and with the subject height
   measured on the triangulation; with and without the floor cue.
3. Gravity without a calibration (``geometry.ground.estimate_up``: the upright body, or
   balance), on its own: held-out mocap over whole clips and 150- and 60-frame windows,
   cameras level and rolled 25 deg; the real clip's cameras over their first 60 and 100
   frames (:func:`gravity_benchmark`).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vp3d_ros.geometry import world as W  # noqa: E402
from vp3d_ros.geometry.ground import estimate_ground  # noqa: E402
from vp3d_ros.geometry.view import level_view  # noqa: E402
from vp3d_ros.geometry.calibration import (load_calibration,  # noqa: E402
                                           save_calibration_toml)

SHARED = os.path.join(os.path.dirname(ROOT), 'shared', 'data')
CAMERAS_JSON = os.path.join(SHARED, 'cameras', 'h36m_cameras.json')
MOCAP = os.path.join(SHARED, 'mocap', 'h36m17')
REAL = os.path.join(SHARED, 'video', 'pose2sim_balancing')
CACHE = os.path.join(ROOT, 'out', 'world_cache')


def held_out_clips(max_frames=None):
    from vp3d_ros.training.data import load_clips, split_clips
    _, val = split_clips(load_clips(MOCAP))
    out = []
    for c in val:
        if c.source not in ('h36m', 'cmu'):
            continue
        p = c.poses[:max_frames] if max_frames else c.poses
        w = p.astype(np.float64).copy()
        w[..., :2] -= w[:, 0, :2].mean(axis=0)
        out.append((c, w))
    return out


def h36m_rig(tmp):
    """The four S8 cameras, written as a Pose2Sim TOML and read back (the file path a lab
    would use)."""
    rig = load_calibration(CAMERAS_JSON)
    cams = {n.split('_', 1)[1]: c for n, c in sorted(rig.items()) if n.startswith('S8_')}
    path = os.path.join(tmp, 'h36m_s8.toml')
    save_calibration_toml(cams, path)
    return load_calibration(path), path


def baseline_root(rel, px, cam):
    """Plain per-frame LS root through K (no undistortion, no refinement, no smoothing)."""
    from vp3d_ros.geometry.calibration import Camera
    pinhole = Camera(cam.name, cam.K, np.zeros(0), cam.R, cam.t, cam.size)
    return W.solve_root(rel, px, pinhole, iterations=0)


def subject_heights(clips):
    """The height a user would type for each clip's subject: W.skeleton_height of all the
    subject's frames (Human3.6M: by subject; CMU: by clip, its subjects are not named)."""
    groups = {}
    for c, gt in clips:
        groups.setdefault(c.subject if c.source == 'h36m' else c.key, []).append(gt)
    heights = {k: W.skeleton_height(np.concatenate(v)) for k, v in groups.items()}
    return {c.key: heights[c.subject if c.source == 'h36m' else c.key] for c, _ in clips}


def mocap_benchmark(max_frames, lifter):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rig, _ = h36m_rig(tmp)
        clips = held_out_clips(max_frames)
        heights = subject_heights(held_out_clips())
        print('subject heights (m): ' + ', '.join(
            f'{k.split("/", 1)[1]} {h:.3f}' for k, h in sorted(heights.items())
            if not k.startswith('h36m') or k.endswith('walking_1')), flush=True)
        for clip, gt in clips:
            height = heights[clip.key]
            for name, cam in sorted(rig.items()):
                px = cam.project(gt)
                und = cam.undistort_pixels(px)
                raw = lifter.lift(und, *cam.size)           # no calibration: pixels as they are
                rel = level_view(cam).lift(lifter, px)    # calibrated: the level view
                gt_cam = cam.to_camera(gt)
                res = {'clip': f'{clip.source}/{clip.name}', 'cam': name}
                t = baseline_root(rel - rel[:, :1], px, cam)
                pw = cam.to_world(rel - rel[:, :1] + t[:, None])
                res['base'] = _errs(pw, gt)
                for key, h, floor in (('nofloor', None, None), ('nofloor_h', height, None),
                                      ('world', None, 0.0), ('height', height, 0.0)):
                    pl = W.place_skeletons(rel, px, cam, subject_height_m=h, fps=clip.fps,
                                           floor_z=floor)
                    res[key] = _errs(W.to_world(pl.poses_cam, cam), gt)
                    if key == 'world' and clip.name == 'walking_1' and name.endswith('camera1'):
                        opensim_check(W.to_world(pl.poses_cam, cam), clip.fps,
                                      'S8_walking_1_camera1', os.path.join(ROOT, 'out', 'world'))
                    if floor is not None:
                        res['floor_used'] = res.get('floor_used', True) and \
                            pl.floor_scale is not None
                for key, floor, h in (('live', False, None), ('live_floor', True, None),
                                      ('live_height', True, height)):
                    res[key] = _errs(cam.to_world(live_placement(rel, px, cam, clip.fps, floor,
                                                                 h)), gt)
                # No calibration: intrinsics only (K, distortion), extrinsics estimated.
                from vp3d_ros.geometry.calibration import Camera
                intr = Camera(name, cam.K, cam.dist, size=cam.size)
                pl = W.place_skeletons(raw, px, intr, fps=clip.fps)
                g = estimate_ground(pl.poses_cam, name, cam.K, cam.size)
                true_up = cam.R @ np.array([0.0, 0.0, 1.0])
                res['up_deg'] = float(np.degrees(np.arccos(np.clip(g.up_cam @ true_up, -1, 1))))
                res['cam_h_mm'] = 1000 * abs(g.height_m - cam.centre[2])
                res['scale'] = pl.scale
                res['frames'] = len(gt)
                res['gt_cam'] = gt_cam
                rows.append(res)
    return rows


def live_placement(rel, px, cam, fps, floor, height=None):
    """What the world node does, frame by frame: the track's size so far (with a subject
    height), per-frame root, causal root filter, causal floor cue."""
    rel = rel - rel[:, :1]
    if height:
        size = W.RunningHeight(height)
        rel = np.stack([r * size.step(r) for r in rel])
    t = W.solve_root(rel, px, cam)
    filt = W.CausalRootFilter(fps)
    fl = W.CausalFloorScale(cam, 0.0, fps) if floor else None
    out = np.empty_like(rel)
    for i in range(len(rel)):
        root = filt.step(t[i])
        out[i] = rel[i] + root
        if fl is not None:
            f = fl.step(out[i])
            out[i] = rel[i] + root * float(W.combine_depth_cues(f, 1.0)) if height \
                else out[i] * f
    return out


def _errs(pw, gt):
    root = 1000 * np.linalg.norm(pw[:, 0] - gt[:, 0], axis=-1).mean()
    mpjpe = 1000 * np.linalg.norm(pw - gt, axis=-1).mean()
    return root, mpjpe


def summarise_mocap(rows):
    def agg(sel, key, i):
        w = np.array([r['frames'] for r in sel], dtype=float)
        return float(np.average([r[key][i] for r in sel], weights=w))
    print(f'{"set":6s} {"method":30s} {"root mm":>8s} {"abs MPJPE mm":>13s}')
    out = {}
    for src in ('h36m', 'cmu', 'all'):
        sel = [r for r in rows if src == 'all' or r['clip'].startswith(src)]
        if not sel:
            continue
        for key, label in (('base', 'per-frame LS through K'),
                           ('nofloor', 'world, lifter scale, no floor'),
                           ('nofloor_h', 'world, height, no floor'),
                           ('world', 'world (floor)'), ('height', 'world + height (floor)'),
                           ('live', 'live (causal), no floor'),
                           ('live_floor', 'live (causal), floor'),
                           ('live_height', 'live (causal), floor + height')):
            out[(src, key)] = (agg(sel, key, 0), agg(sel, key, 1))
            print(f'{src:6s} {label:30s} {out[(src, key)][0]:8.0f} {out[(src, key)][1]:13.0f}')
        fu = sum(r['floor_used'] for r in sel)
        print(f'{src:6s} floor used on {fu}/{len(sel)} clip x camera')
        up = np.array([r['up_deg'] for r in sel])
        ch = np.array([r['cam_h_mm'] for r in sel])
        print(f'{src:6s} no calibration: up error mean {up.mean():.1f} deg, median '
              f'{np.median(up):.1f}, max {up.max():.1f}; camera height error mean '
              f'{ch.mean():.0f} mm, median {np.median(ch):.0f} mm ({len(sel)} clip x camera)')
        out[(src, 'up')] = (up.mean(), np.median(up), up.max(), ch.mean())
    return out


# ----------------------------------------------------------------------------- real clip

def mediapipe_2d(video):
    """MediaPipe Pose (legacy, video mode) 2D of every frame, mapped to H36M-17; cached."""
    os.makedirs(CACHE, exist_ok=True)
    cache = os.path.join(CACHE, os.path.basename(video)[:-4] + '_mp2d.npz')
    if os.path.isfile(cache) and os.path.getmtime(cache) > os.path.getmtime(video):
        d = np.load(cache)
        return d['kp'], d['conf'], float(d['fps']), tuple(d['size'])
    from vp3d_ros.core.keypoint_mapping import mediapipe_to_h36m
    from real_clip import mediapipe_video
    t0 = time.time()
    kp, conf, _, size, fps = mediapipe_video(video)
    kp2, c2 = mediapipe_to_h36m(kp, conf)
    np.savez(cache, kp=kp2, conf=c2, fps=fps, size=np.array(size))
    print(f"  MediaPipe 2D of {os.path.basename(video)}: {len(kp)} frames in "
          f"{time.time() - t0:.0f} s "
          f'(cached in {cache})', flush=True)
    return kp2, c2, fps, size


def as_vp3d_offline(lifter, kp, conf, size, fps, camera, height, floor):
    """(T, 17, 3) world skeletons of one camera's 2D track as ``vp3d-offline --calibration``
    makes them (``apps.offline``: the engine's track rules, left/right swaps traded back,
    the level view, then ``place_in_world``); NaN where no pose came out."""
    from vp3d_ros.apps.offline import lift_camera, place_in_world
    from real_clip import camera_track
    res, stamps = camera_track(kp, conf, size, fps, camera.name)
    lift_camera(res, lifter, 'h36m', camera=camera)
    placed = place_in_world(res, camera, 'h36m', subject_height_m=height,
                            floor_z=0.0 if floor else None)
    out = np.full((len(kp), 17, 3), np.nan)
    for i, s in enumerate(stamps):
        if 0 in placed.get(s, {}):
            out[i] = placed[s][0][0]
    return out


def real_benchmark(lifter, floor=True):
    calib = os.path.join(REAL, 'Calib_qualisys.toml')
    rig = load_calibration(calib)
    videos = sorted(f for f in os.listdir(REAL) if f.endswith('.mp4'))
    tracks = {}
    from vp3d_ros.geometry.calibration import find_camera
    for v in videos:
        kp, conf, fps, size = mediapipe_2d(os.path.join(REAL, v))
        cam = find_camera(rig, v[:-4]).with_image_size(*size)
        tracks[v[:-4]] = (cam, kp, conf, size)
    names = sorted(tracks)
    from vp3d_ros.geometry.fusion import robust_triangulate
    ref = robust_triangulate([tracks[n][0] for n in names],     # as real_clip.py's reference
                             np.stack([tracks[n][1] for n in names]),
                             np.stack([np.where(np.isfinite(tracks[n][1]).all(-1), tracks[n][2], 0.0)
                                       for n in names]),
                             threshold_px=15.0, max_error_px=25.0).points
    ref_h = W.skeleton_height(ref[np.isfinite(ref).all((1, 2))])
    low_ref = np.nanmin(ref[:, [W.RFOOT, W.LFOOT], 2], axis=1)
    print(f'real clip: 4-camera triangulation (reference): skeleton height {ref_h:.2f} m, '
          f'lower foot joint {1000 * np.nanmedian(low_ref):.0f} mm above the floor (median)')
    results = {}
    for h in (None, ref_h):
        per_cam = {}
        for name, (cam, kp, conf, size) in tracks.items():
            full = as_vp3d_offline(lifter, kp, conf, size, fps, cam, h, floor)
            per_cam[name] = (full, floor)
            if floor and h is None and name == 'cam01':
                opensim_check(full, fps, 'balancing_cam01', os.path.join(ROOT, 'out', 'world'))
        stack = np.stack([per_cam[n][0] for n in names])          # (C, T, 17, 3)
        label = 'lifter scale' if h is None else f'subject height {h:.2f} m'
        print(f'real clip, {label}{", floor z=0" if floor else ""}: mm; vs triangulation '
              f'(root, all joints), vs the median of the other cameras (root, all), lower '
              f'foot joint above the floor (median)')
        rows = []
        for i, n in enumerate(names):
            others = np.nanmedian(np.delete(stack, i, axis=0), axis=0)
            d_o = np.linalg.norm(stack[i] - others, axis=-1)
            d_r = np.linalg.norm(stack[i] - ref, axis=-1)
            low = np.nanmin(stack[i][:, [W.RFOOT, W.LFOOT], 2], axis=1)
            row = (1000 * np.nanmean(d_r[:, 0]), 1000 * np.nanmean(d_r),
                   1000 * np.nanmean(d_o[:, 0]), 1000 * np.nanmean(d_o),
                   1000 * np.nanmedian(low))
            rows.append(row)
            print(f'  {n:7s} vs tri {row[0]:5.0f} {row[1]:5.0f}   vs others {row[2]:5.0f} '
                  f'{row[3]:5.0f}   foot {row[4]:5.0f}   floor cue offered {per_cam[n][1]}')
        m = np.mean(rows, axis=0)
        print(f'  {"mean":7s} vs tri {m[0]:5.0f} {m[1]:5.0f}   vs others {m[2]:5.0f} {m[3]:5.0f}'
              f'   foot {m[4]:5.0f}')
        results[h] = m
    return results


def opensim_check(world, fps, name, out_dir):
    """A world track exported as TRC (OpenSim's axes) and loaded with the opensim wheel as a
    marker table: marker ranges (metres) show whether it stands upright and moves."""
    from vp3d_ros.kinematics import require_opensim
    try:   # restores the LD_LIBRARY_PATH the wheel's import overwrites
        opensim = require_opensim()
    except ImportError:
        print('opensim not installed: no OpenSim check')
        return None
    from vp3d_ros.io.records import Track, write_world_trc
    from vp3d_ros.core.skeletons import H36M17
    os.makedirs(out_dir, exist_ok=True)
    ok = np.isfinite(world).all((1, 2))
    tr = Track(f'/{name}/skeleton_3d/world', 0, H36M17.joints, np.arange(len(world))[ok] / fps,
               world[ok], np.ones(world[ok].shape[:2]))
    path = write_world_trc(tr, os.path.join(out_dir, f'{name}_world.trc'))
    table = opensim.TimeSeriesTableVec3(str(path))

    def col(label):
        c = table.getDependentColumn(label)
        return np.array([[c[i].get(k) for k in range(3)] for i in range(c.size())])
    head, rf, lf, hip = col('Head'), col('RFoot'), col('LFoot'), col('Hip')
    print(f'OpenSim {name}: {table.getNumRows()} rows, {table.getNumColumns()} markers, '
          f'Units {table.getTableMetaDataAsString("Units")}, {path}')
    print(f'  Y (up): Head {head[:, 1].min():.2f}..{head[:, 1].max():.2f}, feet '
          f'{min(rf[:, 1].min(), lf[:, 1].min()):.2f}..{max(rf[:, 1].max(), lf[:, 1].max()):.2f}, '
          f'Hip {hip[:, 1].min():.2f}..{hip[:, 1].max():.2f}; Hip X {hip[:, 0].min():.2f}..'
          f'{hip[:, 0].max():.2f}, Z {hip[:, 2].min():.2f}..{hip[:, 2].max():.2f} (path '
          f'{np.linalg.norm(np.diff(hip, axis=0), axis=-1).sum():.2f} m)')
    return head, rf, lf, hip


def gravity_benchmark(lifter, max_frames):
    """No calibration, gravity alone (geometry.ground.estimate_up, on the plain lift placed
    through intrinsics only): held-out mocap over whole clips and over 150- and 60-frame
    windows (one every 150 frames), each S8 camera level and rolled 25 deg about its optical
    axis; the real clip's four cameras over their first 60 and 100 frames (MediaPipe 2D,
    focal guessed as vp3d-offline does). Error = angle to the calibration's up (degrees)."""
    import math
    from vp3d_ros.geometry.calibration import Camera, guessed_camera, rodrigues
    from vp3d_ros.geometry.ground import estimate_up

    def err(up, true_up):
        return float(np.degrees(np.arccos(np.clip(up @ true_up, -1, 1))))
    if os.path.isdir(MOCAP) and os.path.isfile(CAMERAS_JSON):
        errs = {'whole clip': [], '150 frames': [], '60 frames': []}
        with tempfile.TemporaryDirectory() as tmp:
            rig, _ = h36m_rig(tmp)
            for clip, gt in held_out_clips(max_frames):
                for name, cam in sorted(rig.items()):
                    for roll in (0.0, math.radians(25)):
                        Rz = rodrigues([0.0, 0.0, roll])       # about the optical axis
                        cam_r = Camera(name, cam.K, cam.dist, Rz @ cam.R, Rz @ cam.t, cam.size)
                        px = cam_r.project(gt)
                        raw = lifter.lift(cam_r.undistort_pixels(px), *cam_r.size)
                        intr = Camera(name, cam_r.K, cam_r.dist, size=cam_r.size)
                        p = W.place_skeletons(raw, px, intr, fps=clip.fps).poses_cam
                        true_up = cam_r.R @ np.array([0.0, 0.0, 1.0])
                        errs['whole clip'].append(err(estimate_up(p)[0], true_up))
                        for n in (150, 60):
                            errs[f'{n} frames'] += [err(estimate_up(p[i:i + n])[0], true_up)
                                                    for i in range(0, len(p) - n + 1, 150)]
        for k, v in errs.items():
            v = np.array(v)
            print(f'gravity, held-out mocap, {k:10s}: mean {v.mean():4.1f} deg, median '
                  f'{np.median(v):4.1f}, 90th percentile {np.percentile(v, 90):4.1f}, max '
                  f'{v.max():4.1f} ({len(v)})')
    if os.path.isdir(REAL):
        rig = load_calibration(os.path.join(REAL, 'Calib_qualisys.toml'))
        from vp3d_ros.geometry.calibration import find_camera
        for v in sorted(f for f in os.listdir(REAL) if f.endswith('.mp4')):
            kp, conf, fps, size = mediapipe_2d(os.path.join(REAL, v))
            true_up = find_camera(rig, v[:-4]).R @ np.array([0.0, 0.0, 1.0])
            guess = guessed_camera(*size)
            said = []
            for n in (60, 100):
                k = kp[:n][np.isfinite(kp[:n]).all((1, 2))]
                p = W.place_skeletons(lifter.lift(k, *size), k, guess, fps=fps).poses_cam
                said.append(f'first {n} frames {err(estimate_up(p)[0], true_up):4.1f} deg')
            print(f'gravity, real clip, {v[:-4]}: ' + ', '.join(said))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--max-frames', type=int, default=None,
                    help='frames per mocap clip (default: all)')
    ap.add_argument('--skip-real', action='store_true')
    ap.add_argument('--skip-mocap', action='store_true')
    ap.add_argument('--gravity-only', action='store_true',
                    help='only the no-calibration gravity estimate (part 3)')
    ap.add_argument('--lifter', default=None, metavar='CKPT',
                    help='symmetric lifter checkpoint (default: the shipped one)')
    a = ap.parse_args(argv)
    from vp3d_ros.core.lifter import SequenceLifter
    from vp3d_ros.core.lifter_config import resolve_lifter
    ck, layout = resolve_lifter(a.lifter, mode='symmetric')
    print(f'lifter: {ck.path}')
    lifter = SequenceLifter(ck.build(), layout)
    t0 = time.time()
    if a.gravity_only:
        gravity_benchmark(lifter, a.max_frames)
        return
    if not a.skip_mocap:
        if not os.path.isdir(MOCAP) or not os.path.isfile(CAMERAS_JSON):
            print('no ../shared mocap or cameras: skipping the mocap part')
        else:
            rows = mocap_benchmark(a.max_frames, lifter)
            summarise_mocap(rows)
            print(f'({time.time() - t0:.0f} s)')
    if not a.skip_real:
        if not os.path.isdir(REAL):
            print('no ../shared real clip: skipping')
        else:
            real_benchmark(lifter, floor=True)
            real_benchmark(lifter, floor=False)
    gravity_benchmark(lifter, a.max_frames)


if __name__ == '__main__':
    main()
