"""Checkpoints exactly as VideoPose3D's run.py writes them, by every numpy and torch that
wrote the files people have; what is refused, and why; the trajectory model.

run.py saves ``{'epoch', 'lr', 'random_state', 'optimizer', 'model_pos', 'model_traj',
'random_state_semi'}``: ``random_state`` is the data generator's ``np.random.RandomState``
object, ``optimizer`` Adam's state dict, ``model_traj``/``random_state_semi`` None unless
semi-supervised. The fixtures below pickle real RandomState objects the way each numpy
reduces them: numpy 1.26 (ours) natively; numpy 1.1x, the official 2018-19 files, as its
``RandomState.__reduce__`` did (``numpy.random.__RandomState_ctor``, the legacy state
tuple); numpy 2 as its reducers do (``__randomstate_ctor`` of an ``MT19937`` bit generator,
arrays via ``numpy._core.multiarray._reconstruct``). The numpy-2 stream of
``RandomState(1234)`` after ``rand(3)`` was checked byte-identical to numpy 2.2.6's own
``pickle.dumps(..., protocol=2)``.
"""
import io
import os
import pickle
import subprocess
import sys
import types

import numpy as np
import numpy.core.multiarray as np_multiarray
import numpy.random._pickle as np_random_pickle
import pytest
import torch

from conftest import randomize_model
from test_robustness_common import rig  # noqa: F401  (fixture)
from vp3d_ros.core.checkpoint import (TRAINING_STATE_GLOBALS, CheckpointError, DiscardedState,
                                 _torch_load, load_checkpoint)
from vp3d_ros.core.lifter import SequenceLifter, StreamingLifter, lift_queued
from vp3d_ros.core.model import Architecture, build_model

FW, CH = (3, 3, 3), 32
RS_CTOR_2018 = getattr(np.random, '__RandomState_ctor')  # numpy 1.1x's reducer, kept by 1.26
RS_CTOR = getattr(np_random_pickle, '__randomstate_ctor')
BG_CTOR = getattr(np_random_pickle, '__bit_generator_ctor')
STYLES = ('numpy1.26', 'numpy1.1x', 'numpy2')
# The globals each style's pickle names (GLOBAL opcodes are "module\nname\n").
STYLE_NAMES = {
    'numpy1.26': [b'numpy.random._pickle\n__randomstate_ctor\n',
                  b'numpy.random._pickle\n__bit_generator_ctor\n',
                  b'numpy.core.multiarray\n_reconstruct\n'],
    'numpy1.1x': [b'numpy.random\n__RandomState_ctor\n', b'numpy.core.multiarray\n_reconstruct\n'],
    'numpy2': [b'numpy.random._pickle\n__randomstate_ctor\n',
               b'numpy.random._pickle\n__bit_generator_ctor\n',
               b'numpy.random._mt19937\nMT19937\n', b'numpy._core.multiarray\n_reconstruct\n'],
}


class StylePickler(pickle._Pickler):
    """The pure-Python pickler, reducing RandomState (and arrays) as ``style``'s numpy does."""
    style = 'numpy1.26'

    def reducer_override(self, obj):
        if self.style == 'numpy1.1x' and isinstance(obj, np.random.RandomState):
            return RS_CTOR_2018, (), obj.get_state(legacy=True)
        if self.style == 'numpy2':
            if isinstance(obj, np.random.RandomState):
                state = obj.get_state(legacy=False)
                bit_gen = np.random.MT19937()
                bit_gen.state = {'bit_generator': 'MT19937', 'state': state['state']}
                return RS_CTOR, (bit_gen,), state
            if isinstance(obj, np.random.MT19937):
                return BG_CTOR, (type(obj),), (obj.state, None)
        return NotImplemented

    def save_global(self, obj, name=None):
        if self.style == 'numpy2' and obj is np_multiarray._reconstruct:
            self.write(pickle.GLOBAL + b'numpy._core.multiarray\n_reconstruct\n')
            self.memoize(obj)
            return
        super().save_global(obj, name)


def pickle_module(style):
    """A pickle module for ``torch.save(pickle_module=...)`` writing ``style``'s reductions."""
    cls = type(f'Pickler_{style}', (StylePickler,), {'style': style})
    mod = types.ModuleType(f'pickle_{style}')
    mod.Pickler = cls
    mod.dump = lambda obj, f, protocol=2: cls(f, protocol).dump(obj)
    return mod


def data_generator_state(seed=1234):
    """What run.py's ChunkedGenerator.random_state() returns: its RandomState, used."""
    rs = np.random.RandomState(seed)
    rs.permutation(100)
    return rs


def trained_models(fw=FW, channels=CH, causal=False, semi=True, seed=0):
    """model_pos (+ model_traj with 1 output joint, as run.py builds it in semi-supervised
    training) after one real Adam step: -> (pos, traj or None, Adam state_dict)."""
    pos = randomize_model(build_model(Architecture(fw, channels, causal)), seed)
    traj = randomize_model(build_model(Architecture(fw, channels, causal, num_joints_out=1)),
                           seed + 1) if semi else None
    models = [m for m in (pos, traj) if m is not None]
    params = [p for m in models for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3, amsgrad=True)
    x = torch.randn(2, pos.receptive_field + 3, 17, 2, generator=torch.Generator().manual_seed(seed))
    for m in models:
        m.train()
    loss = sum(m(x).pow(2).mean() for m in models)
    loss.backward()
    opt.step()
    for m in models:
        m.eval()
    return pos, traj, opt.state_dict()


def write_run_py_checkpoint(path, style='numpy1.26', legacy=False, semi=True, causal=False,
                            fw=FW, channels=CH, seed=0):
    """A checkpoint laid out and pickled as run.py saves it; -> (pos, traj or None)."""
    pos, traj, opt_state = trained_models(fw, channels, causal, semi, seed)
    payload = {
        'epoch': 80,
        'lr': 0.00095 * 0.95 ** 79,
        'random_state': data_generator_state(),
        'optimizer': opt_state,
        'model_pos': pos.state_dict(),
        'model_traj': traj.state_dict() if semi else None,
        'random_state_semi': data_generator_state(4321) if semi else None,
    }
    torch.save(payload, str(path), pickle_module=pickle_module(style),
               _use_new_zipfile_serialization=not legacy)
    return pos, traj


def frames_2d(n=40, seed=3):
    rng = np.random.default_rng(seed)
    return 300 + 60 * rng.normal(size=(n, 17, 2))


@pytest.mark.parametrize('style', STYLES)
@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
@pytest.mark.parametrize('semi', [False, True], ids=['supervised', 'semi'])
def test_run_py_checkpoints_load(tmp_path, style, legacy, semi):
    path = tmp_path / f'{style}.bin'
    pos, traj = write_run_py_checkpoint(path, style, legacy, semi)
    raw = path.read_bytes()
    assert raw.startswith(b'PK\x03\x04') != legacy
    for name in STYLE_NAMES[style]:  # the fixture really names what that numpy writes
        assert name in raw, name

    ck = load_checkpoint(str(path))
    assert ck.arch.filter_widths == FW and ck.arch.channels == CH
    assert ck.has_trajectory_model == semi
    x = torch.randn(1, pos.receptive_field + 5, 17, 2)
    with torch.no_grad():
        assert torch.equal(ck.build()(x), pos(x))
        if semi:
            assert torch.equal(ck.build_trajectory()(x), traj(x))
    obj = _torch_load(str(path))
    assert isinstance(obj['random_state'], DiscardedState)  # inert: no RNG rebuilt
    assert obj['epoch'] == 80 and isinstance(obj['optimizer']['state'], dict)
    assert isinstance(obj['random_state_semi'], DiscardedState if semi else type(None))
    left = [g for g in torch.serialization.get_safe_globals()
            if isinstance(g, tuple) and g[0] is DiscardedState]
    assert left == []  # the allow-list applies while loading only


def test_fixture_streams_are_the_real_thing(tmp_path):
    """Outside the weights-only loader, numpy 1.26 rebuilds the 1.26 and 2018 pickles into
    the saved RandomState; it cannot rebuild the numpy-2 one at all (hence stand-ins)."""
    want = data_generator_state().get_state(legacy=False)
    for style in STYLES:
        path = tmp_path / f'{style}.bin'
        write_run_py_checkpoint(path, style, legacy=style == 'numpy1.1x', semi=False)
        if style == 'numpy2' and np.__version__.startswith('1.'):
            with pytest.raises(Exception, match='BitGenerator'):
                torch.load(str(path), weights_only=False)  # our own fixture: safe
            continue
        rs = torch.load(str(path), weights_only=False)['random_state']
        assert isinstance(rs, np.random.RandomState)
        got = rs.get_state(legacy=False)
        np.testing.assert_array_equal(got['state']['key'], want['state']['key'])
        assert got['state']['pos'] == want['state']['pos']


def test_get_state_tuple_and_torch_0_4_batchnorm(tmp_path):
    """Also accepted: random_state as a get_state() tuple (our older fixtures) and
    BatchNorm without num_batches_tracked (torch 0.4.0 training)."""
    pos, _, _ = trained_models(semi=False)
    sd = {k: v for k, v in pos.state_dict().items() if not k.endswith('num_batches_tracked')}
    path = tmp_path / 'old.bin'
    torch.save({'model_pos': sd, 'random_state': np.random.RandomState(1).get_state(),
                'model_traj': None}, str(path), _use_new_zipfile_serialization=False)
    ck = load_checkpoint(str(path))
    assert not ck.has_trajectory_model
    x = torch.randn(1, 30, 17, 2)
    with torch.no_grad():
        assert torch.equal(ck.build()(x), pos(x))


class _Shell:
    """Unpickling this runs a shell command."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


class _NamedAs:
    """Pickles as a call of the global ``module.name`` with ``args``."""
    def __init__(self, module, name, args):
        self.module, self.name, self.args = module, name, args

    def __reduce__(self):
        raise AssertionError('written by _RawPickler')


class _RawPickler(pickle._Pickler):
    """Writes a _NamedAs as GLOBAL module.name, its arguments, REDUCE."""

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _NamedAs):
            self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
            super().save(obj.args)
            self.write(pickle.REDUCE)
            return
        super().save(obj, save_persistent_id)


def _raw_module():
    mod = types.ModuleType('pickle_raw')
    mod.Pickler = _RawPickler
    mod.dump = lambda obj, f, protocol=2: _RawPickler(f, protocol).dump(obj)
    return mod


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_anything_else_is_refused_and_never_run(tmp_path, legacy):
    """Calls of any other global stay refused, with no code run; an allowed name builds
    only the inert stand-in, whatever arguments the file gives it."""
    marker = tmp_path / 'pwned'
    pos, _, _ = trained_models(semi=False)
    kw = {'_use_new_zipfile_serialization': not legacy, 'pickle_module': _raw_module()}
    evil = {
        'os_system': _Shell(str(marker)),
        'numpy_load': _NamedAs('numpy', 'load', (str(marker),)),
        'numpy_generator': _NamedAs('numpy.random._pickle', '__generator_ctor', ('MT19937',)),
        'numpy_scalar': _NamedAs('numpy.core.multiarray', 'scalar', ()),
        'builtins_eval': _NamedAs('builtins', 'eval', (f'open({str(marker)!r}, "w")',)),
        'subprocess': _NamedAs('subprocess', 'call', (['touch', str(marker)],)),
    }
    for name, payload in evil.items():
        path = tmp_path / f'{name}.bin'
        torch.save({'model_pos': pos.state_dict(), 'random_state': payload}, str(path), **kw)
        with pytest.raises(CheckpointError, match='refused to load.*may carry code') as e:
            load_checkpoint(str(path))
        assert 'Detail: ' in str(e.value) and 'Weights only load failed' not in str(e.value)
        assert not marker.exists(), name
    # An allow-listed name with a payload of arguments: a stand-in, nothing called.
    for i, name in enumerate(TRAINING_STATE_GLOBALS):
        module, attr = name.rsplit('.', 1)
        path = tmp_path / f'allowed_{i}.bin'
        torch.save({'model_pos': pos.state_dict(),
                    'random_state': _NamedAs(module, attr, (f'touch {marker}',))}, str(path), **kw)
        assert isinstance(_torch_load(str(path))['random_state'], DiscardedState)
        load_checkpoint(str(path))
    assert not marker.exists()


def test_files_that_are_no_checkpoint_say_what_they_are(tmp_path):
    """Text, empty, truncated, an LFS pointer, a .npy, a plain pickle: each message says
    so; none calls the file a pickle that may carry code."""
    zip_path, legacy_path = tmp_path / 'ok_zip.bin', tmp_path / 'ok_legacy.bin'
    write_run_py_checkpoint(zip_path, semi=False)
    write_run_py_checkpoint(legacy_path, 'numpy1.1x', legacy=True, semi=False)
    z, lg = zip_path.read_bytes(), legacy_path.read_bytes()
    npy = io.BytesIO()
    np.save(npy, np.zeros(3))
    cases = {
        'empty': (b'', 'the file is empty'),
        'text': (b'cpn-ft-243-dbb: see the README\n', 'not a PyTorch checkpoint: text'),
        'html': (b'<!DOCTYPE html><html>Not Found</html>', 'not a PyTorch checkpoint: text'),
        'lfs': (b'version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 67\n',
                'Git LFS pointer'),
        'npy': (npy.getvalue(), 'numpy .npy array'),
        'plain_pickle': (pickle.dumps({'model_pos': {}}), 'a Python pickle, but not one '
                         'torch.save wrote'),
        'zip_half': (z[:len(z) // 2], 'truncated or damaged'),
        'zip_tail': (z[:-30], 'truncated or damaged'),
        'legacy_half': (lg[:len(lg) // 2], 'truncated or damaged'),
        'legacy_header': (lg[:40], 'truncated or damaged'),
        'binary': (bytes(range(7, 64)), 'neither a torch.save zip archive nor a legacy'),
    }
    for name, (data, expected) in cases.items():
        path = tmp_path / f'{name}.bin'
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(str(path))
        assert expected in str(e.value), (name, str(e.value))
        assert 'may carry code' not in str(e.value), name


# -- the trajectory model -------------------------------------------------------------------
def _reference_trajectory(traj, kp, w, h, causal, flip, in_perm):
    """Upstream's trajectory inference restated: padded input, flip batch, x mirrored back
    (one joint: no left/right swap), averaged."""
    rf = traj.receptive_field
    pad = (rf - 1) // 2
    norm = kp / w * 2 - np.array([1, h / w])
    padded = np.pad(norm, ((pad + (pad if causal else 0), 0 if causal else pad), (0, 0), (0, 0)),
                    mode='edge')
    x = torch.tensor(padded[None], dtype=torch.float32)
    if flip:
        f = x.clone()
        f[..., 0] *= -1
        x = torch.cat([x, f[:, :, in_perm]])
    with torch.no_grad():
        out = traj(x)
    if flip:
        out[1, :, :, 0] *= -1
        out = out.mean(0, keepdim=True)
    return out[0].double().numpy()


@pytest.mark.parametrize('causal', [False, True])
@pytest.mark.parametrize('flip', [True, False])
def test_trajectory_places_the_unchanged_pose(tmp_path, causal, flip):
    path = tmp_path / 'semi.bin'
    pos, traj = write_run_py_checkpoint(path, 'numpy1.1x', legacy=True, causal=causal)
    ck = load_checkpoint(str(path), causal=causal)
    model, traj_model = ck.build(), ck.build_trajectory()
    kp = frames_2d()
    plain = SequenceLifter(model, flip=flip)
    placed = SequenceLifter(model, flip=flip, trajectory=traj_model)
    poses, root = placed.lift_parts(kp, 640, 480)
    np.testing.assert_array_equal(poses, plain.lift(kp, 640, 480))  # the pose is untouched
    ref = _reference_trajectory(traj, kp, 640, 480, causal, flip, plain.in_perm)
    np.testing.assert_allclose(root, ref, atol=1e-6, rtol=0)
    assert root.shape == (len(kp), 1, 3)
    np.testing.assert_array_equal(placed.lift(kp, 640, 480), poses + root)

    # Live: the same through the streaming engine, alone, in blocks and in shared passes
    # with a lifter of the same pose model that has no trajectory.
    def stream(lifter, defer_with=None):
        out = []
        for k in kp:
            if defer_with is None:
                out += lifter.push(k)
            else:
                lifter.push(k)
                defer_with.push(k)
                out += lift_queued([lifter, defer_with])[0]
        return np.stack([p for _, p in out + lifter.finish()])
    make = lambda **kw: StreamingLifter(model, flip=flip, width=640, height=480, **kw)  # noqa
    np.testing.assert_allclose(stream(make(trajectory=traj_model)), poses + root, atol=2e-5)
    np.testing.assert_allclose(stream(make(trajectory=traj_model, block=4)), poses + root,
                               atol=2e-5)
    other = make(deferred=True)
    np.testing.assert_allclose(stream(make(trajectory=traj_model, deferred=True), other),
                               poses + root,
                               atol=2e-5)


def test_trajectory_refusals(tmp_path, make_checkpoint):
    path = tmp_path / 'supervised.bin'
    write_run_py_checkpoint(path, semi=False)
    with pytest.raises(CheckpointError, match='no trajectory model in this checkpoint'):
        load_checkpoint(str(path)).build_trajectory()
    # A model_traj that is no trajectory model (17 output joints) is named as such.
    path17, _ = make_checkpoint((3, 3), 16)
    ck = load_checkpoint(path17)
    assert ck.has_trajectory_model
    with pytest.raises(CheckpointError, match='is not a trajectory model'):
        ck.build_trajectory()
    # The lifter refuses a trajectory model that does not see the pose model's frames.
    for arch in (Architecture((3, 3, 3), 16, num_joints_out=1),
                 Architecture((3, 3), 16, causal=True, num_joints_out=1),
                 Architecture((3, 3), 16, num_joints_out=17)):
        with pytest.raises(ValueError, match='does not match the pose model'):
            SequenceLifter(ck.build(), trajectory=build_model(arch))
    SequenceLifter(ck.build(), trajectory=build_model(Architecture((3, 3), 8, num_joints_out=1)))


def run_lift(*args):
    return subprocess.run([sys.executable, '-m', 'vp3d_ros.cli.lift', *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_trajectory_flag(tmp_path):
    path = tmp_path / 'semi.bin'
    write_run_py_checkpoint(path, 'numpy2')
    kp = frames_2d(30).astype(np.float32)
    np.save(tmp_path / 'kp.npy', kp)
    common = [tmp_path / 'kp.npy', '--checkpoint', path, '--width', 640, '--height', 480]
    r = run_lift(*common, '--out', tmp_path / 'rel.npy')
    assert r.returncode == 0, r.stderr
    r = run_lift(*common, '--trajectory', '--out', tmp_path / 'abs.npy')
    assert r.returncode == 0, r.stderr
    assert 'trajectory' in r.stderr
    ck = load_checkpoint(str(path))
    poses, root = SequenceLifter(ck.build(), trajectory=ck.build_trajectory()).lift_parts(
        kp, 640, 480)
    # (float rounding: the subprocess runs torch with other threads than this one)
    np.testing.assert_allclose(np.load(tmp_path / 'rel.npy'), poses, atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.load(tmp_path / 'abs.npy'), poses + root, atol=1e-6)
    plain = tmp_path / 'plain.bin'
    write_run_py_checkpoint(plain, semi=False)
    r = run_lift(tmp_path / 'kp.npy', '--checkpoint', plain, '--width', 640, '--height', 480,
                 '--trajectory', '--out', tmp_path / 'x.npy')
    assert r.returncode == 2 and 'no trajectory model' in r.stderr
    assert not (tmp_path / 'x.npy').exists()


def test_lifter_node_trajectory_parameter(rig, tmp_path):
    """Two real lifter processes on one semi-supervised checkpoint, fed the same clouds:
    trajectory:=true publishes each pose moved by the trajectory model's root position (what
    SequenceLifter with the trajectory gives), the default publishes it root-relative; on a
    checkpoint without model_traj, trajectory:=true is refused at start. Each announces on
    ~/model whether it places skeletons (what the recorder writes into the bag)."""
    import json
    import time
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String
    from ros_harness import stamps_ns
    from test_robustness_common import (SEC, assert_alive_and_clean, cloud, handshake, lifter_args,
                                        pose_at, reliable)
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    start, client, _ = rig
    path = tmp_path / 'semi.bin'
    write_run_py_checkpoint(path, 'numpy1.1x', legacy=True, causal=True)
    procs = {ns: start('lifter_node', '-r', f'__node:=lifter_{ns}',
                       *lifter_args(path, 1000, 1000, camera=ns),
                       '-p', f'trajectory:={str(ns == "placed").lower()}', name=f'lifter_{ns}')
             for ns in ('rel', 'placed')}
    plain = tmp_path / 'plain.bin'
    write_run_py_checkpoint(plain, semi=False, causal=True)
    refused = start('lifter_node', '-r', '__node:=lifter_refused',
                    *lifter_args(plain, 1000, 1000, camera='refused'), '-p', 'trajectory:=true',
                    name='lifter_refused')
    pubs = {}
    for ns, proc in procs.items():
        client.collect(PointCloud2, f'/{ns}/skeleton_3d')
        client.collect(String, f'/lifter_{ns}/model', latched=True)
        pubs[ns] = client.node.create_publisher(PointCloud2, f'/{ns}/keypoints_2d', reliable(50))
    for ns, proc in procs.items():
        assert proc.wait_for_log('lifter ready', 90), proc.log()
        assert client.wait_for_subscribers(pubs[ns], 1, 60), f'{ns}: lifter never subscribed'
    t0 = 7000 * SEC
    for ns in procs:
        assert client.wait_for(lambda: client.messages(f'/lifter_{ns}/model'), 30), ns
        announced = json.loads(client.messages(f'/lifter_{ns}/model')[0].data)
        assert announced['trajectory'] is (ns == 'placed')
        handshake(client, pubs[ns], lambda s: cloud(s, pose_at(0)), t0, f'/{ns}/skeleton_3d')
    step = 33_333_333
    stamps = [t0 + SEC + i * step for i in range(20)]  # after a gap: a fresh window
    for i, s in enumerate(stamps):
        for pub in pubs.values():
            pub.publish(cloud(s, pose_at(i)))
        time.sleep(0.01)

    def got(ns):
        return {stamps_ns([m])[0]: cloud_to_keypoints(m)[0][0]
                for m in client.messages(f'/{ns}/skeleton_3d')}
    assert client.wait_for(lambda: all(set(stamps) <= set(got(ns)) for ns in procs), 30)
    ck = load_checkpoint(str(path), causal=True)
    kp = np.stack([pose_at(i) for i in range(len(stamps))]).astype(np.float32)
    poses, root = SequenceLifter(ck.build(), trajectory=ck.build_trajectory()).lift_parts(
        kp, 1000, 1000)
    rel, placed = got('rel'), got('placed')
    for i, s in enumerate(stamps):
        np.testing.assert_allclose(rel[s], poses[i], atol=1e-5, rtol=0)
        np.testing.assert_allclose(placed[s], poses[i] + root[i], atol=1e-5, rtol=0)
    assert np.abs(root).max() > 1e-3  # the placement is not a no-op
    for proc in procs.values():
        assert_alive_and_clean(proc)
    assert refused.wait_exit(60) not in (None, 0), refused.log()
    assert 'no trajectory model in this checkpoint' in refused.log(), refused.log()
