"""The level view (vp3d_ros.geometry.view): keypoints re-drawn as a level camera aimed at the
person sees them, poses turned back. A known scene through a rolled, pitched, distorted
camera; the shipped lifter through the live engine and the offline path."""
import numpy as np
import pytest

from vp3d_ros.core.engine import LiftingEngine
from vp3d_ros.core.lifter import SequenceLifter, StreamingLifter
from vp3d_ros.core.lifter_config import resolve_lifter
from vp3d_ros.geometry.calibration import Camera, rodrigues
from vp3d_ros.geometry.view import LevelView, level_view

from test_world import lab_camera, walking_track


def turned(cam: Camera, roll_deg: float, pitch_deg: float = 0.0, name='turned') -> Camera:
    """The same camera (centre, intrinsics, distortion) turned about its own centre."""
    R = rodrigues([np.radians(pitch_deg), 0, 0]) @ rodrigues([0, 0, np.radians(roll_deg)]) @ cam.R
    return Camera(name, cam.K, cam.dist, R, -R @ cam.centre, cam.size)


def test_the_view_is_the_camera_turned_level_towards_the_person():
    """What the view draws is exactly what a pinhole camera at the same centre, optical axis
    through the Hip, image up along gravity, sees; the pose comes back unchanged."""
    track = walking_track(40)
    cam = turned(lab_camera(), 25.0, 8.0)                 # rolled 25 deg, pitched further
    px = cam.project(track)
    view = level_view(cam)
    kp, R = view.to_view(px)
    assert kp.shape == px.shape and R.shape == (40, 3, 3)
    x_cam = cam.to_camera(track)
    x_view = np.einsum('tij,tkj->tki', R, x_cam)
    pin = x_view[..., :2] / x_view[..., 2:] @ cam.K[:2, :2].T + cam.K[:2, 2]
    assert np.abs(pin - kp).max() < 0.05                    # px: undistortion is iterative
    assert np.abs(kp[:, 0] - cam.K[:2, 2]).max() < 0.05     # aimed at the Hip
    above = cam.project(track[:, :1] + np.array([0, 0, 0.5]))   # 0.5 m straight above it
    up_px = view.to_view(np.concatenate([px[:, :1], above], 1))[0]
    assert np.abs(up_px[:, 1, 0] - up_px[:, 0, 0]).max() < 0.05  # level: vertical is vertical
    assert (up_px[:, 1, 1] < up_px[:, 0, 1]).all()                # and up is up
    back = LevelView.from_view(x_view - x_view[:, :1], R)
    assert np.allclose(back, x_cam - x_cam[:, :1], atol=1e-9)


def test_a_world_whose_z_is_not_up_gets_no_view():
    cam = lab_camera()
    assert level_view(cam) is not None
    frame_world = Camera('c', cam.K, cam.dist, np.eye(3), np.zeros(3), cam.size)  # z forward
    assert level_view(frame_world) is None
    assert level_view(turned(cam, 180.0)) is None                # upside down
    assert level_view(turned(cam, 50.0)) is not None             # rolled, still upright-ish


def test_the_pose_does_not_depend_on_how_the_camera_is_turned():
    """The shipped lifter sees the same level view from a camera however it is turned about
    its centre: the same poses, once turned into the world. Without the view, a 30-degree
    roll changes what it lifts."""
    ck, layout = resolve_lifter(None, mode='symmetric')
    lifter = SequenceLifter(ck.build(), layout)
    track = walking_track(90)
    a = lab_camera()
    b = turned(a, 30.0, 10.0)
    world = {}
    for name, cam in (('a', a), ('b', b)):
        px = cam.project(track)
        lv = level_view(cam).lift(lifter, px)
        raw = lifter.lift(cam.undistort_pixels(px), *cam.size)
        world[name] = (lv @ cam.R, raw @ cam.R)           # R^T X: camera -> world directions
    assert np.abs(world['a'][0] - world['b'][0]).max() < 2e-4          # metres
    assert np.linalg.norm(world['a'][1] - world['b'][1], axis=-1).mean() > 0.01
    # and the level view is the better lift of this scene (root-relative world truth)
    truth = track - track[:, :1]
    err = {k: np.linalg.norm(w - truth, axis=-1).mean() for k, w in
           (('level', world['b'][0]), ('raw', world['b'][1]))}
    assert err['level'] < err['raw'], err


@pytest.mark.parametrize('causal', [True, False])
def test_the_engine_lifts_through_the_view(causal):
    """Live (StreamingLifter, shared passes) and whole-sequence lifting through the engine's
    per-camera view give the poses of LevelView.lift on the sequence, each with its stamp."""
    ck, layout = resolve_lifter(None, mode='causal' if causal else 'symmetric')
    model = ck.build()
    track = walking_track(60)
    cam = turned(lab_camera(), 20.0)
    px = cam.project(track)
    want = level_view(cam).lift(SequenceLifter(model, layout), px)
    engine = LiftingEngine(
        [lambda w, h: StreamingLifter(model, layout, width=w, height=h, deferred=True)],
        ['cam01'], views={'cam01': lambda w, h: level_view(cam.with_image_size(w, h))})
    got = {}
    for i, k in enumerate(px):
        engine.add('cam01', 1000 + i, {0: (k, np.ones(17))}, cam.size)
        for ready in engine.lift_due():
            got.update({lp.stamp_ns: lp.pose for lp in ready.poses.get(0, [])})
    for ready in engine.finish():
        got.update({lp.stamp_ns: lp.pose for lp in ready.poses.get(0, [])})
    assert sorted(got) == [1000 + i for i in range(60)]
    poses = np.stack([got[1000 + i] for i in range(60)])
    assert np.abs(poses - want).max() < 1e-4
    with pytest.raises(ValueError, match='views for cameras'):
        LiftingEngine([lambda w, h: None], ['cam01'], views={'cam02': lambda w, h: None})


def test_without_calibration_up_comes_from_the_subject(tmp_path):
    """vp3d-lift --frame world with intrinsics only, from a camera rolled 30 degrees: the
    ground estimated on a first lift gives the level view the track is lifted again in, and
    the skeletons' shape is closer to the truth than without it (--no-level-view)."""
    import subprocess
    import sys
    from vp3d_ros.training.metrics import p_mpjpe
    track = walking_track(120)
    cam = turned(lab_camera(dist=False), 30.0)
    np.save(tmp_path / 'kp.npy', cam.project(track))
    err, logs = {}, {}
    for flag in ('--level-view', '--no-level-view'):
        out = tmp_path / f'{flag}.npy'
        r = subprocess.run([sys.executable, '-m', 'vp3d_ros.cli.lift', str(tmp_path / 'kp.npy'),
                            '--width', '1920', '--height', '1080', '--focal', '1400', '--frame',
                            'world', flag, '--out', str(out)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        w = np.load(out)
        assert np.median(w[:, 10, 2] - w[:, 0, 2]) > 0.4               # upright
        err[flag] = p_mpjpe(w, track).mean()
        logs[flag] = r.stderr
    assert 'lifted again in the level view' in logs['--level-view']
    assert 'level view' not in logs['--no-level-view']
    assert err["--level-view"] < err["--no-level-view"], err


def test_a_person_straight_below_keeps_the_real_camera():
    """A camera pitched 55 degrees down sees a point straight below it at its image's lower
    edge: no turn about the vertical is defined there, so that frame is lifted as it is."""
    cam = turned(lab_camera(dist=False), 0.0, 35.0)       # ~55 degrees down in all
    view = level_view(cam)
    below = cam.centre - np.array([0.0, 0.0, 2.0])
    px = cam.project(np.stack([below, np.array([0.4, 0.0, 0.95])])[:, None])[:, 0]
    kp = np.repeat(px[:, None], 17, axis=1)               # frame 0: all joints straight below
    R = view.rotations(cam.undistort_pixels(kp))
    assert np.allclose(R[0], np.eye(3)) and not np.allclose(R[1], np.eye(3))
    assert np.isfinite(view.to_view(kp)[0]).all()


def test_vp3d_lift_camera_frame_with_a_calibration(tmp_path):
    """vp3d-lift --frame camera (the default) with --calibration lifts in the level view: the
    poses of LevelView.lift; --no-level-view the plain lift."""
    import subprocess
    import sys
    from vp3d_ros.geometry.calibration import save_calibration_toml
    cam = turned(lab_camera(), 20.0)
    calib = save_calibration_toml({'cam_01': cam}, tmp_path / 'c.toml')
    px = cam.project(walking_track(60))
    np.save(tmp_path / 'kp.npy', px)
    ck, layout = resolve_lifter(None, mode='symmetric')
    lifter = SequenceLifter(ck.build(), layout)
    want = {'--level-view': level_view(cam).lift(lifter, px),
            '--no-level-view': lifter.lift(px, *cam.size)}
    for flag, poses in want.items():
        out = tmp_path / f'{flag}.npy'
        r = subprocess.run([sys.executable, '-m', 'vp3d_ros.cli.lift', str(tmp_path / 'kp.npy'),
                            '--width', '1920', '--height', '1080', '--calibration', str(calib),
                            flag, '--out', str(out)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert np.abs(np.load(out) - poses).max() < 1e-5, flag


def test_offline_without_calibration_takes_up_from_the_subject(tmp_path):
    """vp3d-offline on the bundled cam04 clip (rolled 26 degrees), real MediaPipe: without a
    calibration the level view comes from the subject (recorded in the bag), and its
    skeletons lie much nearer to the calibrated level view's than the plain lift's do."""
    from vp3d_ros import DATA_DIR
    from vp3d_ros.apps.offline import process
    from vp3d_ros.core.options import LifterOptions
    from vp3d_ros.io.bag_io import open_bag
    from vp3d_ros.io.records import read_landmark_tracks
    import os
    video = os.path.join(DATA_DIR, 'balancing_cam04.mp4')
    calib = os.path.join(DATA_DIR, 'balancing_calib_qualisys.toml')
    runs = {}
    for tag, level, cal in (('subject', True, None), ('plain', False, None),
                            ('calibrated', True, calib)):
        bag = tmp_path / tag
        process(video, bag, lifter=LifterOptions(mode='symmetric', level_view=level),
                max_frames=60, calibration=cal)
        with open_bag(bag) as b:
            runs[tag] = b.metadata['vp3d.parameters']['vp3d-offline']['level_view']
        track = [t for t in read_landmark_tracks(bag) if t.topic == '/cam04/skeleton_3d'][0]
        runs[tag] = (runs[tag], track.positions)
    assert runs['subject'][0] == {'cam04': 'subject'}
    assert runs['plain'][0] == {'cam04': 'none'}
    assert runs['calibrated'][0] == {'cam04': 'calibration'}
    ref = runs['calibrated'][1]
    d = {k: np.nanmean(np.linalg.norm(runs[k][1] - ref, axis=-1)) for k in ('subject', 'plain')}
    assert d["subject"] < 0.5 * d["plain"], d

