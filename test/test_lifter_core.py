"""Lifter core: architecture, checkpoints, upstream inference semantics, streaming."""
import os
import pickle

import numpy as np
import pytest
import torch

from vp3d_ros.core.checkpoint import CheckpointError, load_checkpoint
from vp3d_ros.core.lifter import SequenceLifter, StreamingLifter, normalize_screen
from vp3d_ros.core.model import Architecture, TemporalModel, build_model
from vp3d_ros.core.skeletons import COCO17, H36M17

RELEASED = [((3, 3, 3), False), ((3, 3, 3, 3), False), ((3, 3, 3, 3, 3), False),
            ((3, 3, 3, 3, 3), True)]


@pytest.fixture(params=['direct', 'deferred'])
def taps(request, monkeypatch):
    """Run a streaming test twice: every layer applying its taps at once (small models), and
    every layer deferring its earlier taps (what large, memory-bound models do)."""
    from vp3d_ros.core import model
    monkeypatch.setattr(model, 'DEFER_MIN_BYTES', 0 if request.param == 'deferred' else 2 ** 62)
    return request.param


def official_keys(n_blocks):
    """The parameter names of an official VideoPose3D model_pos state_dict."""
    bn = ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
    keys = {'expand_conv.weight', 'shrink.weight', 'shrink.bias'}
    keys |= {f'expand_bn.{b}' for b in bn}
    for i in range(2 * n_blocks):
        keys.add(f'layers_conv.{i}.weight')
        keys |= {f'layers_bn.{i}.{b}' for b in bn}
    return keys


@pytest.mark.parametrize('fw', [(3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3, 3)])
def test_state_dict_keys_and_shapes_match_official_layout(fw):
    m = build_model(Architecture(fw, channels=1024))
    sd = m.state_dict()
    assert set(sd) == official_keys(len(fw) - 1)
    assert sd['expand_conv.weight'].shape == (1024, 34, 3)
    assert sd['layers_conv.0.weight'].shape == (1024, 1024, 3)
    assert sd['layers_conv.1.weight'].shape == (1024, 1024, 1)
    assert sd['shrink.weight'].shape == (51, 1024, 1)
    assert m.receptive_field == 3 ** len(fw)
    dilations = [conv.dilation[0] for conv in m.layers_conv[::2]]
    assert dilations == [3 ** (i + 1) for i in range(len(fw) - 1)]


def test_three_input_features():
    m = build_model(Architecture((3, 3), channels=16, in_features=3))
    assert m.state_dict()['expand_conv.weight'].shape == (16, 51, 3)
    assert m(torch.zeros(1, 9, 17, 3)).shape == (1, 1, 17, 3)


@pytest.mark.parametrize('fw,causal', RELEASED)
def test_checkpoint_round_trip(make_checkpoint, fw, causal):
    path, model = make_checkpoint(fw, 24, causal)
    ck = load_checkpoint(path, causal=causal)
    assert ck.arch.filter_widths == fw and ck.arch.channels == 24 and ck.arch.causal == causal
    assert ck.has_trajectory_model and len(ck.sha256) == 64
    rebuilt = ck.build()
    x = torch.randn(1, model.receptive_field + 4, 17, 2)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_bare_state_dict_and_legacy_serialization(make_checkpoint):
    path, model = make_checkpoint((3, 3), 16, official=False, legacy_format=True)
    ck = load_checkpoint(path)
    assert ck.arch.filter_widths == (3, 3) and not ck.has_trajectory_model


def test_loader_refuses_mismatched_architecture_naming_both(make_checkpoint):
    path, _ = make_checkpoint((3, 3, 3), 32)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, filter_widths=(3, 3, 3, 3, 3), channels=1024)
    msg = str(e.value)
    assert '[3, 3, 3, 3, 3]' in msg and '1024' in msg  # configured
    assert 'filter_widths=[3, 3, 3]' in msg and 'channels=32' in msg  # checkpoint
    with pytest.raises(CheckpointError, match='channels=32'):
        load_checkpoint(path, channels=64)


def test_loader_errors(tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint(str(tmp_path / 'missing.bin'))
    junk = tmp_path / 'junk.bin'
    junk.write_bytes(b'this is not a checkpoint at all')
    with pytest.raises(CheckpointError, match='not a PyTorch checkpoint: text'):
        load_checkpoint(str(junk))
    other = tmp_path / 'other.pt'
    torch.save({'model_pos': {'fc.weight': torch.zeros(2, 2)}}, str(other))
    with pytest.raises(CheckpointError, match='not a VideoPose3D temporal model'):
        load_checkpoint(str(other))
    listy = tmp_path / 'list.pt'
    torch.save([torch.zeros(1)], str(listy))
    with pytest.raises(CheckpointError, match='not a checkpoint'):
        load_checkpoint(str(listy))


def test_loader_names_a_damaged_tensor_and_both_shapes(make_checkpoint, tmp_path):
    """Edited/damaged tensors: the message names the tensor and the shapes, never a torch
    load_state_dict traceback (which the lifter node would report as a device problem)."""
    path, model = make_checkpoint((3, 3), 16)
    sd = model.state_dict()
    cases = {
        'bn_len': ('layers_bn.0.running_mean', torch.zeros(7), 'layers_bn.0.running_mean is [7] '
                   'where [16] is needed'),
        'expand_2d': ('expand_conv.weight', torch.zeros(16, 34), 'expand_conv.weight has shape '
                      '[16, 34], but a Conv1d kernel is 3-dimensional'),
        'shrink_4d': ('shrink.weight', torch.zeros(51, 16, 1, 1), 'shrink.weight has shape'),
        'one_by_one': ('layers_conv.1.weight', torch.zeros(16, 8, 1), 'layers_conv.1.weight is '
                       '[16, 8, 1] where [16, 16, 1] is needed'),
        'diverged': ('layers_bn.1.running_var', torch.full((16,), float('nan')),
                     'non-finite values (NaN/inf) in layers_bn.1.running_var'),
    }
    for name, (key, value, expected) in cases.items():
        bad = dict(sd, **{key: value})
        f = tmp_path / f'{name}.bin'
        torch.save({'model_pos': bad}, str(f))
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(str(f))
        assert expected in str(e.value), (name, str(e.value))


class _Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_pickle_carrying_code_is_refused_and_not_executed(make_checkpoint, tmp_path):
    marker = tmp_path / 'pwned'
    path, model = make_checkpoint((3, 3), 16)
    evil = tmp_path / 'evil.bin'
    torch.save({'model_pos': model.state_dict(), 'extra': _Payload(str(marker))}, str(evil))
    assert b'system' in evil.read_bytes()  # the file really carries the call
    with pytest.raises(CheckpointError, match='refused'):
        load_checkpoint(str(evil))
    assert not marker.exists()
    raw = tmp_path / 'evil_raw.pkl'
    raw.write_bytes(pickle.dumps({'model_pos': _Payload(str(marker))}))
    with pytest.raises(CheckpointError):
        load_checkpoint(str(raw))
    assert not marker.exists()


def _reference_lift(model, kp, w, h, in_layout, flip):
    """Independent restatement of upstream inference for checking (numpy padding, batch flip)."""
    rf = model.receptive_field
    causal = model.arch.causal
    pad = (rf - 1) // 2
    shift = pad if causal else 0
    norm = kp / w * 2 - np.array([1, h / w])
    seq = np.pad(norm, ((pad + shift, pad - shift), (0, 0), (0, 0)), 'edge')
    batch = [seq]
    if flip:
        f = seq.copy()
        f[:, :, 0] *= -1
        f[:, list(in_layout.left) + list(in_layout.right)] = f[:, list(in_layout.right) + list(in_layout.left)]
        batch.append(f)
    with torch.no_grad():
        out = model(torch.tensor(np.stack(batch), dtype=torch.float32)).numpy()
    if flip:
        L, R = list(H36M17.left), list(H36M17.right)
        out[1, :, :, 0] *= -1
        out[1][:, L + R] = out[1][:, R + L]
        return out.mean(0)
    return out[0]


@pytest.mark.parametrize('fw,causal', RELEASED)
@pytest.mark.parametrize('layout', ['coco', 'h36m'])
@pytest.mark.parametrize('flip', [True, False])
def test_sequence_lifter_matches_upstream_semantics(fw, causal, layout, flip):
    from conftest import randomize_model
    model = randomize_model(build_model(Architecture(fw, 32, causal)), seed=len(fw))
    rng = np.random.default_rng(3)
    kp = rng.uniform([0, 0], [1000, 1002], size=(50, 17, 2))
    out = SequenceLifter(model, layout, flip=flip).lift(kp, 1000, 1002)
    ref = _reference_lift(model, kp, 1000, 1002, COCO17 if layout == 'coco' else H36M17, flip)
    assert out.shape == (50, 17, 3)
    # The one deliberate difference: the Hip, which upstream trains towards 0 but returns
    # as the network gives it, is exactly 0 here (root-relative contract).
    assert np.abs(out[:, 0]).max() == 0.0
    ref[:, 0] = 0.0
    assert np.abs(out - ref).max() < 1e-5


def test_normalisation_divides_both_axes_by_width_and_is_not_root_centred():
    kp = np.array([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0]])
    n = normalize_screen(kp, 1000, 1002)
    np.testing.assert_allclose(n, [[-1, -1.002], [1, 1.002], [0, 0]])
    with pytest.raises(ValueError):
        normalize_screen(kp, 0, 10)


@pytest.mark.parametrize('fw,causal', [((3, 3, 3), False), ((3, 3, 3), True),
                                       ((3, 3, 3, 3, 3), False), ((3, 3, 3, 3, 3), True)])
@pytest.mark.parametrize('T', [1, 2, 13, 120, 300])
def test_one_output_per_frame_for_any_length(fw, causal, T):
    from conftest import randomize_model
    model = randomize_model(build_model(Architecture(fw, 16, causal)))
    kp = np.random.default_rng(T).uniform(0, 640, size=(T, 17, 2))
    out = SequenceLifter(model).lift(kp, 640, 480)
    assert out.shape == (T, 17, 3) and np.all(np.isfinite(out))


@pytest.mark.parametrize('fw,causal', RELEASED + [((3, 3, 3), True), ((1, 1, 1), False)])
@pytest.mark.parametrize('T', [1, 5, 40, 280])
def test_streaming_equals_whole_sequence(fw, causal, T, taps):
    from conftest import randomize_model
    model = randomize_model(build_model(Architecture(fw, 32, causal)), seed=T)
    kp = np.random.default_rng(T).uniform([0, 0], [1080, 1920], size=(T, 17, 2))
    whole = SequenceLifter(model, 'h36m').lift(kp, 1080, 1920)
    live = StreamingLifter(model, 'h36m', width=1080, height=1920)
    layers = [layer for layer in live._state.kernels.layers if layer.width > 1]
    assert all(layer.deferred == (taps == 'deferred') for layer in layers)
    got = []
    rf = model.receptive_field
    for t, frame in enumerate(kp):
        new = live.push(frame)
        if causal:  # causal: every frame's pose is available immediately
            assert [i for i, _ in new] == [t]
        else:  # symmetric: frame t - (RF-1)/2 becomes available with frame t
            expect = t - (rf - 1) // 2
            assert [i for i, _ in new] == ([expect] if expect >= 0 else [])
        got += new
    got += live.finish()
    assert [i for i, _ in got] == list(range(T))
    stream = np.stack([p for _, p in got])
    assert np.abs(stream - whole).max() < 1e-5


def test_flip_symmetry_of_lifting():
    """Flip-averaged lifting is equivariant: mirroring the input mirrors the output."""
    from conftest import randomize_model
    model = randomize_model(build_model(Architecture((3, 3, 3), 32)), seed=5)
    kp = np.random.default_rng(0).uniform(100, 900, size=(30, 17, 2))
    w = 1000.0
    mirrored = kp[:, list(H36M17.flip_permutation())].copy()
    mirrored[..., 0] = w - mirrored[..., 0]
    lifter = SequenceLifter(model, 'h36m', flip=True)
    a = lifter.lift(kp, w, 1000)
    b = lifter.lift(mirrored, w, 1000)
    b_back = b[:, list(H36M17.flip_permutation())].copy()
    b_back[..., 0] *= -1
    assert np.abs(a - b_back).max() < 1e-5
    no_flip = SequenceLifter(model, 'h36m', flip=False).lift(kp, w, 1000)
    assert np.abs(no_flip - a).max() > 1e-3  # flip really changes the estimate


def test_layouts_are_consistent():
    for layout in (H36M17, COCO17):
        perm = layout.flip_permutation()
        assert sorted(perm) == list(range(17))
        for l, r in zip(layout.left, layout.right):
            assert layout.joints[l].lower().replace('left', 'l').startswith('l')
            assert layout.joints[r].lower().replace('right', 'r').startswith('r')
    assert len(H36M17.bones) == 16


@pytest.mark.parametrize('fw,causal', [((3, 3, 3), False), ((3, 3, 3, 3, 3), True),
                                       ((3, 3, 3, 3, 3), False)])
@pytest.mark.parametrize('block', [2, 7, 64])
def test_block_streaming_equals_frame_by_frame(fw, causal, block, taps):
    from conftest import randomize_model
    model = randomize_model(build_model(Architecture(fw, 32, causal)), seed=block)
    kp = np.random.default_rng(block).uniform(0, 900, size=(150, 17, 2))
    whole = SequenceLifter(model).lift(kp, 900, 900)
    live = StreamingLifter(model, width=900, height=900)
    got = []
    for i in range(0, len(kp), block):
        got += live.push_many(kp[i:i + block])
    got += live.finish()
    assert [i for i, _ in got] == list(range(150))
    assert np.abs(np.stack([p for _, p in got]) - whole).max() < 1e-5


@pytest.mark.parametrize('fw', [(3, 3), (3, 3, 3)])
def test_deferred_taps_over_ring_wraparounds_and_odd_blocks(fw, monkeypatch):
    """Deferred layers keep their pending frames and accumulated sums in rings: blocks of
    every size and lengths that wrap the rings at every offset (the end padding included)
    still give the whole-sequence poses."""
    from conftest import randomize_model
    from vp3d_ros.core import model as model_module
    monkeypatch.setattr(model_module, 'DEFER_MIN_BYTES', 0)
    model = randomize_model(build_model(Architecture(fw, 32, causal=False)), seed=7)
    for block in range(1, 6):
        for T in (30, 70, 140):
            kp = np.random.default_rng(T).uniform(0, 900, size=(T, 17, 2))
            live = StreamingLifter(model, width=900, height=900)
            got = [p for i in range(0, T, block) for _, p in live.push_many(kp[i:i + block])]
            got += [p for _, p in live.finish()]
            whole = SequenceLifter(model).lift(kp, 900, 900)
            assert np.abs(np.stack(got) - whole).max() < 1e-5, (block, T)


@pytest.mark.parametrize('causal', [True, False])
@pytest.mark.parametrize('block', [3, 4])
def test_block_option_delays_poses_by_at_most_block_minus_one_frames(causal, block, taps):
    """StreamingLifter(block=K): frame-by-frame pushes, poses lifted K at a time; the same
    poses as block=1, none later than K-1 frames after block=1 would give it."""
    from conftest import randomize_model
    model = randomize_model(build_model(Architecture((3, 3, 3), 32, causal)), seed=block)
    kp = np.random.default_rng(block).uniform(0, 900, size=(50, 17, 2))
    whole = SequenceLifter(model).lift(kp, 900, 900)
    single = StreamingLifter(model, width=900, height=900)
    blocked = StreamingLifter(model, width=900, height=900, block=block)
    ready_single, ready_blocked, got = {}, {}, []
    for t, f in enumerate(kp):
        for i, _ in single.push(f):
            ready_single[i] = t
        out = blocked.push(f)
        got += out
        for i, _ in out:
            ready_blocked[i] = t
        assert blocked.frames_pushed == t + 1
        assert blocked.pending == t + 1 - len(got)
    got += blocked.finish()
    assert [i for i, _ in got] == list(range(len(kp)))
    assert np.abs(np.stack([p for _, p in got]) - whole).max() < 1e-5
    for i, t in ready_single.items():
        if i in ready_blocked:
            assert t <= ready_blocked[i] <= t + block - 1
    assert blocked.pending == 0 and blocked.frames_pushed == 0  # finish resets


def test_block_option_is_checked():
    model = build_model(Architecture((3, 3), 16))
    for bad in (0, 65):
        with pytest.raises(ValueError, match='block must be'):
            StreamingLifter(model, width=10, height=10, block=bad)


def test_dense_layer_packed_kernel_matches_plain_product():
    """Large kernels use oneDNN's prepacked product for several rows (flip: 2): the same
    result as F.linear, for any row count, with and without the ReLU."""
    from vp3d_ros.core import dense
    if dense._packed_ops() is None:
        pytest.skip('this torch build has no oneDNN prepacked linear')
    gen = torch.Generator().manual_seed(0)
    kernel = torch.randn(1024, 1024, generator=gen) * 0.03
    bias = torch.randn(1024, generator=gen)
    for relu in (True, False):
        layer = dense.DenseLayer(kernel, bias, relu=relu)
        assert layer.is_packed
        for rows in (1, 2, 3, 8):
            x = torch.randn(rows, 1024, generator=gen)
            want = torch.nn.functional.linear(x, kernel, bias)
            want = want.clamp(min=0) if relu else want
            assert torch.allclose(layer(x), want, rtol=1e-4, atol=1e-4)


def test_dense_layer_keeps_small_kernels_plain_and_falls_back(monkeypatch):
    from vp3d_ros.core import dense
    small = dense.DenseLayer(torch.ones(64, 96), torch.zeros(64))
    assert not small.is_packed  # fits in cache: the plain product is faster
    monkeypatch.setattr(dense, '_packed_ops', lambda: None)  # a torch without oneDNN
    big = dense.DenseLayer(torch.full((1024, 1024), 0.5), torch.ones(1024))
    assert not big.is_packed
    assert torch.equal(big(torch.ones(2, 1024)), torch.full((2, 1024), 513.0))


def test_streaming_with_packed_kernels_equals_whole_sequence():
    """A model wide enough for deferred taps and packed kernels (512 channels) streams the
    same poses."""
    from conftest import randomize_model
    from vp3d_ros.core.dense import _packed_ops
    from vp3d_ros.core.model import streaming_kernels
    model = randomize_model(build_model(Architecture((3, 3, 3), 512, causal=True)), seed=3)
    layers = streaming_kernels(model).layers
    assert [layer.deferred for layer in layers] == [False, True, True]  # expand: 512x34x3
    packed = [layer.early.is_packed for layer in layers[1:]]  # 2 MiB: taps 0, 1
    assert packed == [True, True] or _packed_ops() is None
    kp = np.random.default_rng(3).uniform(0, 900, size=(60, 17, 2))
    whole = SequenceLifter(model).lift(kp, 900, 900)
    live = StreamingLifter(model, width=900, height=900)
    got = [p for f in kp for _, p in live.push(f)] + [p for _, p in live.finish()]
    assert np.abs(np.stack(got) - whole).max() < 1e-4


def test_streams_of_one_model_share_kernels_until_its_weights_change(taps):
    from conftest import randomize_model
    model = randomize_model(build_model(Architecture((3, 3), 32, causal=True)), seed=1)
    a = StreamingLifter(model, width=900, height=900)
    b = StreamingLifter(model, width=900, height=900)
    assert a._state.kernels is b._state.kernels  # one copy of the weights for every camera
    other = randomize_model(build_model(Architecture((3, 3), 32, causal=True)), seed=2)
    model.load_state_dict(other.state_dict())
    c = StreamingLifter(model, width=900, height=900)
    assert c._state.kernels is not a._state.kernels
    kp = np.random.default_rng(0).uniform(0, 900, size=(12, 17, 2))
    got = [p for f in kp for _, p in c.push(f)]
    assert np.abs(np.stack(got) - SequenceLifter(other).lift(kp, 900, 900)).max() < 1e-5


@pytest.mark.parametrize('causal', [True, False])
def test_lifting_queued_frames_of_several_streams_together_changes_nothing(causal, taps):
    """lift_queued: frames of several lifters (cameras, persons) deferred and lifted in
    shared passes give exactly the poses each lifter gives alone, as soon as alone, also
    when the streams start at different times, one queues a burst of frames (a bridged
    gap), one waits for a full block and one belongs to another model."""
    from conftest import randomize_model
    from vp3d_ros.core.lifter import lift_queued
    model = randomize_model(build_model(Architecture((3, 3, 3), 32, causal)), seed=7)
    other = randomize_model(build_model(Architecture((3, 3), 16, causal)), seed=8)
    rng = np.random.default_rng(7)
    T = 70
    kps = [rng.uniform(0, 900, size=(T, 17, 2)) for _ in range(5)]
    models = [model, model, model, model, other]
    blocks = [1, 1, 1, 3, 1]
    starts = [0, 0, 9, 0, 0]  # stream 2 joins later
    held = range(20, 23)  # stream 1 queues frames 20..23 and has them lifted at frame 23
    alone = [StreamingLifter(m, width=900, height=900, block=b) for m, b in zip(models, blocks)]
    together = [StreamingLifter(m, width=900, height=900, block=b, deferred=True)
                for m, b in zip(models, blocks)]
    want = [{} for _ in kps]  # frame index -> (time it came out, pose)
    got = [{} for _ in kps]
    for t in range(T):
        for i, kp in enumerate(kps):
            if t >= starts[i]:
                want[i].update((j, (t, p)) for j, p in alone[i].push(kp[t]))
                together[i].push(kp[t])
        ready = [lf for i, lf in enumerate(together) if not (i == 1 and t in held)]
        for lf, out in zip(ready, lift_queued(ready)):
            got[together.index(lf)].update((j, (t, p)) for j, p in out)
    for i in range(len(kps)):
        want[i].update((j, (T, p)) for j, p in alone[i].finish())
        got[i].update((j, (T, p)) for j, p in together[i].finish())
        assert sorted(got[i]) == list(range(T - starts[i])) == sorted(want[i])
        for j, (t, pose) in want[i].items():
            assert np.abs(got[i][j][1] - pose).max() < 1e-5
            late = t in held and i == 1  # held back on purpose
            assert got[i][j][0] == (held[-1] + 1 if late else t)
        whole = SequenceLifter(models[i]).lift(kps[i][starts[i]:], 900, 900)
        assert np.abs(np.stack([got[i][j][1] for j in range(T - starts[i])]) - whole).max() < 1e-5
