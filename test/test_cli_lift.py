"""vp3d-lift from outside: a real subprocess on .npy files."""
import subprocess
import sys

import numpy as np
import pytest

from vp3d_ros.core.lifter import SequenceLifter


def run_lift(*args):
    return subprocess.run([sys.executable, '-m', 'vp3d_ros.cli.lift', *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize('causal', [False, True])
@pytest.mark.parametrize('flip', [True, False])
def test_cli_matches_core(make_checkpoint, tmp_path, causal, flip):
    path, model = make_checkpoint((3, 3, 3), 32, causal)
    kp = np.random.default_rng(1).uniform(0, 640, size=(45, 17, 2)).astype(np.float32)
    np.save(tmp_path / 'kp.npy', kp)
    args = [tmp_path / 'kp.npy', '--checkpoint', path, '--layout', 'coco', '--width', 640,
            '--height', 480, '--filter-widths', '3,3,3', '--channels', 32, '--out',
            tmp_path / 'out.npy']
    args += ['--causal'] if causal else []
    args += [] if flip else ['--no-flip']
    r = run_lift(*args)
    assert r.returncode == 0, r.stderr
    out = np.load(tmp_path / 'out.npy')
    ref = SequenceLifter(model, 'coco', flip=flip).lift(kp, 640, 480)
    assert out.shape == (45, 17, 3)
    assert np.abs(out - ref).max() < 1e-5


def test_cli_errors(make_checkpoint, tmp_path):
    path, _ = make_checkpoint((3, 3, 3), 32)
    np.save(tmp_path / 'bad.npy', np.zeros((10, 16, 2)))
    r = run_lift(tmp_path / 'bad.npy', '--checkpoint', path, '--width', 10, '--height', 10,
                 '--out', tmp_path / 'o.npy')
    assert r.returncode == 2 and '(T, 17, 2)' in r.stderr
    np.save(tmp_path / 'kp.npy', np.zeros((10, 17, 2)))
    r = run_lift(tmp_path / 'kp.npy', '--checkpoint', path, '--width', 10, '--height', 10,
                 '--filter-widths', '3,3,3,3,3', '--out', tmp_path / 'o.npy')
    assert r.returncode == 2 and 'does not match' in r.stderr
    r = run_lift(tmp_path / 'kp.npy', '--checkpoint', tmp_path / 'nope.bin', '--width', 10,
                 '--height', 10, '--out', tmp_path / 'o.npy')
    assert r.returncode == 2 and 'not found' in r.stderr
    for height in ('-1.7', '0.05', '170'):   # metres, not a sign error, not centimetres
        r = run_lift(tmp_path / 'kp.npy', '--checkpoint', path, '--width', 10, '--height', 10,
                     '--frame', 'world', f'--subject-height={height}', '--out',
                     tmp_path / 'o.npy')
        assert r.returncode == 2 and 'standing height in metres' in r.stderr, r.stderr
        assert 'Traceback' not in r.stderr
    assert not (tmp_path / 'o.npy').exists()


def test_cli_rigid_bones_gives_one_length_per_bone(tmp_path):
    """--rigid-bones with the shipped offline model on a walking projection: every bone is
    its median length in every frame, directions are the lifter's, the Hip stays at 0."""
    from vp3d_ros.core.skeletons import H36M17
    from vp3d_ros.geometry.bones import median_bone_lengths
    from test_training import tiny_clip
    from vp3d_ros.training import synth
    world = tiny_clip(n=90, amplitude=0.3).poses[None].astype(np.float64)
    cams = synth.sample_cameras(1, world[:, :, 0, :2].mean(axis=1), np.random.default_rng(4))
    px = synth.project(synth.world_to_camera(world, cams), cams.f, cams.c)[0]
    np.save(tmp_path / 'kp.npy', px)
    w, h = cams.size[0]
    outs = {}
    for flag in ([], ['--rigid-bones']):
        r = run_lift(tmp_path / 'kp.npy', '--width', w, '--height', h, '--out',
                     tmp_path / 'o.npy', *flag)
        assert r.returncode == 0, r.stderr
        outs[bool(flag)] = np.load(tmp_path / 'o.npy')
    plain, rigid = outs[False], outs[True]
    par = np.array(H36M17.parents)
    bones = lambda p: np.linalg.norm(p[:, 1:] - p[:, par[1:]], axis=-1)  # noqa: E731
    assert bones(plain).std(axis=0).max() > 1e-3          # the network's lengths vary
    np.testing.assert_allclose(bones(rigid), np.broadcast_to(
        median_bone_lengths(plain)[1:], bones(rigid).shape), atol=1e-9)
    unit = lambda p: (p[:, 1:] - p[:, par[1:]]) / bones(p)[..., None]  # noqa: E731
    np.testing.assert_allclose(unit(rigid), unit(plain), atol=1e-9)
    assert np.abs(rigid[:, 0]).max() == 0.0
