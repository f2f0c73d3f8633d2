"""Left/right label swaps traded back from a track's continuity (core.label_swaps): in the
track windows with real lifters, and end to end on the bundled clip, where MediaPipe names
cam02's limbs the wrong way round from frame 41 on."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import randomize_model
from test_robustness_common import BASE_POSE
from vp3d_ros.core.label_swaps import MAX_RUN_S, SwapRepair, trade_back_track
from vp3d_ros.core.lifter import SequenceLifter, StreamingLifter
from vp3d_ros.core.model import Architecture, build_model
from vp3d_ros.core.skeletons import H36M17, SkeletonLayout
from vp3d_ros.core.windowing import TrackWindow

MS = 1_000_000
SIZE = (1000, 1000)
FPS = 30
TWIN = np.array(H36M17.flip_permutation())
LEG = np.array([1, 2, 3, 4, 5, 6])
ARM = np.array([11, 12, 13, 14, 15, 16])


def walking(T, seed=0):
    """A person walking across the image at 30 fps: legs and arms swinging in opposition,
    0.3 m/s across a 1.8 m person 600 px tall; joints tell apart by confidence."""
    t = np.arange(T)[:, None] / FPS
    kp = np.repeat(BASE_POSE[None], T, axis=0).copy()
    kp[..., 0] += 100 * t - 150                             # the walk across the image
    swing = 60 * np.sin(2 * np.pi * 0.9 * t)
    kp[:, [2, 3], 0] += swing * np.array([0.5, 1.0])        # right leg
    kp[:, [5, 6], 0] -= swing * np.array([0.5, 1.0])        # left leg
    kp[:, [12, 13], 0] += swing * np.array([0.4, 0.8])      # left arm with the right leg
    kp[:, [15, 16], 0] -= swing * np.array([0.4, 0.8])
    kp += np.random.default_rng(seed).normal(0, 2, kp.shape)
    conf = np.tile(np.linspace(0.5, 0.99, 17), (T, 1))
    return kp, conf


def swapped(kp, conf, frames, joints):
    """The detector's mistake: the named joints trade places with their twins."""
    kp, conf = kp.copy(), conf.copy()
    for t in frames:
        kp[t, joints], conf[t, joints] = kp[t, TWIN[joints]], conf[t, TWIN[joints]]
    return kp, conf


def lift_track(kp, conf, causal, repair=True):
    model = randomize_model(build_model(Architecture((3, 3, 3), 16, causal)), seed=3)
    win = TrackWindow(lambda w, h: StreamingLifter(model, 'h36m', width=w, height=h),
                      repair_swaps=repair)
    out = []
    for t in range(len(kp)):
        out += win.add((t + 1) * 1000 * MS // FPS, kp[t], conf[t], SIZE)
    out += win.finish()
    return model, win, out


@pytest.mark.parametrize('causal', [True, False])
def test_swapped_runs_are_traded_back_and_lift_as_the_true_track(causal):
    """A whole-body swap for half a second, then the legs alone, then one arm frame: the
    window trades each back (confidences too), so the lifted poses are those of the true
    track; lifted as detected, those frames come out mirrored."""
    kp, conf = walking(90)
    bad, bad_conf = swapped(kp, conf, range(20, 35), np.r_[LEG, ARM])
    bad, bad_conf = swapped(bad, bad_conf, range(45, 51), LEG)
    bad, bad_conf = swapped(bad, bad_conf, [60], ARM)
    model, win, out = lift_track(bad, bad_conf, causal)
    assert win.stats.swaps_repaired == 15 * 2 + 6 + 1
    truth = SequenceLifter(model, 'h36m').lift(kp, *SIZE)
    poses = np.stack([p.pose for p in out])
    assert np.abs(poses - truth).max() < 1e-5
    assert np.array_equal(np.stack([p.confidence for p in out]), conf)
    _, plain, out = lift_track(bad, bad_conf, causal, repair=False)
    assert plain.stats.swaps_repaired == 0
    off = np.abs(np.stack([p.pose for p in out]) - truth).max(axis=(1, 2))
    assert (off[[20, 34, 45, 60]] > 1e-3).all()


def test_a_swap_held_longer_than_max_run_is_kept():
    """A track that goes on swapped: traded back for MAX_RUN_S, then taken as meant (its
    beginning may have been missed), with no trade after."""
    kp, conf = walking(150)
    bad, bad_conf = swapped(kp, conf, range(10, 150), np.r_[LEG, ARM])
    _, win, _ = lift_track(bad, bad_conf, True)
    held = int(MAX_RUN_S * FPS) + 1     # frames 10 .. 10 + MAX_RUN_S, ends included
    assert win.stats.swaps_repaired == 2 * held
    perms = trade_back_track(bad, bad_conf > 0.1, np.arange(150) * 1000 * MS // FPS, H36M17)
    traded = (perms != np.arange(17)).any(axis=1)
    assert traded[10:10 + held].all() and not traded[:10].any() and not traded[10 + held:].any()


def test_limbs_swinging_fast_are_not_traded():
    """Arms crossing in front of the body at 6 m/s and a leg kicked across the other: large
    steps, but the shoulders and hips stay put, so nothing is traded."""
    T = 40
    kp = np.repeat(BASE_POSE[None], T, axis=0).copy()
    phase = np.sin(np.linspace(0, 4 * np.pi, T))
    kp[:, [13, 16], 0] += np.outer(phase, [-300, 300])        # wrists cross, ~100 px a frame
    kp[:, [12, 15], 0] += np.outer(phase, [-120, 120])
    kp[:, 6, 0] -= 200 * np.clip(phase, 0, None)               # the left foot kicked across
    seen = np.ones((T, 17), bool)
    stamps = np.arange(T) * 1000 * MS // FPS
    perms = trade_back_track(kp, seen, stamps, H36M17)
    assert (perms == np.arange(17)).all()


def test_trade_back_track_finds_what_the_window_trades():
    kp, conf = walking(60, seed=4)
    bad, _ = swapped(kp, conf, range(12, 30), ARM)
    perms = trade_back_track(bad, conf > 0.1, np.arange(60) * 1000 * MS // FPS, H36M17)
    fixed = np.take_along_axis(bad, perms[..., None], axis=1)
    assert np.array_equal(fixed, kp)


def test_layouts_declare_their_limbs():
    for layout in (H36M17,):
        repair = SwapRepair(layout)
        assert len(repair.limbs) == 2
    with pytest.raises(ValueError, match='not left joints'):
        SkeletonLayout('x', ('a', 'b'), (-1, 0), (1,), (0,), limbs=((0,),))


def _root_relative(bag, camera):
    from vp3d_ros.io.records import read_landmark_tracks
    track = [t for t in read_landmark_tracks(bag) if t.topic == f'/{camera}/skeleton_3d/world']
    assert len(track) == 1
    return track[0].positions - track[0].positions[:, :1]


def test_bundled_clip_cam02_swap_is_traded_back(tmp_path):
    """Real MediaPipe on the bundled clip names cam02's legs and arms the wrong way round from
    frame 41 (a person seen from behind taken as facing the camera). vp3d-offline with the
    calibration trades them back: cam02's skeleton, turned into the world, then agrees with
    cam01's as before the swap; with --no-repair-swaps it comes out mirrored."""
    data = Path(__file__).resolve().parent.parent / 'vp3d_ros' / 'data'
    videos = [str(data / f'balancing_cam0{i}.mp4') for i in (1, 2)]
    calib = str(data / 'balancing_calib_qualisys.toml')
    limbs = np.r_[LEG, ARM]
    gaps = {}
    for flag in ('--repair-swaps', '--no-repair-swaps'):
        bag = tmp_path / flag
        r = subprocess.run([sys.executable, '-m', 'vp3d_ros.cli.offline', *videos,
                            '--calibration', calib, '--max-frames', '56', '--mode', 'symmetric',
                            flag, '--out', str(bag), '--no-progress'],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        assert ('traded back in cam02' in r.stdout) == (flag == '--repair-swaps'), r.stdout
        a, b = _root_relative(bag, 'cam01'), _root_relative(bag, 'cam02')
        gaps[flag] = np.linalg.norm(a - b, axis=-1)[:, limbs].mean(axis=1)   # (T,) metres
    on, off = gaps['--repair-swaps'], gaps['--no-repair-swaps']
    assert on[:30].mean() < 0.12 and off[:30].mean() < 0.12      # before the swap: alike
    assert on[44:].mean() < 0.2                                  # swapped frames, traded back
    assert off[44:].mean() > 0.4                                 # ... lifted as detected


def test_vp3d_lift_repair_swaps_flag(tmp_path):
    """vp3d-lift lifts keypoints exactly as given unless --repair-swaps: then a swapped run
    lifts as the true track does (the shipped model, a keypoints file with confidences)."""
    kp, conf = walking(90)
    bad, bad_conf = swapped(kp, conf, range(20, 35), np.r_[LEG, ARM])
    poses = {}
    for name, k, c, extra in (('true', kp, conf, []), ('traded', bad, bad_conf, ['--repair-swaps']),
                              ('as_given', bad, bad_conf, [])):
        src = tmp_path / f'{name}.npy'
        np.save(src, np.concatenate([k, c[..., None]], axis=-1))
        r = subprocess.run([sys.executable, '-m', 'vp3d_ros.cli.lift', str(src), '--width', '1000',
                            '--height', '1000', '--fps', str(FPS), '--out',
                            str(tmp_path / f'{name}_3d.npy'), *extra],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert ('traded back in 15 frame(s)' in r.stderr) == (name == 'traded'), r.stderr
        poses[name] = np.load(tmp_path / f'{name}_3d.npy')
    assert np.abs(poses['traded'] - poses['true']).max() < 1e-6
    assert np.abs(poses['as_given'] - poses['true'])[20:35].max() > 0.05


@pytest.mark.parametrize('layout', ['h36m', 'coco'])
def test_limbs_correspond_across_layouts(layout):
    """The 2D stage trades MediaPipe's 33 landmarks with the limbs it traded in the mapped
    keypoints: trading a leg or an arm in the 33 and mapping gives what trading the mapped
    keypoints gives, in both output layouts."""
    from vp3d_ros.core.keypoint_mapping import map_mediapipe
    from vp3d_ros.core.label_swaps import limb_permutation
    from vp3d_ros.core.skeletons import MEDIAPIPE33, get_layout
    rng = np.random.default_rng(0)
    lm = rng.uniform(0, 500, (1, 33, 2))
    vis = rng.uniform(0.5, 1, (1, 33))
    for traded in ([True, False], [False, True], [True, True]):
        p33 = limb_permutation(MEDIAPIPE33, traded)
        a, ca = map_mediapipe(lm[:, p33], vis[:, p33], layout)
        b, cb = map_mediapipe(lm, vis, layout)
        p = limb_permutation(get_layout(layout), traded)
        assert np.allclose(a, b[:, p]) and np.allclose(ca, cb[:, p]), traded


def test_track_swaps_per_person_and_with_missing_joints():
    """The 2D stage's per-track state: two persons, one swapped, one not; a joint without a
    position holds its last one instead of spoiling the next frame's judgement."""
    from vp3d_ros.core.label_swaps import TrackSwaps
    kp, conf = walking(60)
    other, other_conf = walking(60, seed=9)
    other[..., 0] += 300
    bad, bad_conf = swapped(kp, conf, range(20, 30), np.r_[LEG, ARM])
    bad[25, 3] = np.nan
    swaps = TrackSwaps(H36M17, 0.1)
    got = {1: [], 2: []}
    for t in range(60):
        stamp = t * 1000 * MS // FPS
        got[1].append(swaps.trade(1, stamp, bad[t], bad_conf[t]))
        got[2].append(swaps.trade(2, stamp, other[t], other_conf[t]))
    assert [t for t, g in enumerate(got[1]) if g] == list(range(20, 30))
    assert all(g == [True, True] for g in got[1][20:30])
    assert not any(got[2]) and swaps.repaired == 20
