"""Multi-view fusion (vp3d_ros.geometry.fusion, vp3d-fuse) on a generated rig: four distorted
cameras around a moving synthetic body, ground truth known."""
import subprocess
import sys

import numpy as np
import pytest

from vp3d_ros.geometry import fusion as F
from vp3d_ros.geometry.calibration import Camera, save_calibration_toml

FPS = 50.0


def _look_at(centre, target):
    z = target - centre
    z = z / np.linalg.norm(z)
    x = np.cross(z, [0, 0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ centre


@pytest.fixture(scope='module')
def rig():
    cams = []
    for i, (deg, dist) in enumerate([(10, 4.0), (100, 3.5), (190, 5.0), (280, 4.5)]):
        a = np.deg2rad(deg)
        C = np.array([dist * np.cos(a), dist * np.sin(a), 1.4 + 0.4 * i])
        R, t = _look_at(C, np.array([0.2, -0.1, 1.0]))
        # strong barrel distortion: ignoring it would cost centimetres
        cams.append(Camera(f'cam_0{i + 1}', [[1000 + 50 * i, 0, 960], [0, 1000 + 50 * i, 540],
                                              [0, 0, 1]],
                           [-0.25, 0.08, 0.001, -0.0005, 0.0], R, t, (1920, 1080)))
    return cams


@pytest.fixture(scope='module')
def motion():
    """(T, 17, 3): a body whose joints sway (0.2-1 Hz, up to 15 cm) while it walks about."""
    rng = np.random.default_rng(3)
    T = 150
    t = np.arange(T) / FPS
    base = rng.normal(0, 0.25, (17, 3)) + [0.2, -0.1, 1.0]
    amp = rng.uniform(0.02, 0.15, (17, 3))
    freq = rng.uniform(0.2, 1.0, (17, 3))
    phase = rng.uniform(0, 2 * np.pi, (17, 3))
    walk = np.stack([0.4 * np.sin(0.5 * t), 0.3 * np.cos(0.4 * t), 0 * t], -1)
    return base + amp * np.sin(2 * np.pi * freq * t[:, None, None] + phase) + walk[:, None]


def _project(rig, X):
    return np.stack([c.project(X) for c in rig])


def _mm(a, b):
    return 1000 * np.nanmean(np.linalg.norm(a - b, axis=-1))


def test_triangulation_recovers_points_through_distortion(rig, motion):
    px = _project(rig, motion)
    X = F.triangulate(rig, px)
    assert np.abs(X - motion).max() < 1e-6
    # the same pixels read as if undistorted give a visibly wrong answer: distortion matters
    pinhole = [Camera(c.name, c.K, [], c.R, c.t, c.size) for c in rig]
    assert _mm(F.triangulate(pinhole, px), motion) > 2
    # any two cameras suffice; one does not
    assert np.abs(F.triangulate(rig[1:3], px[1:3]) - motion).max() < 1e-6
    assert np.isnan(F.triangulate(rig[:1], px[:1])).all()


def test_not_seen_means_nan_or_confidence_zero(rig, motion):
    px = _project(rig, motion)
    kp = np.concatenate([px, np.ones(px.shape[:-1] + (1,))], -1)
    kp[0, :, 3, :2] = np.nan          # camera 1 lost joint 3
    kp[1, :, 3, 2] = 0.0              # camera 2 saw it with confidence 0
    kp[2, :, 3, :2] += 500.0          # garbage that must not matter once the others fail
    kp[2, :, 3, 2] = 0.0
    tri = F.robust_triangulate(rig, kp)
    assert tri.seen[:, :, 3].sum(0).max() == 1 and np.isnan(tri.points[:, 3]).all()
    assert tri.views[:, 3].max() == 0
    assert (tri.views[:, 0] == 4).all()
    assert np.abs(tri.points[:, 0] - motion[:, 0]).max() < 1e-6


def test_outlier_view_is_rejected(rig, motion):
    rng = np.random.default_rng(0)
    px = _project(rig, motion) + rng.normal(0, 1.0, (4,) + motion.shape[:2] + (2,))
    bad = px.copy()
    bad[2, :, 5] += [90.0, -60.0]     # camera 3 mistakes joint 5 (a swap, a reflection...)
    plain = F.triangulate(rig, bad, weighted=False)
    tri = F.robust_triangulate(rig, bad, threshold_px=15)
    assert _mm(plain[:, 5], motion[:, 5]) > 40
    assert _mm(tri.points[:, 5], motion[:, 5]) < 10
    assert not tri.used[2, :, 5].any() and tri.used[[0, 1, 3], :, 5].all()
    # the clean joints keep all four views
    assert tri.used[:, :, :5].all()
    assert np.nanmax(tri.error_px[:, 5]) < 15


def test_confidence_weighting(rig, motion):
    rng = np.random.default_rng(1)
    px = _project(rig, motion)
    noisy = px.copy()
    noisy[0] += rng.normal(0, 12.0, noisy[0].shape)   # one camera is poor (and says so)
    for c in (1, 2, 3):
        noisy[c] += rng.normal(0, 1.0, noisy[c].shape)
    conf = np.ones(px.shape[:-1])
    conf[0] = 0.05
    weighted = F.triangulate(rig, noisy, conf)
    equal = F.triangulate(rig, noisy, np.ones_like(conf))
    assert _mm(weighted, motion) < 0.6 * _mm(equal, motion)


def test_dropped_joints_filled_and_smoothed(rig, motion):
    rng = np.random.default_rng(2)
    px = _project(rig, motion) + rng.normal(0, 3.0, (4,) + motion.shape[:2] + (2,))
    px[rng.random(px.shape[:-1]) < 0.3] = np.nan     # 30 % of detections dropped
    px[1:, 60:70, 12] = np.nan                        # joint 12 seen by one camera for 10 frames
    plain = F.triangulate(rig, px, weighted=False)
    fused = F.fuse_sequence(rig, px, FPS)
    lost = np.isnan(plain).any(-1)
    assert lost.sum() > 100 and lost[60:70, 12].all()
    assert np.isfinite(fused.points).all()
    assert fused.filled[lost].all() and not fused.filled[~lost].any()
    assert _mm(fused.points[lost], motion[lost]) < 30
    assert _mm(fused.points, motion) < 0.8 * _mm(plain, motion)
    live = F.fuse_causal(rig, px, FPS)
    assert np.isfinite(live[5:]).all()
    both = ~lost
    both[:5] = False
    assert _mm(live[both], motion[both]) < _mm(plain[both], motion[both])
    gone = lost.copy()
    gone[:5] = False
    assert _mm(live[gone], motion[gone]) < 40


def test_lifted_prior_fills_long_gap(rig, motion):
    """A joint seen by one camera for a second: interpolation alone drifts, the lifted
    skeletons (root-relative, camera frame) rotated into the world follow it."""
    rng = np.random.default_rng(4)
    px = _project(rig, motion) + rng.normal(0, 2.0, (4,) + motion.shape[:2] + (2,))
    px[1:, 40:100, 13] = np.nan
    root = motion[:, :1]
    lifted = [c.to_camera(motion) - c.to_camera(root) for c in rig]
    lifted = [p * 1.1 + rng.normal(0, 0.01, p.shape) for p in lifted]   # wrong scale, noisy
    cfg = F.FusionConfig(max_gap_s=10.0)
    interp = F.fuse_sequence(rig, px, FPS, config=cfg)
    prior = F.fuse_sequence(rig, px, FPS, lifted=lifted, config=cfg)
    gap = slice(40, 100)
    assert _mm(prior.points[gap, 13], motion[gap, 13]) < 25
    assert _mm(prior.points[gap, 13], motion[gap, 13]) < 0.5 * _mm(interp.points[gap, 13],
                                                                   motion[gap, 13])
    # live: the lifted prior keeps the joint going after hold_s
    live = F.fuse_causal(rig, px, FPS, lifted)
    assert np.isfinite(live[gap, 13]).all()
    assert _mm(live[gap, 13], motion[gap, 13]) < 40


def test_causal_filter_is_causal(rig, motion):
    px = _project(rig, motion)
    a = F.fuse_causal(rig, px, FPS)
    changed = px.copy()
    changed[:, 100:] += 40.0
    b = F.fuse_causal(rig, changed, FPS)
    np.testing.assert_array_equal(a[:100], b[:100])
    assert not np.allclose(a[100:], b[100:])


def _cli(*args):
    return subprocess.run([sys.executable, '-m', 'vp3d_ros.cli.fuse', *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_contract(rig, motion, tmp_path):
    calib = save_calibration_toml({c.name: c for c in rig}, tmp_path / 'calib.toml')
    rng = np.random.default_rng(5)
    px = _project(rig, motion) + rng.normal(0, 2.0, (4,) + motion.shape[:2] + (2,))
    files = []
    for i, c in enumerate(rig):
        kp = px[i]
        if i % 2:   # (T, 17, 3) with confidence, some not seen
            conf = rng.uniform(0.3, 1.0, kp.shape[:2])
            conf[rng.random(conf.shape) < 0.1] = 0.0
            kp = np.concatenate([kp, conf[..., None]], -1)
        else:
            kp = kp.copy()
            kp[rng.random(kp.shape[:2]) < 0.1] = np.nan
        f = tmp_path / f'kp{i + 1}.npy'
        np.save(f, kp.astype(np.float32))
        files.append(f'cam{i + 1:02d}={f}')    # cam01 names cam_01
    out = tmp_path / 'out.npy'
    r = _cli('--calibration', calib, '--keypoints', *files, '--fps', FPS, '--out', out)
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    assert got.shape == motion.shape and got.dtype == np.float64
    assert np.isfinite(got).all()
    assert _mm(got, motion) < 15

    # errors say what is wrong
    r = _cli('--calibration', calib, '--keypoints', f'cam09={tmp_path / "kp1.npy"}',
             files[1], '--out', out)
    assert r.returncode == 2 and "no camera 'cam09'" in r.stderr
    np.save(tmp_path / 'short.npy', px[1, :10])
    r = _cli('--calibration', calib, '--keypoints', files[0], f'cam02={tmp_path / "short.npy"}',
             '--out', out)
    assert r.returncode == 2 and 'differ in length' in r.stderr
    np.save(tmp_path / 'bad.npy', np.zeros((150, 15, 2)))
    r = _cli('--calibration', calib, '--keypoints', files[0], f'cam02={tmp_path / "bad.npy"}',
             '--out', out)
    assert r.returncode == 2 and '(T, 17, 2) or (T, 17, 3)' in r.stderr
    r = _cli('--calibration', calib, '--keypoints', files[0], '--out', out)
    assert r.returncode == 2 and 'at least two cameras' in r.stderr


def test_cli_lost_joint_is_nan(rig, motion, tmp_path):
    calib = save_calibration_toml({c.name: c for c in rig}, tmp_path / 'calib.toml')
    px = _project(rig, motion)
    px[1:, :, 7] = np.nan      # joint 7 only ever seen by one camera
    files = []
    for i in range(4):
        np.save(tmp_path / f'k{i}.npy', px[i])
        files.append(f'cam_0{i + 1}={tmp_path / f"k{i}.npy"}')
    out = tmp_path / 'out.npy'
    r = _cli('--calibration', calib, '--keypoints', *files, '--out', out)
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    assert np.isnan(got[:, 7]).all()
    assert np.abs(np.delete(got, 7, 1) - np.delete(motion, 7, 1)).max() < 0.01


def test_instant_grouping():
    from vp3d_ros.core.instants import InstantGrouper
    ms = 1_000_000
    g = InstantGrouper(['a', 'b', 'c'], tolerance_s=0.010, max_wait_s=0.1)
    assert g.add('a', 1000 * ms, 'a0', 0.0) == []
    assert g.add('b', 1004 * ms, 'b0', 0.01) == []
    out = g.add('c', 997 * ms, 'c0', 0.02)               # complete: out at once
    assert len(out) == 1 and out[0].frames == {'a': 'a0', 'b': 'b0', 'c': 'c0'}
    assert out[0].stamp_ns == round((1000 + 1004 + 997) / 3 * ms)
    # c is late for the next instant: a newer complete instant releases it without c
    assert g.add('a', 1033 * ms, 'a1', 0.05) == []
    assert g.add('b', 1034 * ms, 'b1', 0.05) == []
    assert g.add('a', 1066 * ms, 'a2', 0.08) == []
    assert g.add('b', 1067 * ms, 'b2', 0.08) == []
    out = g.add('c', 1066 * ms, 'c2', 0.09)
    assert [sorted(i.frames) for i in out] == [['a', 'b'], ['a', 'b', 'c']]
    assert g.add('c', 1033 * ms, 'c1', 0.1) == [] and g.late == 1     # its instant has gone
    # a camera gone quiet: the instant waits max_wait_s, then goes with what it has
    assert g.add('a', 1100 * ms, 'a3', 1.0) == []
    assert g.poll(1.05) == []
    out = g.poll(1.11)
    assert len(out) == 1 and list(out[0].frames) == ['a']


def test_association_across_cameras(rig, motion):
    a, b = motion[0], motion[0] + [1.2, 0.4, 0.0]
    people = []
    for i, c in enumerate(rig):
        ids = (7, 3) if i % 2 else (3, 7)
        d = {ids[0]: c.project(a), ids[1]: c.project(b)}
        if i == 3:
            d = {ids[0]: d[ids[0]]}               # camera 4 sees only the first person
        people.append(d)
    groups = F.associate(rig, people)
    assert sorted(map(sorted, (g.items() for g in groups))) == sorted([
        [(0, 3), (1, 7), (2, 3), (3, 7)], [(0, 7), (1, 3), (2, 7)]])


def test_one_camera_left_places_lifted_skeleton(rig, motion):
    """Three cameras lose the person for the last 0.6 s: nothing can be triangulated and no
    later frame anchors an interpolation; the remaining camera's lifted skeleton is placed on
    its rays (depth from the skeleton's size, its bias learnt while triangulated)."""
    rng = np.random.default_rng(6)
    px = _project(rig, motion) + rng.normal(0, 1.0, (4,) + motion.shape[:2] + (2,))
    gap = slice(120, 150)
    px[1:, gap] = np.nan
    lifted = [None] * 4
    rel = rig[0].to_camera(motion) - rig[0].to_camera(motion[:, :1])
    lifted[0] = rel * 0.95 + rng.normal(0, 0.005, rel.shape)
    plain = F.triangulate(rig, px, weighted=False)
    assert np.isnan(plain[gap]).all()
    # the placement alone: exact relative skeleton, exact rays -> exact position
    T = F.place_on_rays(rig[:1], _project(rig[:1], motion), np.ones((1,) + motion.shape[:2]),
                        motion - motion[:, :1])
    assert np.abs(T - motion[:, 0]).max() < 1e-6
    off = F.fuse_sequence(rig, px, FPS, lifted, F.FusionConfig(max_gap_s=0.1))
    assert np.isfinite(off.points).all() and off.filled[gap].all()
    assert _mm(off.points[gap], motion[gap]) < 60
    live = F.fuse_causal(rig, px, FPS, lifted)
    assert np.isfinite(live[gap]).all()
    assert _mm(live[gap], motion[gap]) < 60


def test_offline_several_videos_fused(tmp_path):
    """vp3d-offline on the bundled 4-camera clip (real MediaPipe) with its calibration: the bag
    holds /skeleton_3d/fused, a world track upright on the floor, exported to OpenSim TRC."""
    from pathlib import Path
    from vp3d_ros.io.records import is_world_track, read_landmark_tracks
    data = Path(__file__).resolve().parent.parent / 'vp3d_ros' / 'data'
    videos = [data / f'balancing_cam0{i}.mp4' for i in range(1, 5)]
    calib = data / 'balancing_calib_qualisys.toml'
    if not all(p.is_file() for p in videos + [calib]):
        pytest.skip('bundled 4-camera clip missing')
    bag = tmp_path / 'bag'
    r = subprocess.run([sys.executable, '-m', 'vp3d_ros.cli.offline', *map(str, videos),
                        '--calibration', str(calib), '--max-frames', '8', '--out', str(bag),
                        '--no-progress'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    from vp3d_ros.io.bag_io import open_bag
    with open_bag(bag) as b:
        params = b.metadata['vp3d.parameters']['vp3d-offline']
        assert params['level_view'] == {f'cam0{i}': 'calibration' for i in range(1, 5)}
        assert params['refit_limbs'] is True
    fused = [t for t in read_landmark_tracks(bag) if t.topic == '/skeleton_3d/fused']
    assert len(fused) == 1 and is_world_track(fused[0])
    P = fused[0].positions
    assert P.shape == (8, 17, 3) and np.isfinite(P).all()
    assert (P[:, 10, 2] > P[:, 0, 2] + 0.4).all()                # head above hip, z up
    assert (P[:, [3, 6], 2].min(1) < 0.3).all() and (P[:, [3, 6], 2].min(1) > -0.1).all()
    # the per-camera world tracks agree with the fused one to within their own error
    for cam in ('cam01', 'cam03'):
        w = [t for t in read_landmark_tracks(bag) if t.topic == f'/{cam}/skeleton_3d/world'][0]
        assert np.linalg.norm(w.positions[:, 0] - P[:, 0], axis=-1).mean() < 0.4
        # limbs refit to the 2D (geometry.limbs): one length per shin over the track
        shin = np.linalg.norm(w.positions[:, [3, 6]] - w.positions[:, [2, 5]], axis=-1)
        assert (shin.std(0) < 0.001 * shin.mean(0)).all(), shin   # lifter alone: 0.2-0.7 %
    # bad combinations are refused
    r = subprocess.run([sys.executable, '-m', 'vp3d_ros.cli.offline', str(videos[0]),
                        str(videos[0]), '--out', str(tmp_path / 'x')],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'each camera needs its own' in r.stderr


def test_fusion_demo_runs(tmp_path):
    """make demo-fusion's module on the first frames of the bundled clip (real MediaPipe,
    the shipped lifter): fused track, per-camera 2D that vp3d-fuse reads, and the picture."""
    import cv2
    out = tmp_path / 'demo'
    r = subprocess.run([sys.executable, '-m', 'vp3d_ros.apps.fusion_demo', '--out', str(out),
                        '--max-frames', '16', '--columns', '2'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    fused = np.load(out / 'fused.npy')
    assert fused.shape == (16, 17, 3) and np.isfinite(fused).all()
    assert 'bone-length CV' in r.stdout and 'fusion' in r.stdout
    img = cv2.imread(str(out / 'fusion_strip.png'))
    assert img is not None and img.shape[0] > 400 and img.std() > 10
    # the saved 2D goes through the CLI contract to the same kind of track
    from vp3d_ros.apps.fusion_demo import CALIB
    kps = [f'cam0{i}={out / f"keypoints_cam0{i}.npy"}' for i in range(1, 5)]
    r = _cli('--calibration', CALIB, '--keypoints', *kps, '--fps', 60, '--out', out / 'cli.npy')
    assert r.returncode == 0, r.stderr
    cli = np.load(out / 'cli.npy')
    assert cli.shape == (16, 17, 3) and np.isfinite(cli).all()
    assert np.linalg.norm(cli - fused, axis=-1).mean() < 0.05   # demo adds the lifted prior only


def test_cli_lifted_fills_lost_joint(rig, motion, tmp_path):
    """--lifted NAME=POSES.npy (camera frame, root-relative, e.g. from vp3d-lift) recovers the
    joint no two cameras see, which comes back NaN without it."""
    calib = save_calibration_toml({c.name: c for c in rig}, tmp_path / 'calib.toml')
    px = _project(rig, motion)
    px[1:, :, 7] = np.nan
    files = []
    for i in range(4):
        np.save(tmp_path / f'k{i}.npy', px[i])
        files.append(f'cam_0{i + 1}={tmp_path / f"k{i}.npy"}')
    rel = rig[0].to_camera(motion) - rig[0].to_camera(motion[:, :1])
    np.save(tmp_path / 'lifted1.npy', rel)
    out = tmp_path / 'out.npy'
    r = _cli('--calibration', calib, '--keypoints', *files, '--lifted',
             f'cam01={tmp_path / "lifted1.npy"}', '--out', out)
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    assert np.isfinite(got).all()
    assert np.linalg.norm(got[:, 7] - motion[:, 7], axis=-1).mean() < 0.01
    np.save(tmp_path / 'short.npy', rel[:5])
    r = _cli('--calibration', calib, '--keypoints', *files, '--lifted',
             f'cam01={tmp_path / "short.npy"}', '--out', out)
    assert r.returncode == 2 and 'frames' in r.stderr


def test_fused_people_keep_their_ids_and_forget_the_gone(rig, motion):
    """Live fusion of two people (geometry.people.FusedPeople, the fusion node's engine):
    per-camera ids that differ and change order, one id per fused person throughout; a
    person gone for longer than the timeout comes back under a new id; the offline rule
    (PersonLinker alone) gives the same ids."""
    from vp3d_ros.geometry.people import FusedPeople, PersonLinker, group_root
    a, b = motion[:60], motion[:60] + [1.2, 0.4, 0.0]
    fp = FusedPeople(timeout_s=0.2)
    linker = PersonLinker(timeout_s=0.2)
    seen = {0: [], 1: []}
    offline = {0: [], 1: []}
    for i in range(60):
        t = i / FPS                        # person b out of view for 0.3 s: 20 <= i < 35
        people = []
        for c, cam in enumerate(rig):
            ids = (10 + c, 20 - c) if (i + c) % 2 else (20 - c, 10 + c)
            d = {ids[0]: np.concatenate([cam.project(a[i]), np.ones((17, 1))], -1)}
            if not 20 <= i < 35:
                d[ids[1]] = np.concatenate([cam.project(b[i]), np.ones((17, 1))], -1)
            people.append(d)
        out = fp.step(rig, people, t)
        assert len(out) == (1 if 20 <= i < 35 else 2)
        for p in out:
            k = int(np.argmin([np.linalg.norm(p.frame.points - x[i], axis=-1).mean()
                               for x in (a, b)]))
            seen[k].append(p.pid)
            assert np.all(p.confidence == 1.0)           # every joint in all four cameras
        linker.expire(t)
        groups = F.associate(rig, people)
        taken = set()
        for g in groups:
            kp = np.stack([people[c][pid] for c, pid in sorted(g.items())])
            root = group_root([rig[c] for c in sorted(g)], kp)
            pid = linker.link(root, t, taken, len(groups) == 1)
            linker.seen(pid, root, t)
            taken.add(pid)
            k = int(np.argmin([np.linalg.norm(root - x[i, 0]) for x in (a, b)]))
            offline[k].append(pid)
    assert set(seen[0]) == {seen[0][0]}                  # a: one id throughout
    assert seen[1][:20] == [seen[1][0]] * 20             # b: one id before it left,
    assert set(seen[1][20:]) == {seen[1][20]} and seen[1][20] not in (seen[1][0], seen[0][0])
    assert len(fp) == 2 and offline == seen              # ... a new one after; same offline
