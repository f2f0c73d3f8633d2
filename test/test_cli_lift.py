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
