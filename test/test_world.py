"""World-frame skeletons (vp3d_ros.geometry.world, vp3d-lift --frame world): a skeleton placed
in a known world, seen through a known calibrated camera with distortion, must come back."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vp3d_ros.io.bag_io import open_bag
from vp3d_ros.geometry import world as W
from vp3d_ros.geometry.ground import estimate_ground
from vp3d_ros.geometry.calibration import Camera, load_calibration, save_calibration_toml, rodrigues

# H36M-17 standing template, z-up world, facing +x (metres): Hip at 0.95 m.
TEMPLATE = np.array([
    [0, 0, 0.95], [0, -0.12, 0.93], [0.02, -0.13, 0.52], [0, -0.13, 0.08],
    [0, 0.12, 0.93], [0.02, 0.13, 0.52], [0, 0.13, 0.08], [0, 0, 1.18], [0, 0, 1.42],
    [0.05, 0, 1.55], [0.02, 0, 1.68], [0, 0.18, 1.42], [0, 0.2, 1.15], [0.05, 0.2, 0.9],
    [0, -0.18, 1.42], [0, -0.2, 1.15], [0.05, -0.2, 0.9]])


def walking_track(T=120, fps=50.0):
    """A subject walking a curve on the floor (feet stay at ~8 cm), turning, arms swinging
    about the shoulders (rigid, as geometry.limbs expects of a person)."""
    t = np.arange(T) / fps
    out = np.empty((T, 17, 3))
    for i, s in enumerate(t):
        yaw = 0.4 * s
        c, sn = math.cos(yaw), math.sin(yaw)
        Rz = np.array([[c, -sn, 0], [sn, c, 0], [0, 0, 1]])
        p = TEMPLATE.copy()
        swing = 0.3 * math.sin(2 * math.pi * 1.0 * s)           # radians about y
        for sh, sign in ((11, 1.0), (14, -1.0)):
            a = sign * swing
            Ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0],
                           [-math.sin(a), 0, math.cos(a)]])
            p[sh + 1:sh + 3] = (p[sh + 1:sh + 3] - p[sh]) @ Ry.T + p[sh]
        out[i] = p @ Rz.T + np.array([0.8 * s, 0.3 * math.sin(s), 0.0])
    return out


def lab_camera(dist=True):
    """A camera 4 m away, 2.2 m high, looking down at the subject (~20 degrees), distorted."""
    C = np.array([4.0, -1.0, 2.2])
    fwd = np.array([0.4, 0.0, 1.0]) - C
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    R = rodrigues([0, 0, 0.03]) @ np.stack([right, down, fwd])   # slight roll
    K = [[1400.0, 0, 960.0], [0, 1400.0, 540.0], [0, 0, 1]]
    d = [-0.12, 0.05, 0.001, -0.0005, 0.0] if dist else []
    return Camera('cam_01', K, d, R, -R @ C, (1920, 1080))


def camera_frame(track, cam):
    x = cam.to_camera(track)
    return x, x - x[:, :1]


def test_root_recovered_through_distortion():
    track = walking_track()
    cam = lab_camera()
    x_cam, rel = camera_frame(track, cam)
    px = cam.project(track)
    t = W.solve_root(rel, px, cam)
    assert np.abs(t - x_cam[:, 0]).max() < 1e-6
    # A wild 2D joint with zero confidence changes nothing; with full confidence the
    # Huber-weighted Gauss-Newton keeps it small.
    bad = px.copy()
    bad[:, 13] += 300
    conf = np.ones(px.shape[:2])
    conf[:, 13] = 0
    assert np.abs(W.solve_root(rel, bad, cam, conf) - x_cam[:, 0]).max() < 1e-6
    err = np.linalg.norm(W.solve_root(rel, bad, cam) - x_cam[:, 0], axis=-1).max()
    plain = np.linalg.norm(W.solve_root(rel, bad, cam, iterations=0) - x_cam[:, 0], axis=-1).max()
    assert err < 0.5 * plain
    # Ignoring the distortion would be wrong by centimetres: the model matters.
    pin = Camera('p', cam.K, np.zeros(0), cam.R, cam.t, cam.size)
    assert np.linalg.norm(W.solve_root(rel, px, pin) - x_cam[:, 0], axis=-1).max() > 0.02


def test_world_positions_recovered():
    track = walking_track()
    cam = lab_camera()
    _, rel = camera_frame(track, cam)
    px = cam.project(track)
    for smoothing in ('none', 'offline', 'causal'):
        world = W.lift_to_world(rel, px, cam, smoothing=smoothing)
        err = np.linalg.norm(world - track, axis=-1)
        assert err.max() < {'none': 1e-6, 'offline': 0.01, 'causal': 0.06}[smoothing], smoothing


def test_smoothing_removes_depth_noise_and_causal_has_no_lookahead():
    track = walking_track(200)
    cam = lab_camera()
    x_cam, rel = camera_frame(track, cam)
    rng = np.random.default_rng(0)
    noisy = x_cam[:, 0] * (1 + rng.normal(0, 0.03, (len(track), 1)))  # depth-like noise
    noisy[50] *= 1.5                                                   # one spike
    for causal in (False, True):
        sm = W.smooth_root(noisy, 50.0, causal=causal)
        e_raw = np.linalg.norm(noisy - x_cam[:, 0], axis=-1).mean()
        e_sm = np.linalg.norm(sm - x_cam[:, 0], axis=-1).mean()
        assert e_sm < 0.6 * e_raw, (causal, e_sm, e_raw)
    changed = noisy.copy()
    changed[120:] += 1.0
    a = W.smooth_root(noisy, 50.0, causal=True)
    b = W.smooth_root(changed, 50.0, causal=True)
    assert np.allclose(a[:120], b[:120])
    assert not np.allclose(W.smooth_root(noisy, 50.0)[:120], W.smooth_root(changed, 50.0)[:120])


def test_subject_height_scales_the_skeleton():
    track = walking_track()
    cam = lab_camera()
    x_cam, rel = camera_frame(track, cam)
    px = cam.project(track)
    true_h = W.skeleton_height(track)
    assert 1.6 < true_h < 1.8
    small = rel * 0.85                          # a lifter that underestimates the size
    wrong = W.lift_to_world(small, px, cam, smoothing='none')
    right = W.lift_to_world(small, px, cam, subject_height_m=true_h, smoothing='none')
    assert np.linalg.norm(wrong[:, 0] - track[:, 0], axis=-1).mean() > 0.3
    assert np.linalg.norm(right - track, axis=-1).max() < 1e-6
    scaled, f = W.scale_to_height(small, 1.9)
    assert abs(W.skeleton_height(scaled) - 1.9) < 1e-9 and f > 1
    with pytest.raises(ValueError):
        W.scale_to_height(small, 0)


def seated_track(T=100):
    """TEMPLATE sitting: thighs forward (horizontal), shins down, same bone lengths."""
    p = TEMPLATE.copy()
    for hip, knee, foot in ((1, 2, 3), (4, 5, 6)):
        thigh = np.linalg.norm(p[knee] - p[hip])
        shin = np.linalg.norm(p[foot] - p[knee])
        p[knee] = p[hip] + [thigh, 0, 0]
        p[foot] = p[knee] - [0, 0, shin]
    drop = p[[3, 6], 2].mean() - 0.08          # feet back on the floor
    p[:, 2] -= drop
    return np.repeat(p[None], T, 0) + np.random.default_rng(1).normal(0, 0.002, (T, 17, 3))


def test_height_is_the_standing_height_in_any_pose():
    """The height measured on a track is the subject's standing height whether the track
    stands (upright frames), walks or sits the whole time (joint chain): a user types one
    figure for all."""
    stand = np.repeat(TEMPLATE[None], 30, 0)
    sit = seated_track()
    h_stand = W.skeleton_height(stand)
    assert abs(h_stand - (1.68 - 0.08 + W.HEIGHT_OFFSET_M)) < 0.01
    assert W.standing_mask(sit).sum() == 0
    # Straight head-to-ankle while seated is ~0.5 m shorter; the chain is not.
    d_sit = np.linalg.norm(sit[:, W.HEAD] - sit[:, [W.RFOOT, W.LFOOT]].mean(1), axis=-1)
    assert d_sit.mean() + W.HEIGHT_OFFSET_M < h_stand - 0.3
    assert abs(W.skeleton_height(sit) - h_stand) < 0.03 * h_stand
    assert abs(W.chain_length(sit) - W.chain_length(stand)) < 0.01
    # A seated lifter output 10 % small is scaled back to the subject's size.
    f = W.height_factor(sit * 0.9, h_stand)
    assert abs(f - 1 / 0.9) < 0.04, f
    # Walking frames count only where upright; a track mixing sitting and standing frames
    # is measured on the standing ones.
    mixed = np.concatenate([sit, stand])
    assert abs(W.skeleton_height(mixed) - h_stand) < 1e-6
    with pytest.raises(ValueError):
        W.height_factor(stand, 0.05)
    with pytest.raises(ValueError):
        W.skeleton_height(np.full((5, 17, 3), np.nan))


def test_running_height_matches_the_offline_factor():
    track = walking_track()
    cam = lab_camera()
    _, rel = camera_frame(track, cam)
    small = rel * 0.85
    run = W.RunningHeight(1.75, every=1)
    f = [run.step(p) for p in small]
    assert abs(f[-1] - W.height_factor(small, 1.75)) < 1e-12
    assert run.step(np.full((17, 3), np.nan)) == f[-1]       # a NaN pose is not counted


def test_depth_cues_weighted_by_their_confidence():
    # Equal sigmas: the geometric mean; the default trusts the floor (1.5 %) over the
    # height (3 %): weights 0.8 / 0.2 in log depth.
    assert abs(W.combine_depth_cues(1.1, 1.0, 0.02, 0.02) - math.sqrt(1.1)) < 1e-12
    got = W.combine_depth_cues(np.array([1.1, 1.0]), 0.95)
    want = np.exp(0.8 * np.log([1.1, 1.0]) + 0.2 * math.log(0.95))
    assert np.allclose(got, want)


def test_floor_and_height_combined_by_weight():
    """A lifter 15 % small and a typed height 4 % too tall: the height alone places the
    subject 4 % too far; with the floor as well the depth error shrinks to the height's
    weight (0.2 of it), and the skeleton keeps the typed size."""
    track = walking_track()
    cam = lab_camera()
    _, rel = camera_frame(track, cam)
    px = cam.project(track)
    h = 1.04 * (W.skeleton_height(track) - W.HEIGHT_OFFSET_M) + W.HEIGHT_OFFSET_M
    small = rel * 0.85

    def depth_err(**kw):
        # refit=False: the size placement gives; the limbs refit would take the legs' lengths
        # from the 2D at the weighted depth, where this typed height is 4 % too tall
        pl = W.place_skeletons(small, px, cam, fps=50.0, refit=False, **kw)
        z = pl.root[:, 2] / cam.to_camera(track)[:, 0, 2]
        return float(np.median(z)) - 1, pl
    e_h, _ = depth_err(subject_height_m=h)
    floor = 0.08 - W.FOOT_JOINT_HEIGHT_M            # the track's ankles are 8 cm up
    e_f, _ = depth_err(floor_z=floor)
    e_both, pl = depth_err(subject_height_m=h, floor_z=floor)
    assert 0.03 < e_h < 0.05 and abs(e_f) < 0.01, (e_h, e_f)
    assert pl.floor_scale is not None
    assert abs(e_both - 0.2 * e_h) < 0.01 and abs(e_both) < 0.5 * abs(e_h), (e_both, e_h)
    size = W.skeleton_height(pl.poses_cam - pl.poses_cam[:, :1])
    assert abs(size - h) < 1e-6


def test_floor_gives_depth_when_the_size_is_wrong():
    track = walking_track()
    cam = lab_camera()
    _, rel = camera_frame(track, cam)
    px = cam.project(track)
    small = rel * 0.85
    pl = W.place_skeletons(small, px, cam, floor_z=0.0)
    assert pl.floor_scale is not None
    err = np.linalg.norm(cam.to_world(pl.poses_cam)[:, 0] - track[:, 0], axis=-1)
    assert np.median(err) < 0.08, np.median(err)   # without the floor: > 0.3 m (see above)
    # A world whose z is not up (the camera's own frame as the world): floor not used.
    own = Camera('own', cam.K, cam.dist, size=cam.size)
    assert W.place_skeletons(small, px, own, floor_z=0.0).floor_scale is None


def test_live_placement_converges_to_the_offline_depth():
    """geometry.world.CausalPlacement (the world node's per-track engine), frame by frame:
    the right size alone places the subject; a lifter 15 % small is put right by the floor
    once its window has filled, as place_skeletons does offline; a typed height scales it."""
    track = walking_track(T=200)
    cam = lab_camera()
    x_cam, rel = camera_frame(track, cam)
    px = cam.project(track)
    conf = np.ones(px.shape[:2])

    def run(poses, **kw):
        live = W.CausalPlacement(cam, fps=50.0, **kw)
        return np.stack([live.step(p, k, c, cam) for p, k, c in zip(poses, px, conf)])
    exact = np.linalg.norm(run(rel) - x_cam, axis=-1)
    assert np.median(exact) < 0.005 and exact.max() < 0.03, exact.max()   # the filter's lag
    small = run(rel * 0.85)
    err_small = np.linalg.norm(small[-50:, 0] - x_cam[-50:, 0], axis=-1)
    assert np.median(err_small) > 0.2                  # too near without a depth cue
    floor = run(rel * 0.85, floor_z=0.08 - W.FOOT_JOINT_HEIGHT_M)   # ankles 8 cm up
    err_floor = np.linalg.norm(floor[-50:, 0] - x_cam[-50:, 0], axis=-1)
    assert np.median(err_floor) < 0.08, np.median(err_floor)
    h = W.skeleton_height(track)
    sized = run(rel * 0.85, subject_height_m=h)
    size = W.skeleton_height(sized[-50:] - sized[-50:, :1])
    assert abs(size - h) < 0.01, (size, h)


def test_ground_estimated_without_calibration():
    track = walking_track()
    cam = lab_camera(dist=False)
    x_cam, _ = camera_frame(track, cam)
    g = estimate_ground(x_cam, 'cam', cam.K, cam.size)
    true_up = cam.R @ np.array([0, 0, 1.0])
    assert math.degrees(math.acos(np.clip(g.up_cam @ true_up, -1, 1))) < 1.0
    assert abs(g.height_m - 2.2) < 0.05
    fwd_down = math.degrees(math.asin(-np.array([0, 0, 1.0]) @ true_up))
    assert abs(g.pitch_deg - fwd_down) < 1.0 and g.pitch_deg > 10
    assert abs(g.roll_deg - math.degrees(math.asin(true_up[0]))) < 1.0 and g.roll_deg > 0.5
    assert g.standing_frames > 50
    # The estimated world is z up with the floor at z = 0: feet on it, head above.
    w = g.camera.to_world(x_cam)
    assert abs(np.median(w[:, [W.RFOOT, W.LFOOT], 2]) - 0.08) < 0.05
    assert abs(np.median(w[:, W.HEAD, 2]) - 1.68) < 0.05


def run_lift(*args):
    return subprocess.run([sys.executable, '-m', 'vp3d_ros.cli.lift', *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_world_frame_contract(tmp_path):
    """vp3d-lift KP.npy --width W --height H --calibration CALIB.toml --camera NAME
    [--subject-height M] --frame world --out OUT.npy, with the shipped lifter."""
    track = walking_track(150)
    cam = lab_camera()
    other = Camera('cam_02', cam.K, cam.dist, rodrigues([0, 0.5, 0]) @ cam.R, cam.t, cam.size)
    calib = save_calibration_toml({'cam_01': cam, 'cam_02': other}, tmp_path / 'calib.toml')
    assert set(load_calibration(calib)) == {'cam_01', 'cam_02'}
    px = cam.project(track)
    np.save(tmp_path / 'kp.npy', px.astype(np.float32))
    for extra in ([], ['--subject-height', f'{W.skeleton_height(track):.3f}']):
        out = tmp_path / 'world.npy'
        r = run_lift(tmp_path / 'kp.npy', '--width', 1920, '--height', 1080, '--calibration',
                     calib, '--camera', 'cam_01', *extra, '--frame', 'world', '--out', out)
        assert r.returncode == 0, r.stderr
        w = np.load(out)
        assert w.shape == (150, 17, 3) and np.isfinite(w).all()
        hip_err = np.linalg.norm(w[:, 0] - track[:, 0], axis=-1)
        assert np.median(hip_err) < 0.4, (extra, np.median(hip_err))
        assert np.median(w[:, W.HEAD, 2] - w[:, W.RFOOT, 2]) > 1.2     # upright in the world
    # Keypoints with a confidence last are accepted; a missing camera name is refused.
    kpc = np.concatenate([px, np.ones(px.shape[:2] + (1,))], -1)
    np.save(tmp_path / 'kpc.npy', kpc)
    r = run_lift(tmp_path / 'kpc.npy', '--width', 1920, '--height', 1080, '--calibration',
                 calib, '--camera', 'cam01', '--frame', 'world', '--out', tmp_path / 'c.npy')
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / 'c.npy').shape == (150, 17, 3)
    r = run_lift(tmp_path / 'kp.npy', '--width', 1920, '--height', 1080, '--calibration',
                 calib, '--frame', 'world', '--out', tmp_path / 'x.npy')
    assert r.returncode == 2 and '--camera' in r.stderr
    r = run_lift(tmp_path / 'kp.npy', '--width', 1920, '--height', 1080, '--calibration',
                 calib, '--camera', 'cam_09', '--frame', 'world', '--out', tmp_path / 'x.npy')
    assert r.returncode == 2 and 'cam_09' in r.stderr
    # No calibration: a z-up world estimated from the subject, floor near z = 0.
    r = run_lift(tmp_path / 'kp.npy', '--width', 1920, '--height', 1080, '--focal', 1400,
                 '--frame', 'world', '--out', tmp_path / 'n.npy')
    assert r.returncode == 0, r.stderr
    n = np.load(tmp_path / 'n.npy')
    assert abs(np.median(n[:, [W.RFOOT, W.LFOOT], 2])) < 0.25
    assert np.median(n[:, W.HEAD, 2]) > 1.2


def world_track(tmp_path=None):
    from vp3d_ros.io.records import Track
    from vp3d_ros.core.skeletons import H36M17
    track = walking_track(100)
    stamps = 1000.0 + np.arange(len(track)) / 50.0
    return Track('/cam_01/skeleton_3d/world', 0, H36M17.joints, stamps, track,
                 np.ones(track.shape[:2]))


def test_world_exports_use_opensim_axes(tmp_path):
    """TRC / CSV of a world track: Y up (OpenSim), metres, absolute, mapping in the header."""
    import csv
    from vp3d_ros.io.records import (OPENSIM_AXES_NOTE, OPENSIM_FROM_ROS, opensim_to_ros,
                                  write_world_csv, write_world_trc)
    tr = world_track()
    assert np.isclose(np.linalg.det(OPENSIM_FROM_ROS), 1.0)       # a rotation, no mirror
    trc = write_world_trc(tr, tmp_path / 'w.trc')
    lines = trc.read_text().splitlines()
    assert OPENSIM_AXES_NOTE in lines[0]
    rows = [l.split('\t') for l in lines[6:]]
    xyz = np.array([[float(v) for v in r[2:]] for r in rows]).reshape(len(rows), 17, 3)
    assert np.allclose(opensim_to_ros(xyz), tr.positions, atol=1e-6)
    head, foot = xyz[:, W.HEAD], xyz[:, W.RFOOT]
    assert (head[:, 1] > foot[:, 1] + 1.2).all()                 # Y is up
    assert np.ptp(xyz[:, 0, 0]) > 1.0                           # the Hip moves (absolute)
    cpath = write_world_csv(tr, tmp_path / 'w.csv')
    text = cpath.read_text().splitlines()
    assert text[0] == f'# {OPENSIM_AXES_NOTE}'
    recs = list(csv.DictReader(text[1:]))
    hip = [r for r in recs if r['landmark'] == 'Hip']
    assert len(hip) == 100
    got = np.array([[float(r['x_m']), float(r['y_m']), float(r['z_m'])] for r in hip])
    assert np.allclose(got, tr.positions[:, 0] @ OPENSIM_FROM_ROS.T, atol=1e-6)


def test_world_trc_opens_upright_and_moving_in_opensim(tmp_path):
    from vp3d_ros.kinematics import require_opensim
    try:   # not a plain import: the wheel's import breaks LD_LIBRARY_PATH for later processes
        opensim = require_opensim()
    except ImportError as e:
        pytest.skip(str(e))
    from vp3d_ros.io.records import trc_marker_name, write_world_trc
    tr = world_track()
    trc = write_world_trc(tr, tmp_path / 'w.trc')
    table = opensim.TimeSeriesTableVec3(str(trc))
    assert table.getNumRows() == 100
    labels = list(table.getColumnLabels())
    assert labels == [trc_marker_name(j) for j in tr.joint_names]

    def column(name):
        c = table.getDependentColumn(name)
        return np.array([[c[i].get(k) for k in range(3)] for i in range(c.size())])
    head, foot, hip = column('Head'), column('RFoot'), column('Hip')
    assert (head[:, 1] - foot[:, 1] > 1.2).all()                 # upright in Y
    assert abs(np.median(foot[:, 1]) - 0.08) < 0.01             # feet on the floor
    assert np.linalg.norm(hip[-1] - hip[0]) > 1.0                # moving through the room
    assert table.getTableMetaDataAsString('Units') == 'm'
    # a frame whose last marker (RWrist) is missing still reads, as missing (NaN)
    tr.positions[10, -1] = np.nan
    table = opensim.TimeSeriesTableVec3(str(write_world_trc(tr, tmp_path / 'gap.trc')))
    assert table.getNumRows() == 100
    assert np.isnan(table.getDependentColumn('RWrist')[10].get(0))


def test_export_cli_writes_world_topics_in_opensim_axes(tmp_path):
    """A bag holding /cam01/skeleton_3d/world (as the recorder writes it) -> vp3d-export:
    the world TRC is Y up and absolute; the camera-frame topic is left as it was."""
    from vp3d_ros.io import records
    from vp3d_ros.io.bag_io import BagWriter
    from vp3d_ros.cli.export import main as export_main
    tr = world_track()
    cam = lab_camera()
    x_cam = cam.to_camera(tr.positions)
    with BagWriter(tmp_path / 'bag') as w:
        for t in ('/cam01/skeleton_3d', '/cam01/skeleton_3d/world'):
            w.add_topic(t, 'sensor_msgs/msg/PointCloud2')
        for i, s in enumerate(tr.stamps_s):
            ns = int(round(s * 1e9))
            w.write_msg('/cam01/skeleton_3d/world', ns, records.make_cloud(
                tr.positions[i][None], np.ones((1, 17)), [0], ns, 'world'))
            w.write_msg('/cam01/skeleton_3d', ns, records.make_cloud(
                (x_cam[i] - x_cam[i, :1])[None], np.ones((1, 17)), [0], ns, 'cam01_optical'))
    assert export_main([str(tmp_path / 'bag'), '--out-dir', str(tmp_path / 'out'),
                        '--trc', '--csv']) == 0
    world_trc = (tmp_path / 'out' / 'cam01_skeleton_3d_world_p0.trc').read_text().splitlines()
    cam_trc = (tmp_path / 'out' / 'cam01_skeleton_3d_p0.trc').read_text().splitlines()
    assert records.OPENSIM_AXES_NOTE in world_trc[0]
    assert records.OPENSIM_AXES_NOTE not in cam_trc[0]
    rows = np.array([[float(v) for v in l.split('\t')[2:]] for l in world_trc[6:]])
    xyz = rows.reshape(len(rows), 17, 3)
    assert np.allclose(records.opensim_to_ros(xyz), tr.positions, atol=1e-5)
    assert (xyz[:, W.HEAD, 1] - xyz[:, W.RFOOT, 1] > 1.2).all()
    csv_text = (tmp_path / 'out' / 'cam01_skeleton_3d_world_p0.csv').read_text()
    assert csv_text.startswith('# ' + records.OPENSIM_AXES_NOTE)


BUNDLED_CALIB = Path(__file__).resolve().parent.parent / 'vp3d_ros' / 'data' / \
    'balancing_calib_qualisys.toml'


def test_offline_writes_world_skeletons_of_the_bundled_clip(tmp_path):
    """vp3d-offline --calibration on the bundled clip (real MediaPipe, shipped lifter, the
    rig's real calibration): /cam01/skeleton_3d/world in the bag, upright, where the subject
    stands (the 4-camera triangulation of the full clip puts the Hip near x -1.06, y -0.08,
    z 0.87 m)."""
    from conftest import CLIP
    from vp3d_ros.cli.offline import main as offline_main
    from vp3d_ros.io.records import read_landmark_tracks
    out = tmp_path / 'bag'
    assert offline_main([CLIP, '--out', str(out), '--max-frames', '30', '--calibration',
                         str(BUNDLED_CALIB), '--no-progress']) == 0
    tracks = {t.topic: t for t in read_landmark_tracks(out)}
    assert {'/cam01/keypoints_2d', '/cam01/skeleton_3d', '/cam01/skeleton_3d/world'} <= set(tracks)
    w = tracks['/cam01/skeleton_3d/world']
    cam = tracks['/cam01/skeleton_3d']
    assert len(w.stamps_s) == len(cam.stamps_s) >= 25
    p = w.positions
    assert np.isfinite(p).all()
    assert (p[:, W.HEAD, 2] - np.minimum(p[:, W.RFOOT, 2], p[:, W.LFOOT, 2]) > 1.2).all()
    hip = np.median(p[:, 0], axis=0)
    assert np.linalg.norm(hip - [-1.06, -0.08, 0.87]) < 0.4, hip
    # The camera-frame skeleton is unchanged: root-relative (the lifter sets the network's
    # Hip output, trained towards 0, to exactly 0).
    assert np.abs(cam.positions[:, 0]).max() < 1e-6
    with open_bag(out) as bag:
        from vp3d_ros.io import bag_io
        raw = next(r for _, _, _, r in bag.messages(['/cam01/skeleton_3d/world']))
        assert bag_io.typestore().deserialize_cdr(
            raw, 'sensor_msgs/msg/PointCloud2').header.frame_id == 'world'


def test_offline_estimates_the_ground_without_calibration_as_vp3d_lift_does(tmp_path, capsys):
    """vp3d-offline --estimate-ground on the bundled clip, no calibration (real MediaPipe,
    shipped lifter): /cam01/skeleton_3d/world in a ground frame of the camera's own, z up,
    feet on z = 0, the same joints vp3d-lift --frame world makes of the bag's keypoints
    (what the kinematics demo used to take four commands for). Refused with a calibration."""
    from conftest import CLIP
    from vp3d_ros.cli.lift import main as lift_main
    from vp3d_ros.cli.offline import main as offline_main
    from vp3d_ros.io import bag_io
    from vp3d_ros.io.records import read_landmark_tracks
    out = tmp_path / 'bag'
    assert offline_main([CLIP, '--out', str(out), '--max-frames', '60', '--estimate-ground',
                         '--no-progress']) == 0
    assert 'cam01: ground from the subject: pitch' in capsys.readouterr().out
    tracks = {t.topic: t for t in read_landmark_tracks(out)}
    w, kp = tracks['/cam01/skeleton_3d/world'], tracks['/cam01/keypoints_2d']
    assert len(w.stamps_s) == len(kp.stamps_s) == 60
    p = w.positions
    assert np.isfinite(p).all()
    feet = np.minimum(p[:, W.RFOOT, 2], p[:, W.LFOOT, 2])
    assert abs(np.percentile(feet, 10) - W.FOOT_JOINT_HEIGHT_M) < 0.02   # floor at z = 0
    assert (p[:, W.HEAD, 2] - feet > 1.2).all()
    with open_bag(out) as bag:
        raw = next(r for _, _, _, r in bag.messages(['/cam01/skeleton_3d/world']))
        assert bag_io.typestore().deserialize_cdr(
            raw, 'sensor_msgs/msg/PointCloud2').header.frame_id == 'cam01_ground'
        params = bag.metadata['vp3d.parameters']
        assert 'pitch' in next(iter(params.values()))['estimate_ground']['cam01']
    np.save(tmp_path / 'kp.npy', np.concatenate([kp.positions, kp.confidence[..., None]], -1))
    assert lift_main([str(tmp_path / 'kp.npy'), '--width', '1080', '--height', '1920',
                      '--frame', 'world', '--fps', '60', '--out', str(tmp_path / 'w.npy')]) == 0
    np.testing.assert_allclose(np.load(tmp_path / 'w.npy'), p, atol=1e-4)
    assert offline_main([CLIP, '--out', str(tmp_path / 'no'), '--max-frames', '5',
                         '--estimate-ground', '--calibration', str(BUNDLED_CALIB)]) == 2
    assert 'without a calibration' in capsys.readouterr().err
    assert not (tmp_path / 'no').exists()


def test_rigid_bones_keeps_nan_frames_and_checks_the_order():
    from vp3d_ros.geometry.bones import rigid_bones
    rng = np.random.default_rng(5)
    p = rng.normal(size=(6, 17, 3))
    p[2, 5] = np.nan                                     # a lost left knee
    out = rigid_bones(p)
    assert np.isnan(out[2, [5, 6]]).all() and np.isfinite(np.delete(out[2], [5, 6], 0)).all()
    assert np.isfinite(np.delete(out, 2, 0)).all()
    lengths = np.linalg.norm(out[:, 2] - out[:, 1], axis=-1)
    np.testing.assert_allclose(lengths, lengths[0])
    with pytest.raises(ValueError):
        rigid_bones(p, parents=[-1, 2, 0] + [0] * 14)
    with pytest.raises(ValueError):
        rigid_bones(p[0])
