"""Person identities: identity switches per 100 frames, tracker (vp3d_ros.core.tracking) against
the detector's own output order, in the same run, and what a switch costs in 3D.

    python benchmarks/tracking.py [--data ../shared/data/mocap/h36m17] [--quick]
                                  [--picture docs/tracking.jpg]

1. Synthetic crossings from held-out motion capture (Human3.6M S8, never trained on; six
   actions, walking ones first, up to 1500 frames at 50 fps): both takes of an action play
   at once, the second mirrored in x (left/right joints swapped) and shifted 1.5 m in depth,
   so the two people move past each other; one camera. Two camera heights: "high" (3.2 m,
   pitched down: people pass apart in the picture) and "low" (1.2 m: the far person is
   hidden behind the near one while they overlap, and their detection is dropped, as a
   single-image detector loses an occluded person). 2D: exact projection + 1% of person
   height jitter, confidences U(0.6, 1), detections handed over in a random order.
   Baseline ("output order"): person id = rank by on-screen size, the order in which a
   detector lists the most prominent person first (what `person` was before tracking).
   Switches are also counted over the frames where the two are apart by more than a body
   width (shoulder width) in the picture (goal: 0 there). MPJPE per person after lifting
   (shipped symmetric model, root-relative, camera frame), against the person each 2D
   detection truly belongs to: windows that mix people lift worse.
2. Real footage: the bundled clip (one person balancing) beside its mirrored copy 37 frames
   later (600 x 480), one copy sliding sideways; the right person leaves for 40 frames (longer
   than the tracker waits: back as a new person "C2", who must get a new id) and the left
   one is hidden for 10 (a short occlusion: keeps the id); MediaPipe tasks backend,
   num_poses 4. Ground truth = the half of the picture a detection is in. Also: the same
   detections lifted (shipped symmetric model) in windows by output-order id and by track
   id, and the per-joint 3D difference between the two.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from common import REPO

from vp3d_ros.core.tracking import PeopleTracking  # noqa: E402

DATA = os.path.join(os.path.dirname(REPO), 'shared', 'data', 'mocap', 'h36m17', 'h36m_S8.npz')
W, H = 1280, 720
ACTIONS = ('walking', 'walkingtogether', 'walkingdog', 'directions', 'discussion', 'greeting')


# -- metrics ---------------------------------------------------------------------------------
def count_switches(frames, apart=None):
    """frames: per frame {true person: output id}. Identity switches as CLEAR-MOT counts
    them: a person's id differs from the one they had when last output (two people trading
    ids are two switches). -> (all, in frames where ``apart``)."""
    total = in_apart = 0
    last = {}
    for f, frame in enumerate(frames):
        for p, i in frame.items():
            s = int(p in last and last[p] != i)
            last[p] = i
            total += s
            in_apart += s if apart is not None and apart[f] else 0
    return total, in_apart


# -- synthetic -------------------------------------------------------------------------------
def look_at(eye, target, f=1000.0):
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    fwd = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    rot = np.stack([right, np.cross(fwd, right), fwd])

    def to_cam(x):
        return (x - eye) @ rot.T

    def project(c):
        return f * c[..., :2] / c[..., 2:] + [W / 2, H / 2]
    return to_cam, project


def scene(seq_a, seq_b, n, eye):
    """Two people (n, 17, 3) world -> camera coordinates and pixels, both (2, n, 17, .)."""
    a = seq_a[:n] - [*seq_a[:n, 0, :2].mean(0), 0]
    b = seq_b[:n] - [*seq_b[:n, 0, :2].mean(0), 0]
    # Mirrored (left and right joints swapped, so it is still a human body): they walk the
    # other way, 1.5 m further away.
    from vp3d_ros.core.skeletons import H36M17
    b = (b * [-1, 1, 1])[:, list(H36M17.flip_permutation())] + [0, 1.5, 0]
    centre = np.concatenate([a, b], 1)[:, 0].mean(0)
    to_cam, project = look_at(eye + [centre[0], centre[1], 0],
                              [centre[0], centre[1] + 0.75, 1.0])
    cam = to_cam(np.stack([a, b]))
    return cam, project(cam)


def detect(px, cam, rng, occlusion):
    """Per frame [(true person, kp, conf)] in a random order; with ``occlusion``, the far
    person is not detected while their box overlaps the near one's by > 30% of its area."""
    frames = []
    for f in range(px.shape[1]):
        boxes = [(px[p, f].min(0), px[p, f].max(0)) for p in range(2)]
        far = int(cam[1, f, 0, 2] > cam[0, f, 0, 2])
        lo = np.maximum(boxes[0][0], boxes[1][0])
        hi = np.minimum(boxes[0][1], boxes[1][1])
        inter = np.prod(np.clip(hi - lo, 0, None))
        hidden = occlusion and inter > 0.3 * np.prod(boxes[far][1] - boxes[far][0])
        dets = []
        for p in range(2):
            kp = px[p, f]
            if (hidden and p == far) or not np.all((kp > 0) & (kp < [W, H])):
                continue
            height = np.ptp(kp[:, 1])
            dets.append((p, kp + rng.normal(0, 0.01 * height, kp.shape),
                         rng.uniform(0.6, 1.0, 17)))
        rng.shuffle(dets)
        frames.append(dets)
    return frames


def apart_frames(px):
    """Frames where the two people's boxes are apart by more than a shoulder width."""
    width = np.minimum(*[np.linalg.norm(px[p, :, 11] - px[p, :, 14], axis=-1) for p in (0, 1)])
    lo = np.maximum(px[0].min(1), px[1].min(1))
    hi = np.minimum(px[0].max(1), px[1].max(1))
    gap = np.max(lo - hi, axis=1)  # > 0: separated along x or y by that much
    return gap > width


def order_ids(frames):
    """Baseline: id = rank by on-screen size (bounding-box diagonal), largest first."""
    out = []
    for dets in frames:
        size = [np.linalg.norm(np.ptp(kp, 0)) for _, kp, _ in dets]
        out.append({dets[k][0]: r for r, k in enumerate(np.argsort(size)[::-1])})
    return out


def tracked_ids(frames, fps):
    tracking = PeopleTracking()
    out = []
    for f, dets in enumerate(frames):
        kp = np.array([d[1] for d in dets]).reshape(len(dets), 17, 2)
        conf = np.array([d[2] for d in dets]).reshape(len(dets), 17)
        keep, ids = tracking.step(kp, conf, (W, H), f / fps)
        out.append({dets[k][0]: i for k, i in zip(keep, ids)})
    return out


def lifted_mpjpe(frames, assigned, cam, lifter, fps):
    """Lift every output id's track (live gap rules) -> MPJPE (mm) per true person against
    the person each detection belongs to, root-relative in the camera frame."""
    from vp3d_ros.apps.offline import Frame2D, lift_frames
    f2d = []
    for f, (dets, ids) in enumerate(zip(frames, assigned)):
        by_p = {p: (kp, c) for p, kp, c in dets}
        f2d.append(Frame2D(int(round(f * 1e9 / fps)), 'cam', (W, H),
                           {i: by_p[p] for p, i in ids.items()}))
    owner = [{i: p for p, i in ids.items()} for ids in assigned]
    poses = lift_frames(f2d, lifter)
    err = {0: [], 1: []}
    for f, fr in enumerate(f2d):
        for i, lp in poses.get(fr.stamp_ns, {}).items():
            if lp.bridged or i not in owner[f]:
                continue
            p = owner[f][i]
            gt = cam[p, f] - cam[p, f, :1]
            err[p].append(1000 * np.linalg.norm(lp.pose - lp.pose[:1] - gt, axis=-1).mean())
    return [float(np.mean(err[p])) if err[p] else float('nan') for p in (0, 1)]


def synthetic(data, quick, lifter):
    d = np.load(data, allow_pickle=True)
    fps = float(d['fps'])
    rng = np.random.default_rng(0)
    rows = []
    actions = ACTIONS[:2] if quick else ACTIONS
    for view, eye, occl in (('high', np.array([0.0, -6.0, 3.2]), False),
                            ('low', np.array([0.0, -6.0, 1.2]), True)):
        acc = {k: [0, 0, 0, 0] for k in ('order', 'tracker')}  # switches, apart sw, frames, apart
        mp = {k: [] for k in acc}
        for action in actions:
            a, b = d[f'{action}_1'], d[f'{action}_2']
            n = min(len(a), len(b), 600 if quick else 1500)
            cam, px = scene(a, b, n, eye)
            frames = detect(px, cam, rng, occl)
            apart = apart_frames(px)
            for name, assigned in (('order', order_ids(frames)),
                                   ('tracker', tracked_ids(frames, fps))):
                s, sa = count_switches(assigned, apart)
                acc[name] = [acc[name][0] + s, acc[name][1] + sa, acc[name][2] + n,
                             acc[name][3] + int(apart.sum())]
                if lifter is not None:
                    mp[name].append(lifted_mpjpe(frames, assigned, cam, lifter, fps))
        for name, (s, sa, n, na) in acc.items():
            m = np.nanmean(np.array(mp[name]), axis=0) if mp[name] else [np.nan] * 2
            rows.append((view, name, n, 100 * s / n, 100 * sa / max(na, 1), na, m))
    return rows


# -- real footage ----------------------------------------------------------------------------
def assemble(frames, n, slot_w=270, h=480, gap=60):
    """n composite frames (600 x 480: two 270-px slots 60 px apart; MediaPipe's detector
    needs people that fill most of the picture's height) of two copies of the clip, and per
    frame {person: slot}. A (left, sliding +-20 px) is hidden for 10 frames from 2n/3 (a
    short occlusion: keeps the id); C (right, mirrored, 37 frames later) leaves at n/3 for
    40 frames and comes back as "C2" (gone longer than the tracker waits: a new id)."""
    import cv2
    src = [cv2.resize(f, (slot_w, h), interpolation=cv2.INTER_AREA) for f in frames]
    m = len(src)
    out, where = [], []
    for i in range(n):
        canvas = np.full((h, 2 * slot_w + gap, 3), 110, np.uint8)
        layout = []
        if not 2 * n // 3 <= i < 2 * n // 3 + 10:
            layout.append(('A', 0, 20 + int(20 * np.sin(i / 15)), src[i % m]))
        if i < n // 3 or i >= n // 3 + 40:
            layout.append(('C' if i < n // 3 else 'C2', 1, 0, src[(i + 37) % m][:, ::-1]))
        for name, slot, dx, img in layout:
            x0 = slot * (slot_w + gap) + max(0, dx - 20)
            canvas[:, x0:x0 + slot_w] = img
        out.append(canvas)
        where.append({name: slot for name, slot, _, _ in layout})
    return out, where


def real(task_file, n, picture=None, lifter=None):
    import cv2
    from common import clip_frames
    from vp3d_ros.core.keypoint_mapping import map_mediapipe
    from vp3d_ros.apps.offline import Frame2D, lift_frames
    from vp3d_ros.vision.pose_estimation import create_estimator
    frames, where = assemble([cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in clip_frames()], n)
    tracking = PeopleTracking()
    order, tracked, shots, f2d = [], [], [], {'order': [], 'tracker': []}
    t0 = time.perf_counter()
    with create_estimator('tasks', task_file=task_file, num_poses=4) as est:
        for i, bgr in enumerate(frames):
            people = est.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), int(i * 1000 / 60))
            lm = np.array([p.landmarks_px for p in people]).reshape(-1, 33, 2)
            vis = np.array([p.visibility for p in people]).reshape(-1, 33)
            kp, conf = map_mediapipe(lm, vis, 'h36m')
            slot_of = {s: name for name, s in where[i].items()}
            truth = [slot_of.get(int(k[0, 0] > bgr.shape[1] / 2)) for k in kp]
            order.append({t: k for k, t in enumerate(truth) if t is not None})
            keep, ids = tracking.step(kp, conf, (bgr.shape[1], bgr.shape[0]), i / 60)
            tracked.append({truth[k]: pid for k, pid in zip(keep, ids) if truth[k] is not None})
            size, ns = (bgr.shape[1], bgr.shape[0]), int(round(i * 1e9 / 60))
            f2d['order'].append(Frame2D(ns, 'cam', size, {
                k: (kp[k], conf[k]) for k in range(len(kp)) if truth[k] is not None}))
            f2d['tracker'].append(Frame2D(ns, 'cam', size, {
                pid: (kp[k], conf[k]) for k, pid in zip(keep, ids) if truth[k] is not None}))
            if picture and i in (n // 3 - 5, n - 5):
                shots.append(draw(bgr.copy(), kp[keep], ids, i))
    dt = time.perf_counter() - t0
    if picture and shots:
        cv2.imwrite(picture, np.concatenate(shots, 0), [cv2.IMWRITE_JPEG_QUALITY, 80])
    diff = None
    if lifter is not None:  # the same detections lifted in windows by each kind of id
        poses = {name: lift_frames(fr, lifter) for name, fr in f2d.items()}
        by = {name: [{p: poses[name].get(fr.stamp_ns, {}).get(i) for p, i in ids.items()}
                     for fr, ids in zip(f2d[name], assigned)]
              for name, assigned in (('order', order), ('tracker', tracked))}
        d = []
        for a, b in zip(by['order'], by['tracker']):
            for p, lp in a.items():
                if lp is not None and b.get(p) is not None:
                    d.extend(1000 * np.linalg.norm((lp.pose - lp.pose[:1])
                                                   - (b[p].pose - b[p].pose[:1]), axis=-1))
        diff = (float(np.median(d)), float(np.percentile(d, 90))) if d else None
    return order, tracked, tracking.tracker.counts, n / dt, diff


COLOURS = [(60, 76, 231), (113, 204, 46), (219, 152, 52), (15, 196, 241), (182, 89, 155)]


def draw(bgr, kp, ids, frame):
    import cv2
    from vp3d_ros.core.skeletons import H36M17
    for pts, pid in zip(kp, ids):
        c = COLOURS[pid % len(COLOURS)]
        for a, b in H36M17.bones:
            cv2.line(bgr, tuple(int(v) for v in pts[a]), tuple(int(v) for v in pts[b]), c, 3,
                     cv2.LINE_AA)
        x, y = pts[10]
        cv2.putText(bgr, f'id {pid}', (int(x) - 30, max(20, int(y) - 20)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.8, c, 2, cv2.LINE_AA)
    cv2.putText(bgr, f'frame {frame}', (10, 470), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (255, 255, 255), 1, cv2.LINE_AA)
    return bgr


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=DATA, help='H36M S8 .npz (held-out mocap)')
    ap.add_argument('--quick', action='store_true', help='2 actions, 600 frames, 150 real')
    ap.add_argument('--no-lift', action='store_true', help='skip MPJPE after lifting')
    ap.add_argument('--frames', type=int, default=None, help='real footage frames (300)')
    ap.add_argument('--picture', default=None, help='write persons coloured by track id here')
    a = ap.parse_args(argv)

    lifter = None
    if not a.no_lift:
        import torch
        torch.set_num_threads(1)
        from vp3d_ros.core.lifter import SequenceLifter
        from vp3d_ros.core.lifter_config import resolve_lifter
        ckpt, layout = resolve_lifter(None, mode='symmetric')
        lifter = SequenceLifter(ckpt.build('cpu'), input_layout=layout)
    if os.path.isfile(a.data):
        print('Synthetic crossings (H36M S8, two takes, one camera); switches per 100 frames')
        print(f'{"camera":7s}{"ids":9s}{"frames":>7s}{"switches":>10s}{"apart":>8s}'
              f'{"(frames)":>9s}{"MPJPE A":>9s}{"MPJPE B":>9s}')
        for view, name, n, s, sa, na, m in synthetic(a.data, a.quick, lifter):
            print(f'{view:7s}{name:9s}{n:7d}{s:10.2f}{sa:8.2f}{na:9d}{m[0]:9.1f}{m[1]:9.1f}')
    else:
        print(f'{a.data} not found: synthetic crossings skipped')

    from vp3d_ros.vision.pose_task_bundle import build_pose_task
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        task = str(build_pose_task(os.path.join(tmp, 'pose_landmarker_full.task')))
        n = a.frames or (150 if a.quick else 300)
        order, tracked, counts, fps, diff = real(task, n, a.picture, lifter)
    print(f'\nReal footage: bundled clip x2 side by side (600x480), MediaPipe tasks '
          f'num_poses=4, {n} frames ({fps:.1f} frames/s incl. tracking)')
    for name, assigned in (('output order', order), ('tracker', tracked)):
        s, _ = count_switches(assigned)
        ids = {}
        for fr in assigned:
            for p, i in fr.items():
                ids.setdefault(p, set()).add(i)
        print(f'  {name:13s} switches per 100 frames {100 * s / n:6.2f}; ids per person '
              + ', '.join(f'{p}: {sorted(v)}' for p, v in sorted(ids.items())))
    print(f'  tracker lifecycle: {counts}')
    if diff:
        print(f'  3D (shipped symmetric lifter) of the same detections, windows by output order '
              f'vs by track: per-joint difference median {diff[0]:.0f} mm, 90th percentile '
              f'{diff[1]:.0f} mm')
    if a.picture:
        print(f'  picture: {a.picture}')


if __name__ == '__main__':
    sys.exit(main())
