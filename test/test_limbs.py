"""Limbs refit to the 2D (vp3d_ros.geometry.limbs): a squatting subject seen from the front,
its knees hedged straighter and shorter as one camera's lifter does, must get its knee
flexion back from the 2D rays and one length per bone."""
import math

import numpy as np
import pytest

from vp3d_ros.geometry import limbs
from vp3d_ros.geometry import world as W
from vp3d_ros.geometry.bones import flexion_deg
from vp3d_ros.geometry.calibration import Camera

THIGH, SHIN, UPPER_ARM, FOREARM = 0.42, 0.40, 0.28, 0.25
KNEES = ((1, 2, 3), (4, 5, 6))


def squat_track(T=200, fps=50.0):
    """(T, 17, 3) z up, facing +x: squats from 10 to 120 degrees of knee flexion and back,
    twice, arms bending at the elbows; every bone keeps its length."""
    t = np.arange(T) / fps
    flex = np.radians(10 + 110 * (0.5 - 0.5 * np.cos(2 * math.pi * t / (T / fps / 2))))
    elbow = np.radians(20 + 60 * (0.5 - 0.5 * np.cos(2 * math.pi * t / 1.3)))
    out = np.zeros((T, 17, 3))
    hip_h = (THIGH + SHIN) * np.cos(flex / 2) + 0.08
    for side, (h, k, a), y in ((0, KNEES[0], -0.12), (1, KNEES[1], 0.12)):
        out[:, h] = np.stack([np.zeros(T), np.full(T, y), hip_h], -1)
        out[:, k] = out[:, h] + THIGH * np.stack(
            [np.sin(flex / 2), np.zeros(T), -np.cos(flex / 2)], -1)
        out[:, a] = out[:, k] + SHIN * np.stack(
            [-np.sin(flex / 2), np.zeros(T), -np.cos(flex / 2)], -1)
    out[:, 0] = out[:, [1, 4]].mean(1)
    lean = np.stack([0.3 * np.sin(flex / 2), np.zeros(T), np.ones(T)], -1)
    lean /= np.linalg.norm(lean, axis=-1, keepdims=True)
    for j, up in ((7, 0.23), (8, 0.47), (9, 0.60), (10, 0.73)):
        out[:, j] = out[:, 0] + up * lean
    for (s, e, w), y in (((11, 12, 13), 0.18), ((14, 15, 16), -0.18)):
        out[:, s] = out[:, 8] + [0, y, 0]
        out[:, e] = out[:, s] + UPPER_ARM * np.array([0, 0, -1.0])
        out[:, w] = out[:, e] + FOREARM * np.stack(
            [np.sin(elbow), np.zeros(T), -np.cos(elbow)], -1)
    return out


def front_camera():
    """3.5 m in front of the subject, 1.3 m high, looking at it: the thighs point at it."""
    C = np.array([3.5, 0.4, 1.3])
    fwd = np.array([0.0, 0.0, 0.7]) - C
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    R = np.stack([right, np.cross(fwd, right), fwd])
    K = [[1400.0, 0, 960.0], [0, 1400.0, 540.0], [0, 0, 1]]
    return Camera('front', K, [-0.1, 0.03, 0.0, 0.0, 0.0], R, -R @ C, (1920, 1080))


def hedged(poses):
    """One camera's lifter hedging between the two folds: each knee moved half way to the
    hip-ankle line (straighter, both bones shorter), hips, ankles and the rest kept."""
    out = poses.copy()
    for h, k, a in KNEES:
        mid = 0.5 * (poses[:, h] + poses[:, a])
        out[:, k] = poses[:, k] + 0.5 * (mid - poses[:, k])
    return out


def knee_rmse(got, ref):
    return float(np.sqrt(np.mean([(flexion_deg(got, *k) - flexion_deg(ref, *k)) ** 2
                                  for k in KNEES])))


def test_hedged_knees_get_their_flexion_back():
    track = squat_track()
    cam = front_camera()
    truth = cam.to_camera(track)
    px = cam.project(track) + np.random.default_rng(0).normal(0, 5.0, track.shape[:2] + (2,))
    lifted = hedged(truth)
    before = knee_rmse(lifted, truth)
    out = limbs.refit_limbs(lifted, px, cam, fps=50.0)
    after = knee_rmse(out, truth)
    assert before > 20 and after < 8 and after < before / 3, (before, after)
    # one length per bone: the shins stay within a centimetre of their track length
    shin = np.linalg.norm(out[:, 3] - out[:, 2], axis=-1)
    assert np.abs(shin - SHIN).max() < 0.02, np.abs(shin - SHIN).max()
    # hips, spine, head and shoulders are not moved
    fixed = [j for j in range(17) if j not in limbs.LIMB_JOINTS]
    assert np.array_equal(out[:, fixed], lifted[:, fixed])


def test_a_track_that_agrees_with_its_2d_stays():
    track = squat_track()
    cam = front_camera()
    truth = cam.to_camera(track)
    out = limbs.refit_limbs(truth, cam.project(track), cam, fps=50.0)
    assert np.linalg.norm(out - truth, axis=-1).max() < 0.005


def test_wrong_keypoints_pull_little_or_not_at_all():
    track = squat_track()
    cam = front_camera()
    truth = cam.to_camera(track)
    px = cam.project(track)
    wrong = np.arange(len(px)) % 4 == 0
    px[wrong, 16] += 300.0                 # the right wrist detected 300 px off, 1 frame in 4
    conf = np.ones(px.shape[:2])
    kept = conf.copy()
    kept[wrong, 16] = 0.0                  # ... at zero confidence: no pull at all
    quiet = limbs.refit_limbs(truth, px, cam, kept, fps=50.0)
    assert np.linalg.norm(quiet - truth, axis=-1).max() < 0.005
    # at full confidence the robust reprojection term moves it a few centimetres, not
    # the 16 cm of the 2D error at that depth
    moved = np.linalg.norm(limbs.refit_limbs(truth, px, cam, conf, fps=50.0)[:, 16]
                           - truth[:, 16], axis=-1)
    assert moved.max() < 0.06, moved.max()


def test_frames_with_a_missing_joint_are_left_alone():
    track = squat_track(60)
    cam = front_camera()
    lifted = hedged(cam.to_camera(track))
    lifted[30, 5] = np.nan
    out = limbs.refit_limbs(lifted, cam.project(track), cam, fps=50.0)
    assert np.isnan(out[30, 5]).all() and np.array_equal(out[30], lifted[30], equal_nan=True)
    assert knee_rmse(out[:30], cam.to_camera(track)[:30]) < 8
    with pytest.raises(ValueError, match='pixel_sigma'):
        limbs.refit_limbs(lifted, cam.project(track), cam, pixel_sigma=0)
    with pytest.raises(ValueError, match='do not match'):
        limbs.refit_limbs(lifted, cam.project(track)[:10], cam)


def test_place_skeletons_refits_offline_only():
    """place_skeletons refits by default offline (what vp3d-offline and vp3d-lift --frame
    world write), never on the causal path (the live world node)."""
    track = squat_track()
    cam = front_camera()
    truth = cam.to_camera(track)
    rel = hedged(truth) - truth[:, :1]
    px = cam.project(track)
    off = W.place_skeletons(rel, px, cam, fps=50.0)
    assert off.limbs_refit and knee_rmse(off.poses_cam, truth) < 8
    plain = W.place_skeletons(rel, px, cam, fps=50.0, refit=False)
    assert not plain.limbs_refit and knee_rmse(plain.poses_cam, truth) > 20
    live = W.place_skeletons(rel, px, cam, fps=50.0, smoothing='causal')
    assert not live.limbs_refit


def test_live_refit_frame_by_frame():
    """CausalLimbs (the world node's): lengths from the frames so far, no look-ahead, no
    smoothing; the hedged squat's knees come back nearly as well as offline once 15 frames
    are in."""
    track = squat_track(300)
    cam = front_camera()
    truth = cam.to_camera(track)
    px = cam.project(track) + np.random.default_rng(1).normal(0, 5.0, track.shape[:2] + (2,))
    lifted = hedged(truth)
    live = limbs.CausalLimbs()
    out = np.stack([live.step(p, k, None, cam) for p, k in zip(lifted, px)])
    assert np.array_equal(out[:14], lifted[:14])          # too few frames for lengths yet
    offline = knee_rmse(limbs.refit_limbs(lifted, px, cam, fps=50.0)[15:], truth[15:])
    now = knee_rmse(out[15:], truth[15:])
    assert now < 10 and now < offline + 2 and knee_rmse(lifted[15:], truth[15:]) > 20, now
    gap = lifted[100].copy()
    gap[3] = np.nan                                        # a missing joint passes unchanged
    assert np.array_equal(live.step(gap, px[100], None, cam), gap, equal_nan=True)
