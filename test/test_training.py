"""Training pipeline: synthesis, projection, one optimisation step, shipped checkpoints.

Self-contained: the motion is synthesised here (no shared data folder needed).
"""
import os

import numpy as np
import pytest
import torch

from vp3d_ros.core.checkpoint import load_checkpoint
from vp3d_ros.core.lifter import SequenceLifter, normalize_screen
from vp3d_ros.core.lifter_config import DEFAULT_CHECKPOINTS
from vp3d_ros.core.model import Architecture, TemporalModel
from vp3d_ros.core.skeletons import H36M17
from vp3d_ros.training import metrics, synth
from vp3d_ros.training.data import Clip, MotionBank
from vp3d_ros.training.losses import (TERMS, bone_consistency, bone_directions, describe,
                                      forward_lean, joint_bends, limb_lengths, training_loss,
                                      trunk_lean)
from vp3d_ros.training.train import output_pad, synth_batch

# A T-pose-ish standing skeleton, z-up, metres (H36M-17 order).
REST = np.array([
    [0, 0, 0.95], [-0.12, 0, 0.95], [-0.12, 0, 0.52], [-0.12, 0, 0.08],
    [0.12, 0, 0.95], [0.12, 0, 0.52], [0.12, 0, 0.08], [0, 0, 1.18], [0, 0, 1.42],
    [0, 0, 1.52], [0, 0, 1.65], [0.17, 0, 1.42], [0.45, 0, 1.42], [0.70, 0, 1.42],
    [-0.17, 0, 1.42], [-0.45, 0, 1.42], [-0.70, 0, 1.42]])


def tiny_clip(n=120, fps=50.0, seed=0, walk=0.5, amplitude=0.25):
    """Walking forward along y while swinging arms and legs."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps
    poses = np.repeat(REST[None], n, axis=0).copy()
    phase = rng.uniform(0, 2 * np.pi)
    swing = amplitude * np.sin(2 * np.pi * 1.2 * t + phase)
    for j, s in ((3, 1), (6, -1), (13, -1), (16, 1)):
        poses[:, j, 1] += s * swing
    poses[:, :, 1] += walk * t[:, None]
    poses[:, :, 0] += rng.uniform(-1, 1)
    return Clip('h36m', 'S1', f'walking_{seed}', fps, poses.astype(np.float32))


def test_projection_known_depth_and_round_trip():
    # Camera 5 m in front of a point at 1 m height, looking at it: lands on the principal point.
    centre = np.array([[0.0, -5.0, 1.0]])
    R = synth.look_at(centre, np.array([[0.0, 0.0, 1.0]]))
    cams = synth.Cameras(R=R, C=centre, f=np.array([1000.0]), c=np.array([[500.0, 400.0]]),
                         size=np.array([[1000.0, 800.0]]))
    pts = np.array([[[[0.0, 0.0, 1.0], [0.5, 0.0, 1.0], [0.0, 0.0, 1.5]]]])  # (1,1,3,3)
    cam = synth.world_to_camera(pts, cams)
    np.testing.assert_allclose(cam[0, 0, 0], [0, 0, 5], atol=1e-9)
    # x right, y down, z forward.
    np.testing.assert_allclose(cam[0, 0, 1], [0.5, 0, 5], atol=1e-9)
    np.testing.assert_allclose(cam[0, 0, 2], [0, -0.5, 5], atol=1e-9)
    px = synth.project(cam, cams.f, cams.c)
    np.testing.assert_allclose(px[0, 0], [[500, 400], [600, 400], [500, 300]], atol=1e-6)
    # Back-projection at the known depth recovers the camera-frame points.
    z = cam[..., 2:]
    back = np.concatenate([(px - cams.c[:, None, None]) / 1000.0 * z, z], -1)
    np.testing.assert_allclose(back, cam, atol=1e-9)
    # Normalisation matches the lifter's.
    np.testing.assert_allclose(synth.normalize(px, cams.size)[0, 0],
                               normalize_screen(px[0, 0], 1000, 800))


def test_random_cameras_see_the_subject():
    rng = np.random.default_rng(3)
    n = 200
    world = np.repeat(REST[None, None], n, axis=0)
    cams = synth.sample_cameras(n, np.zeros((n, 2)), rng)
    assert np.allclose(cams.R @ cams.R.transpose(0, 2, 1), np.eye(3), atol=1e-9)
    cam = synth.world_to_camera(world, cams)
    assert (cam[..., 2] > 2.0).all()
    px = synth.project(cam, cams.f, cams.c)
    inside = ((px[..., 0] > 0) & (px[..., 0] < cams.size[:, None, None, 0]) &
              (px[..., 1] > 0) & (px[..., 1] < cams.size[:, None, None, 1]))
    assert inside.mean() > 0.9
    assert (cams.size[:, 0] > cams.size[:, 1]).any() and (cams.size[:, 0] < cams.size[:, 1]).any()


def test_bones_noise_and_flip():
    rng = np.random.default_rng(0)
    poses = np.repeat(REST[None, None], 4, axis=0)
    f = synth.sample_bone_factors(4, rng)
    out = synth.randomize_bones(poses, f)
    lengths = metrics.bone_lengths(out[:, 0]) / metrics.bone_lengths(poses[:, 0])
    bones = np.array(H36M17.bones)
    np.testing.assert_allclose(lengths, f[:, bones[:, 1]], rtol=1e-9)
    px = rng.uniform(100, 200, (3, 30, 17, 2))
    noisy = synth.detector_noise(px, rng, synth.NoiseLevel(clean_prob=0.0, drop=(0.2, 0.2)))
    assert noisy.shape == px.shape and np.isfinite(noisy).all() and not np.allclose(noisy, px)
    y = rng.normal(size=(2, 5, 17, 3))
    np.testing.assert_allclose(synth.flip_pairs(synth.flip_pairs(y)), y)


def test_mediapipe_definitions_lower_and_narrow_the_hips():
    rng = np.random.default_rng(2)
    poses = np.repeat(REST[None, None], 50, axis=0)
    same = synth.mediapipe_definitions(poses, rng, synth.Definitions(prob=0.0))
    np.testing.assert_array_equal(same, poses)
    level = synth.Definitions(prob=1.0, hip_drop=(0.2, 0.2), hip_width=(0.7, 0.7),
                              shoulder_width=(1.2, 1.2), mapped_torso=1.0)
    out = synth.mediapipe_definitions(poses, rng, level)
    trunk = REST[8, 2] - REST[0, 2]
    # Hips and root move down the trunk by 0.2 x its length, hips 0.7 as far apart.
    np.testing.assert_allclose(out[:, :, [0, 1, 4], 2], REST[0, 2] - 0.2 * trunk)
    np.testing.assert_allclose(out[:, :, 4, 0] - out[:, :, 1, 0], 0.7 * 0.24)
    np.testing.assert_allclose(out[:, :, 0], (out[:, :, 1] + out[:, :, 4]) / 2)
    np.testing.assert_allclose(out[:, :, 11, 0] - out[:, :, 14, 0], 1.2 * 0.34)
    # Torso rebuilt as the 2D mapping does: Thorax mid-shoulders, Spine mid-way down.
    np.testing.assert_allclose(out[:, :, 8], (out[:, :, 11] + out[:, :, 14]) / 2)
    np.testing.assert_allclose(out[:, :, 7], (out[:, :, 0] + out[:, :, 8]) / 2)
    # Limbs below the hips and beyond the shoulders are untouched.
    np.testing.assert_array_equal(out[:, :, [2, 3, 5, 6, 12, 13, 15, 16]],
                                  poses[:, :, [2, 3, 5, 6, 12, 13, 15, 16]])


def test_synth_batch_shapes_and_targets():
    bank = MotionBank.from_clips([tiny_clip(seed=s) for s in range(3)])
    rng = np.random.default_rng(1)
    for arch in (Architecture((3, 3), 16, causal=True), Architecture((3, 3), 16, causal=False)):
        x, y = synth_batch(bank, 5, arch, 4, rng, definitions=0.5)
        assert x.shape == (5, arch.receptive_field - 1 + 4, 17, 2) and x.dtype == np.float32
        assert y.shape == (5, 4, 17, 3)
        assert np.isfinite(x).all() and np.isfinite(y).all()
        np.testing.assert_allclose(y[:, :, 0], 0)
        assert output_pad(arch) == (8 if arch.causal else 4)
    # Clean, unflipped, no bone change: the target's bone lengths are the mocap's.
    bank = MotionBank.from_clips([tiny_clip(seed=s, amplitude=0.0) for s in range(2)])
    x, y = synth_batch(bank, 3, Architecture((1,), 8), 2, rng, noise=None, bones=False, flip=False)
    np.testing.assert_allclose(metrics.bone_lengths(y[:, 0]),
                               np.broadcast_to(metrics.bone_lengths(REST), (3, 16)), atol=1e-5)


def test_limb_direction_term_measures_the_bend():
    rest = torch.from_numpy(np.repeat(REST[None, None], 2, axis=0)).float()
    assert bone_directions(rest, rest).item() < 1e-6
    # Bend the right shin forward by 60 degrees: one of eight limb bones is off by a chord
    # of 2 sin(30 deg) = 1; lengthening a bone changes nothing.
    bent = rest.clone()
    shin = REST[3] - REST[2]
    bent[:, :, 3] = torch.tensor(REST[2] + np.linalg.norm(shin) * np.array(
        [0, np.sin(np.pi / 3), -np.cos(np.pi / 3)]))
    assert abs(bone_directions(bent, rest).item() - 1 / 8) < 1e-5
    longer = rest.clone()
    longer[:, :, 13] = torch.tensor(REST[12] + 1.5 * (REST[13] - REST[12]))
    assert bone_directions(longer, rest).item() < 1e-6


def test_bend_term_measures_the_angle_not_which_way_it_folds():
    rest = torch.from_numpy(np.repeat(REST[None, None], 2, axis=0)).float()
    assert joint_bends(rest, rest).item() < 1e-4
    # The right knee bent 60 degrees with the foot behind (y > 0) or in front (y < 0): the
    # direction term sees the two answers a chord of 2 sin(60 deg) apart, the bend term not
    # at all; against the straight leg it is 60 degrees at one of six angles.
    shin = np.linalg.norm(REST[3] - REST[2])
    folds = []
    for side in (1, -1):
        bent = rest.clone()
        bent[:, :, 3] = torch.tensor(REST[2] + shin * np.array(
            [0, side * np.sin(np.pi / 3), -np.cos(np.pi / 3)]))
        folds.append(bent)
    assert abs(joint_bends(folds[0], rest).item() - np.pi / 3 / 6) < 1e-4
    assert joint_bends(folds[0], folds[1]).item() < 1e-4
    assert abs(bone_directions(folds[0], folds[1]).item() - 2 * np.sin(np.pi / 3) / 8) < 1e-5
    # the thigh swung forward 90 degrees with the shin hanging: hip and knee angles 90 each
    sit = rest.clone()
    sit[:, :, 2] = torch.tensor(REST[1] + np.linalg.norm(REST[2] - REST[1]) * np.array([0, -1, 0]))
    sit[:, :, 3] = sit[:, :, 2] + torch.tensor(REST[3] - REST[2])
    assert abs(joint_bends(sit, rest).item() - (np.pi / 2 + np.pi / 2) / 6) < 1e-4


def test_length_term_sees_a_shortened_limb_not_a_fold():
    rest = torch.from_numpy(np.repeat(REST[None, None], 2, axis=0)).float()
    # the right knee bent 60 degrees either way: same lengths, no length error
    shin = np.linalg.norm(REST[3] - REST[2])
    bent = rest.clone()
    bent[:, :, 3] = torch.tensor(REST[2] + shin * np.array([0, np.sin(np.pi / 3),
                                                            -np.cos(np.pi / 3)]))
    assert limb_lengths(bent, rest).item() < 1e-6
    # the average of the two folds: the shin is cos(60 deg) of its length, 8 limb bones
    avg = rest.clone()
    avg[:, :, 3] = torch.tensor(REST[2] + shin * np.array([0, 0, -np.cos(np.pi / 3)]))
    assert abs(limb_lengths(avg, rest).item() - shin * (1 - np.cos(np.pi / 3)) / 8) < 1e-6


def test_lean_term_measures_the_forward_lean_the_hips_define():
    """Camera frame (x right, y down, z forward). Forward is the body's own (up x the hips'
    left-right axis), so the term tells a forward from a backward lean whichever way the
    subject faces, and a sideways lean (in the image) is no forward lean."""
    cam = torch.from_numpy(np.repeat(REST[None, None], 2, axis=0)).float()
    cam = torch.stack([cam[..., 0], -cam[..., 2], cam[..., 1]], dim=-1)   # z up -> y down
    up = cam - cam[:, :, :1]            # left hip on +x: the subject faces the camera (-z)
    assert trunk_lean(up, up).item() < 1e-4
    trunk = torch.linalg.norm(up[0, 0, 8]).item()

    def leaning(x, deg, axis):
        out = x.clone()
        d = torch.zeros(3)
        d[1] = -trunk * np.cos(np.radians(deg))
        d[axis] = trunk * np.sin(np.radians(deg))
        out[:, :, 8] = d
        return out

    towards, away = leaning(up, 20, 2) * torch.tensor([1.0, 1.0, -1.0]), leaning(up, 20, 2)
    assert abs(forward_lean(towards)[0, 0].item() - np.radians(20)) < 1e-4
    assert abs(forward_lean(away)[0, 0].item() + np.radians(20)) < 1e-4
    assert abs(trunk_lean(towards, up).item() - np.radians(20)) < 1e-4
    assert abs(trunk_lean(towards, away).item() - np.radians(40)) < 1e-4
    # turned round (left hip on -x), leaning away from the camera is leaning forward
    back = up * torch.tensor([-1.0, 1.0, -1.0])
    assert abs(forward_lean(leaning(back, 20, 2))[0, 0].item() - np.radians(20)) < 1e-4
    # sideways, in the image plane: no forward lean
    assert abs(forward_lean(leaning(up, 30, 0))[0, 0].item()) < 1e-4


def test_training_loss_adds_each_term_at_its_weight_and_says_so():
    """The table of terms (losses.TERMS) drives the loss, its words in the sidecar and the
    command line's --<name>-weight flags alike."""
    from vp3d_ros.training.train import build_parser
    rng = torch.Generator().manual_seed(0)
    y = torch.tensor(REST, dtype=torch.float32)[None, None].repeat(2, 3, 1, 1)
    pred = y + 0.03 * torch.randn(y.shape, generator=rng)
    w = {'bone': 1.0, 'direction': 0.1, 'angle': 0.3, 'length': 0.0, 'lean': 0.0}
    by_hand = (torch.linalg.norm(pred - y, dim=-1).mean() + bone_consistency(pred)
               + 0.1 * bone_directions(pred, y) + 0.3 * joint_bends(pred, y))
    assert abs(training_loss(pred, y, w).item() - by_hand.item()) < 1e-6
    assert describe(w) == ('MPJPE (root-relative camera-frame 3D) + 1 x bone-length deviation '
                           'over the window + 0.1 x limb-direction error (unit-vector chord) '
                           '+ 0.3 x knee, elbow and hip angle error (radians)')
    args = build_parser().parse_args(['--out', 'x.bin', '--angle-weight', '0.3'])
    assert {t.name: getattr(args, f'{t.name}_weight') for t in TERMS} == w


def test_procrustes_metric_is_similarity_invariant():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(4, 17, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    pred = 1.3 * gt @ q.T + 0.5
    assert metrics.p_mpjpe(pred, gt).max() < 1e-9
    assert metrics.mpjpe(gt + 1.0, gt).max() < 1e-12


def test_one_training_step_reduces_loss():
    torch.manual_seed(0)
    bank = MotionBank.from_clips([tiny_clip(seed=s) for s in range(2)])
    arch = Architecture((3, 3), 32, causal=False, dropout=0.0)
    x, y = synth_batch(bank, 8, arch, 4, np.random.default_rng(0))
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = TemporalModel(arch).train()

    def loss():
        return torch.linalg.norm(model(x) - y, dim=-1).mean()

    # Plain gradient steps (torch.optim's first step pulls in heavy lazy imports).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only contend with other work
    try:
        with torch.no_grad():
            first = loss().item()
        for _ in range(5):
            model.zero_grad()
            loss().backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.02 * p.grad
        with torch.no_grad():
            assert loss().item() < first
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize('kind', ['causal', 'symmetric'])
def test_shipped_checkpoints_load_and_lift(kind):
    path = DEFAULT_CHECKPOINTS[kind]
    assert os.path.isfile(path), f'shipped checkpoint missing: {path}'
    ckpt = load_checkpoint(path)
    side = ckpt.sidecar
    assert side['input_layout'] == 'h36m'
    assert ckpt.arch.causal == (kind == 'causal') == side['architecture']['causal']
    assert list(ckpt.arch.filter_widths) == side['architecture']['filter_widths']
    assert 'non-commercial' in side['licence']
    assert os.path.getsize(path) < 12.5e6
    # A synthetic walk seen by a 1000x1000 camera 5 m away.
    clip = tiny_clip(n=60)
    centre = np.array([[clip.poses[:, 0, 0].mean(), -5.0, 1.2]])
    R = synth.look_at(centre, np.array([[centre[0, 0], 0.5, 1.0]]))
    cams = synth.Cameras(R=R, C=centre, f=np.array([1150.0]), c=np.array([[500.0, 500.0]]),
                         size=np.array([[1000.0, 1000.0]]))
    cam = synth.world_to_camera(clip.poses[None].astype(np.float64), cams)
    px = synth.project(cam, cams.f, cams.c)[0]
    out = SequenceLifter(ckpt.build(), input_layout='h36m').lift(px, 1000, 1000)
    assert out.shape == (60, 17, 3) and np.isfinite(out).all()
    # Sane: feet below the hips (y down) and a plausible size.
    assert (out[:, [3, 6], 1] > out[:, [0], 1]).mean() > 0.9
    assert 0.2 < np.abs(out[:, 10] - out[:, 3]).max() < 3.0


def test_feeder_workers_give_independent_batches_and_stop():
    from vp3d_ros.training.feeder import BatchFeeder
    bank = MotionBank.from_clips([tiny_clip(seed=s) for s in range(3)])
    arch = Architecture((3, 3), 16, causal=True)

    def make(rng):
        return synth_batch(bank, 4, arch, 2, rng)
    with BatchFeeder(make, workers=0, seed=3) as a, BatchFeeder(make, workers=0, seed=3) as b:
        np.testing.assert_array_equal(a.next()[0], b.next()[0])   # in-process: seeded
    with BatchFeeder(make, workers=2, seed=3) as f:
        procs = list(f.procs)
        batches = [f.next() for _ in range(4)]
    assert not any(p.is_alive() for p in procs)
    for x, y in batches:
        assert x.shape == (4, arch.receptive_field - 1 + 2, 17, 2) and y.shape == (4, 2, 17, 3)
    assert len({b[0].tobytes() for b in batches}) == 4   # two workers, two random streams


def _write_mocap(folder, name, clips):
    folder.mkdir(exist_ok=True)
    np.savez(folder / name, joint_names=np.array(H36M17.joints), fps=np.float64(50.0),
             sequences=np.array([c.name for c in clips]), **{c.name: c.poses for c in clips})


def test_pack_round_trip_keeps_clips_and_split(tmp_path):
    from vp3d_ros.training import pack
    from vp3d_ros.training.data import load_clips, split_clips
    src = tmp_path / 'mocap'
    _write_mocap(src, 'h36m_S1.npz', [tiny_clip(seed=s) for s in range(2)])
    _write_mocap(src, 'h36m_S8.npz', [tiny_clip(seed=5)])
    worst = pack.pack(str(src), str(tmp_path / 'packed.npz'))
    assert worst < 5e-4
    pack.unpack(str(tmp_path / 'packed.npz'), str(tmp_path / 'back'))
    before, after = load_clips(str(src)), load_clips(str(tmp_path / 'back'))
    assert [c.key for c in before] == [c.key for c in after]
    for a, b in zip(before, after):
        assert a.fps == b.fps and b.poses.dtype == np.float32
        assert np.abs(a.poses - b.poses).max() <= worst + 1e-7
    assert [len(x) for x in split_clips(after)] == [2, 1]


def test_training_command_with_workers_writes_a_pair_that_relocates(tmp_path):
    """The whole training command (what scripts/train_on_device.sh runs on a GPU), tiny:
    worker-fed batches, a checkpoint + sidecar, moved by relocate() without its old path."""
    from vp3d_ros.core.checkpoint import read_sidecar
    from vp3d_ros.training import train
    data = tmp_path / 'mocap'
    _write_mocap(data, 'h36m_S1.npz', [tiny_clip(n=200, seed=s) for s in range(2)])
    _write_mocap(data, 'h36m_S8.npz', [tiny_clip(n=200, seed=5)])
    out = tmp_path / 'device_out' / 'causal.bin'
    train.main(['--kind', 'causal', '--filter-widths', '3', '3', '--channels', '32',
                '--batch', '4', '--outputs-per-window', '4', '--minutes', '0.05',
                '--workers', '1', '--device', 'cpu', '--data', str(data), '--out', str(out),
                '--log-every', '1000'])
    side = read_sidecar(str(out))
    assert side['training']['history'][-1]['workers'] == 1
    assert side['training']['iterations'] > 0
    dst = tmp_path / 'models' / 'lifter.bin'
    dst.parent.mkdir()
    train.relocate(str(out), str(dst))
    text = (tmp_path / 'models' / 'lifter.yaml').read_text()
    assert str(out) not in text and f'--out {dst}' in text
    ckpt = load_checkpoint(str(dst))
    lifter = SequenceLifter(ckpt.build(), input_layout='h36m')
    assert np.isfinite(lifter.lift(np.random.default_rng(0).uniform(100, 500, (30, 17, 2)),
                                   640, 480)).all()


def test_resuming_a_shorter_model_grows_it_without_changing_its_poses(tmp_path):
    """train --filter-widths with one width more than --resume's checkpoint: the trained
    blocks are kept and the new last block starts as the identity, so the grown model
    lifts the same poses (on the frames both see) before it trains; a checkpoint that is
    not a prefix of the new model is refused by name."""
    from vp3d_ros.training import train
    small = TemporalModel(Architecture((3, 3), channels=16, dropout=0.0))
    for p in small.parameters():
        torch.nn.init.normal_(p, std=0.2)
    small.eval()
    sd = small.state_dict()
    big = TemporalModel(Architecture((3, 3, 3), channels=16, dropout=0.0))
    assert train.load_grown(big, sd) == 1
    big.eval()
    x = torch.randn(1, 60, 17, 2)
    with torch.no_grad():
        assert torch.allclose(big(x), small(x[:, 9:-9]), atol=1e-6)
    assert train.load_grown(TemporalModel(Architecture((3, 3), channels=16)), sd) == 0
    with pytest.raises(RuntimeError, match='size mismatch'):
        train.load_grown(TemporalModel(Architecture((3, 3, 3), channels=32)), sd)
    with pytest.raises(RuntimeError, match='Unexpected key'):
        train.load_grown(TemporalModel(Architecture((3,), channels=16)), sd)
    # the training command resumes through it
    data = tmp_path / 'mocap'
    _write_mocap(data, 'h36m_S1.npz', [tiny_clip(n=200, seed=s) for s in range(2)])
    _write_mocap(data, 'h36m_S8.npz', [tiny_clip(n=200, seed=5)])
    first, grown = tmp_path / 'small.bin', tmp_path / 'grown.bin'
    common = ['--kind', 'symmetric', '--channels', '16', '--batch', '4',
              '--outputs-per-window', '4', '--minutes', '0.02', '--data', str(data),
              '--log-every', '1000']
    train.main(common + ['--filter-widths', '3', '3', '--out', str(first)])
    train.main(common + ['--filter-widths', '3', '3', '3', '--resume', str(first),
                         '--out', str(grown)])
    ckpt = load_checkpoint(str(grown))
    assert ckpt.arch.filter_widths == (3, 3, 3)


def test_flexion_boost_weights_clips_with_deeply_bent_knees():
    from vp3d_ros.training.data import deep_flexion_fraction
    straight = tiny_clip(seed=0, amplitude=0.0)
    kneel = tiny_clip(seed=1, amplitude=0.0)
    # fold both shins back under the thighs (knee flexion 150 deg) for half the frames
    p = kneel.poses.copy()
    half = len(p) // 2
    for knee, foot in ((2, 3), (5, 6)):
        shin = np.linalg.norm(REST[foot] - REST[knee])
        p[:half, foot] = p[:half, knee] + shin * np.array(
            [0, -np.sin(np.radians(30)), np.cos(np.radians(30))])
    kneel = Clip(kneel.source, kneel.subject, kneel.name, kneel.fps, p)
    assert deep_flexion_fraction(straight.poses) == 0.0
    assert abs(deep_flexion_fraction(kneel.poses) - 0.5) < 0.01
    plain = MotionBank.from_clips([straight, kneel]).weights
    boosted = MotionBank.from_clips([straight, kneel], flexion_boost=4.0).weights
    np.testing.assert_allclose(plain, [0.5, 0.5])
    np.testing.assert_allclose(boosted, [1 / 4, 3 / 4])   # 1 : (1 + 4 x 0.5)


def test_limb_direction_term_is_tame_at_the_all_zero_start():
    """A network starts at the all-zero pose (zero-initialised output layer): its bones have
    ~0 length, where unit vectors have unbounded gradients. With a 1e-6 floor a from-scratch
    run's loss climbed from 0.5 to 1.3 m; the floor of DIRECTION_FLOOR_M keeps them bounded."""
    target = torch.from_numpy(np.repeat(REST[None, None], 2, axis=0)).float()
    pred = (1e-7 * torch.randn(2, 1, 17, 3)).requires_grad_()
    bone_directions(pred, target).backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().max().item() < 50.0, pred.grad.abs().max()


def _train_tiny(tmp_path, *extra):
    """A few seconds of the training command on tiny mocap (two train clips, one S8 clip for
    validation); -> (the data folder, the checkpoint written)."""
    from vp3d_ros.training import train
    data = tmp_path / 'mocap'
    _write_mocap(data, 'h36m_S1.npz', [tiny_clip(n=200, seed=s) for s in range(2)])
    _write_mocap(data, 'h36m_S8.npz', [tiny_clip(n=200, seed=5)])
    out = tmp_path / 'w.bin'
    train.main(['--kind', 'causal', '--filter-widths', '3', '3', '--channels', '16',
                '--batch', '4', '--outputs-per-window', '4', '--minutes', '0.02',
                '--data', str(data), '--out', str(out), '--log-every', '1000', *extra])
    return data, out


def test_source_weight_option_reweights_sampling_and_is_recorded(tmp_path):
    """train --source-weight cmu=5: the CMU clips' sampling weight x5 on top of duration,
    written into the sidecar; a typo or a non-positive weight is refused, not ignored."""
    from vp3d_ros.core.checkpoint import read_sidecar
    from vp3d_ros.training import train
    assert train.parse_source_weights(['cmu=5', 'bandai=0.5']) == {'cmu': 5.0, 'bandai': 0.5}
    for bad in (['cmx=5'], ['cmu'], ['cmu=x'], ['cmu=0']):
        with pytest.raises(SystemExit):
            train.parse_source_weights(bad)
    h36m, cmu = tiny_clip(seed=0), tiny_clip(seed=1)
    cmu = Clip('cmu', '', 'train_x', cmu.fps, cmu.poses)
    np.testing.assert_allclose(MotionBank.from_clips([h36m, cmu], {'cmu': 5.0}).weights,
                               [1 / 6, 5 / 6])
    _, out = _train_tiny(tmp_path, '--source-weight', 'h36m=2')
    side = read_sidecar(str(out))['training']
    assert side['history'][-1]['source_weight'] == {'h36m': 2.0}
    assert side['source_weights'].startswith('h36m x2')


def test_validate_lands_a_stopped_runs_snapshot_with_the_full_validation(tmp_path):
    """train --validate: a snapshot whose sidecar holds only the quick check (a run stopped
    before its --minutes) gets the full validation a finished run writes, the same figures."""
    from vp3d_ros.core.checkpoint import read_sidecar
    from vp3d_ros.training import train
    data, out = _train_tiny(tmp_path)
    side = read_sidecar(str(out))
    finished = {k: side['validation'][k] for k in ('clean_2d', 'noisy_2d')}
    for k in finished:                      # as an intermediate snapshot leaves it
        del side['validation'][k]
    side['validation']['quick_clean_2d_no_flip'] = {'all_mpjpe': 1.0}
    train.write_sidecar(str(out), side)
    assert train.main(['--validate', '--out', str(out), '--data', str(data)]) == 0
    val = read_sidecar(str(out))['validation']
    assert {k: val[k] for k in finished} == finished
    assert val['quick_clean_2d_no_flip'] == {'all_mpjpe': 1.0} and 'train --validate' in val['note']
