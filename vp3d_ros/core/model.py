"""The VideoPose3D temporal convolutional network, written from its published description
(Pavllo et al., CVPR 2019, Sec. 3 and Fig. 2), with the official checkpoints' parameter names.

Blocks: an expanding convolution over ``filter_widths[0]`` frames, then per further width
``W`` a residual block [dilated conv W (dilation = product of the earlier widths),
BatchNorm, ReLU, dropout, 1x1 conv, BatchNorm, ReLU, dropout] whose skip connection is the
block input cropped to the output's frames, and a final 1x1 projection to 3D joints.
Convolutions are "valid": a model maps ``T + RF - 1`` frames to ``T`` poses.

Causal models (``causal=True``) shift every skip crop so that each output depends only on
the current and past frames.

Besides the whole-sequence ``forward`` the model offers :class:`StreamingState`, which keeps
the last ``(W-1)*dilation+1`` inputs of every layer and computes one new output per layer
per incoming frame; its outputs equal ``forward`` over the same padded sequence.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from .dense import PACK_MIN_BYTES, DenseLayer

# Most frames lifted in one pass (a stream's ring holds a window plus this): the lifter
# node's block_frames and the shared passes of due streams are bounded by it.
MAX_BLOCK = 64


@dataclass(frozen=True)
class Architecture:
    """Everything a checkpoint does not store but inference needs."""
    filter_widths: Tuple[int, ...] = (3, 3, 3, 3, 3)
    channels: int = 1024
    causal: bool = False
    num_joints_in: int = 17
    in_features: int = 2
    num_joints_out: int = 17
    dropout: float = 0.25

    def __post_init__(self):
        fw = tuple(int(w) for w in self.filter_widths)
        object.__setattr__(self, 'filter_widths', fw)
        if not fw or any(w % 2 == 0 or w < 1 for w in fw):
            raise ValueError(f'filter widths must be odd and positive, got {list(fw)}')
        if self.channels < 1:
            raise ValueError(f'channels must be positive, got {self.channels}')

    @property
    def receptive_field(self) -> int:
        rf = 1
        for w in self.filter_widths:
            rf *= w
        return rf

    def describe(self) -> str:
        return (f"filter_widths={list(self.filter_widths)} channels={self.channels} "
                f"causal={self.causal} joints_in={self.num_joints_in}x{self.in_features} "
                f"joints_out={self.num_joints_out} (receptive field {self.receptive_field})")


class TemporalModel(nn.Module):
    """State-dict compatible with the official VideoPose3D ``model_pos`` checkpoints."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        fw = arch.filter_widths
        c = arch.channels
        self.drop = nn.Dropout(arch.dropout)
        self.relu = nn.ReLU(inplace=True)
        self.expand_conv = nn.Conv1d(arch.num_joints_in * arch.in_features, c, fw[0], bias=False)
        self.expand_bn = nn.BatchNorm1d(c, momentum=0.1)
        convs, bns = [], []
        # Per block: (dilation, crop offset of the skip connection).
        self.blocks: List[Tuple[int, int]] = []
        dilation = fw[0]
        for w in fw[1:]:
            half = (w - 1) * dilation // 2
            shift = (w // 2) * dilation if arch.causal else 0
            self.blocks.append((dilation, half + shift))
            convs += [nn.Conv1d(c, c, w, dilation=dilation, bias=False), nn.Conv1d(c, c, 1, bias=False)]
            bns += [nn.BatchNorm1d(c, momentum=0.1), nn.BatchNorm1d(c, momentum=0.1)]
            dilation *= w
        self.layers_conv = nn.ModuleList(convs)
        self.layers_bn = nn.ModuleList(bns)
        self.shrink = nn.Conv1d(c, arch.num_joints_out * 3, 1)

    @property
    def receptive_field(self) -> int:
        return self.arch.receptive_field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T + RF - 1, J_in, F) -> (B, T, J_out, 3)."""
        b, t = x.shape[:2]
        x = x.reshape(b, t, -1).permute(0, 2, 1)
        x = self.drop(self.relu(self.expand_bn(self.expand_conv(x))))
        for i, (_, crop) in enumerate(self.blocks):
            length = self.layers_conv[2 * i].weight.shape[2]
            span = (length - 1) * self.blocks[i][0]
            res = x[:, :, crop: x.shape[2] - span + crop]
            x = self.drop(self.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x))))
            x = res + self.drop(self.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
        x = self.shrink(x)
        return x.permute(0, 2, 1).reshape(b, -1, self.arch.num_joints_out, 3)


#: Layers whose kernel is at least this large are bound by memory bandwidth frame by frame
#: and defer their earlier taps (see :class:`StreamingState`); smaller ones stay in cache.
DEFER_MIN_BYTES = PACK_MIN_BYTES
#: Frames whose earlier taps a deferred layer applies in one product (at most; a power of 2).
DEFER_FRAMES = 8


class _Layer:
    """One streaming layer's geometry and (BatchNorm-folded, tap-major) kernels.

    A *deferred* layer splits its kernel: ``conv`` holds the newest frame's tap (applied at
    once), ``early`` the earlier taps, applied to batches of frames ahead of the windows
    that need them; their products wait in an accumulator ring."""

    def __init__(self, width: int, dilation: int, crop: Optional[int], kernel: torch.Tensor,
                 bias: torch.Tensor, pointwise: Optional[DenseLayer], max_block: int):
        self.width, self.dilation, self.crop = width, dilation, crop
        self.span = (width - 1) * dilation + 1
        self.taps = list(range(0, self.span, dilation))
        self.pointwise = pointwise
        self.size = self.span + max_block  # ring length: a full window plus room for a block
        self.deferred = width > 1 and kernel.numel() * kernel.element_size() >= DEFER_MIN_BYTES
        # A deferred layer applies its earlier taps every `period` frames of the stream, at
        # frame counts = phase (mod period): a power of 2, so a frame's products are applied
        # by the time its next window closes (dilation frames later). See _stagger.
        self.period = 1 << (min(DEFER_FRAMES, dilation + 1).bit_length() - 1)
        self.phase = 0
        if self.deferred:
            c = kernel.shape[1] // width
            self.conv = DenseLayer(kernel[:, -c:], bias, relu=False)
            # Rows tap-major: taps 0..W-2 stacked, so one product applies all of them.
            self.early = DenseLayer(torch.cat(kernel[:, :-c].split(c, dim=1)), None, relu=False)
        else:
            self.conv, self.early = DenseLayer(kernel, bias), None
        self.out_channels = kernel.shape[0]
        self._indices: dict = {}

    def _cached(self, key, build):
        got = self._indices.get(key)
        if got is None:
            if len(self._indices) > 4096:  # odd block sizes only; never in steady state
                self._indices.clear()
            got = self._indices[key] = build()
        return got

    def indices(self, pos: int, k: int, m: int):
        """Ring indices for k frames written at ``pos`` that complete m windows: (where to
        write, the m windows' taps (direct) or end slots (deferred), or None, their skip
        frames or None). Computed once per distinct (pos, k, m): frame by frame, that is one
        entry per ring slot."""
        return self._cached((pos, k, m), lambda: self._build_indices(pos, k, m))

    def _build_indices(self, pos: int, k: int, m: int):
        size = self.size
        write = slice(pos, pos + k) if pos + k <= size else \
            torch.tensor([(pos + j) % size for j in range(k)])
        starts = [pos + k - m - self.span + 1 + j for j in range(m)]
        if not m:
            return write, None, None
        if self.deferred:
            second = torch.tensor([(s + self.span - 1) % size for s in starts])
        else:
            second = torch.tensor([(s + t) % size for s in starts for t in self.taps])
        skip = torch.tensor([(s + self.crop) % size for s in starts]) \
            if self.crop is not None else None
        return write, second, skip

    def flush_indices(self, first: int, count: int):
        """For ``count`` pending frames from frame ``first`` (stream indices): their ring
        slots, which of their (frame, tap) products to keep (None: all) and the accumulator
        slots those feed, the windows ending ``(W-1-tap)*dilation`` frames later. A window
        that would start before the stream does not exist: its products are dropped
        (warm-up only; afterwards the indices are cached per ring slot)."""
        steady = first >= (self.width - 2) * self.dilation
        key = ('steady', first % self.size, count) if steady else ('start', first, count)
        return self._cached(key, lambda: self._build_flush(first, count))

    def _build_flush(self, first: int, count: int):
        size, w, d = self.size, self.width, self.dilation
        rows = torch.tensor([(first + j) % size for j in range(count)])
        keep, slots = [], []
        for j in range(count):
            for tap in range(w - 1):
                if first + j >= tap * d:
                    keep.append(j * (w - 1) + tap)
                    slots.append((first + j + (w - 1 - tap) * d) % size)
        keep = None if len(keep) == count * (w - 1) else torch.tensor(keep, dtype=torch.long)
        return rows, keep, torch.tensor(slots, dtype=torch.long)


class StreamingKernels:
    """What every stream of one model shares: the layers folded for streaming. Build it
    through :func:`streaming_kernels`, which keeps one per model (4 cameras of a
    1024-channel model would otherwise hold 4 copies of its 67 MB of weights)."""

    def __init__(self, model: TemporalModel, max_block: int = MAX_BLOCK):
        if model.training:
            raise ValueError('streaming needs an eval-mode model (BatchNorm running stats)')
        self.arch = model.arch
        self.max_block = max_block
        fw = model.arch.filter_widths
        self.layers: List[_Layer] = [
            _Layer(fw[0], 1, None, *_fold(model.expand_conv.weight, model.expand_bn), None,
                   max_block)]
        for i, (w, (dilation, crop)) in enumerate(zip(fw[1:], model.blocks)):
            pointwise = DenseLayer(*_fold(model.layers_conv[2 * i + 1].weight,
                                          model.layers_bn[2 * i + 1]))
            conv = _fold(model.layers_conv[2 * i].weight, model.layers_bn[2 * i])
            self.layers.append(_Layer(w, dilation, crop, *conv, pointwise, max_block))
        self.shrink = DenseLayer(model.shrink.weight[:, :, 0], model.shrink.bias, relu=False,
                                 packed=False)
        _stagger(self.layers)

    @property
    def bytes_per_frame(self) -> float:
        """Kernel bytes read per frame, frame by frame in steady state (deferred layers read
        their earlier taps once per batch of frames)."""
        total = 0.0
        for layer in self.layers:
            total += layer.conv.nbytes + (layer.pointwise.nbytes if layer.pointwise else 0)
            if layer.early is not None:
                total += layer.early.nbytes / layer.period
        return total + self.shrink.nbytes


def _stagger(layers: Sequence[_Layer]):
    """Spread the deferred layers' batched products over the frames of a cycle (phases),
    so that no frame pays for several of them: most frequent first, each into the least
    loaded slots."""
    load = [0] * DEFER_FRAMES
    for layer in sorted((x for x in layers if x.deferred), key=lambda x: x.period):
        period = layer.period
        layer.phase = min(range(period), key=lambda p: (max(load[p::period]), sum(load[p::period])))
        for slot in range(layer.phase, DEFER_FRAMES, period):
            load[slot] += layer.early.nbytes


def _fold(weight: torch.Tensor, bn: nn.BatchNorm1d):
    """Conv kernel (out, C, W) + eval BatchNorm -> tap-major (out, W*C) kernel and bias."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        kernel = (weight * scale[:, None, None]).permute(0, 2, 1).reshape(weight.shape[0], -1)
        bias = bn.bias - bn.running_mean * scale
    return kernel, bias


_KERNELS: 'weakref.WeakKeyDictionary[TemporalModel, tuple]' = weakref.WeakKeyDictionary()


def streaming_kernels(model: TemporalModel, max_block: int = MAX_BLOCK) -> StreamingKernels:
    """The model's shared :class:`StreamingKernels`, rebuilt if its weights changed since
    (any in-place change, e.g. ``load_state_dict``, bumps a tensor's version)."""
    version = (max_block, DEFER_MIN_BYTES, tuple(t._version for t in model.state_dict().values()))
    cached = _KERNELS.get(model)
    if cached is None or cached[0] != version:
        cached = _KERNELS[model] = (version, StreamingKernels(model, max_block))
    return cached[1]


class StreamingState:
    """Incremental evaluation of an eval-mode :class:`TemporalModel`.

    Each layer keeps a ring buffer of its last ``(W-1)*dilation+1`` inputs (plus room for a
    block). Pushing frames (already padded/normalised) computes only the new outputs of each
    layer; a pose comes out once the receptive field is full. :meth:`push_block` takes
    several frames at once: the same outputs, but each layer's weights are read from memory
    once per block instead of once per frame.

    One frame at a time is a matrix-vector product per layer, bound by memory bandwidth
    (the 1024-channel model has 67 MB of weights), so the engine reads as few weights per
    frame as it can and does nothing per frame that it can do once:

    - A large dilated layer's output for frame t is ``W_last x(t) + W_1 x(t-d) + W_0
      x(t-2d)``; only the first term needs frame t. The earlier taps' products of a frame
      are needed d and 2d frames later, so the layer *defers* them and applies them to up
      to :data:`DEFER_FRAMES` frames in one product, keeping the results in an accumulator
      ring until their windows close. Per frame it then reads the newest tap's kernel plus
      a share of the others: about 39 instead of 67 MB for the 1024-channel model
      (:attr:`StreamingKernels.bytes_per_frame`). Same outputs,
      summed in another order (float32 rounding).
    - BatchNorm is folded into the kernels, kernels are laid out tap-major to match
      time-major ring buffers and shared by every stream of the model, ring indices are
      computed once per ring slot, and each product is one
      :class:`~vp3d_ros.core.dense.DenseLayer` call.
    """

    def __init__(self, model: TemporalModel, max_block: int = MAX_BLOCK):
        self.kernels = streaming_kernels(model, max_block)
        self.reset()

    @property
    def max_block(self) -> int:
        return self.kernels.max_block

    def reset(self):
        n = len(self.kernels.layers)
        self._buffers: List = [None] * n
        self._acc: List = [None] * n  # deferred layers: earlier taps' sums per window end
        self._count = [0] * n  # frames received per layer
        self._applied = [0] * n  # deferred layers: frames whose earlier taps are applied

    def _store(self, index: int, layer: _Layer, x: torch.Tensor):
        """Store x (B, K, C) in a layer's ring; return (M, taps or end slots, skip slots) for
        the M windows whose last frame is among the new ones (see :meth:`_Layer.indices`)."""
        b, k, c = x.shape
        buf = self._buffers[index]
        if buf is None or buf.shape[0] != b or buf.shape[2] != c:
            buf = self._buffers[index] = x.new_zeros(b, layer.size, c)
            self._count[index] = self._applied[index] = 0
            if layer.deferred:
                self._acc[index] = x.new_zeros(b, layer.size, layer.out_channels)
        n = self._count[index]
        self._count[index] = n + k
        m = max(0, min(k, n + k - layer.span + 1))
        write, second, skip = layer.indices(n % layer.size, k, m)
        buf[:, write] = x
        return m, second, skip

    def _windows(self, index: int, m: int, taps: torch.Tensor) -> torch.Tensor:
        """A direct layer's m complete windows, (B*M, W*C)."""
        buf = self._buffers[index]
        # index_select: a third of the cost of advanced indexing for these small gathers.
        return buf.index_select(1, taps).reshape(buf.shape[0] * m, -1)

    def _take_pending(self, index: int, layer: _Layer):
        """A deferred layer's frames whose earlier taps are to be applied now, as
        (rows (B*P, C), keep, accumulator slots), or None. Now means: it is the layer's turn
        (the stream's frame count is its phase, modulo its period), or a window closing at
        the newest frame needs them (after a block or at the start)."""
        n, first = self._count[index], self._applied[index]
        count = n - first
        if not count or (n - 1 - first < layer.dilation
                         and self._count[0] % layer.period != layer.phase):
            return None
        self._applied[index] = n
        rows, keep, slots = layer.flush_indices(first, count)
        buf = self._buffers[index]
        return buf.index_select(1, rows).reshape(buf.shape[0] * count, -1), keep, slots

    def _accumulate(self, index: int, products: torch.Tensor, keep, slots):
        """Add earlier-tap products (B*P, (W-1)*C_out) into the windows they belong to."""
        acc = self._acc[index]
        products = products.reshape(acc.shape[0], -1, acc.shape[2])
        if keep is not None:
            products = products.index_select(1, keep)
        acc.index_add_(1, slots, products)

    def _close(self, index: int, newest: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """A deferred layer's outputs for windows ending at ``ends``: the newest tap's
        product (B, M, C_out) plus the accumulated earlier taps, then ReLU; frees the slots."""
        acc = self._acc[index]
        out = newest.add_(acc.index_select(1, ends)).clamp_(min=0)
        acc.index_fill_(1, ends, 0.0)
        return out

    def push_block(self, frames: torch.Tensor) -> Optional[torch.Tensor]:
        """frames (B, K, J_in, F), K <= max_block -> new poses (B, M, J_out, 3), or None."""
        return push_streams([self], [frames])[0]

    def push(self, frame: torch.Tensor) -> Optional[torch.Tensor]:
        """One frame (B, J_in, F) -> the new pose (B, J_out, 3), or None."""
        out = self.push_block(frame[:, None])
        return None if out is None else out[:, 0]


def _product(layer: DenseLayer, parts: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """One matrix product over the rows of several streams, split back per stream."""
    y = layer(parts[0] if len(parts) == 1 else torch.cat(parts))
    return [y] if len(parts) == 1 else list(y.split([len(p) for p in parts]))


def push_streams(states: Sequence[StreamingState],
                 blocks: Sequence[torch.Tensor]) -> List[Optional[torch.Tensor]]:
    """Push a block of frames (B_i, K_i, J_in, F) into each of several streams of one model;
    returns each stream's new poses (B_i, M_i, J_out, 3), or None where none came out.

    The streams' rows meet in one matrix product per layer (and per deferred batch), so a
    layer's weights are read once for all of them: frames of 4 cameras (or 4 persons) that
    are due together cost about what one costs for a memory-bound model. Each stream's
    outputs are those of pushing its block alone."""
    if not states or len(states) != len(blocks):
        raise ValueError('push_streams needs one block per stream')
    kernels = states[0].kernels
    if any(s.kernels is not kernels for s in states):
        raise ValueError('streams pushed together must share one model\'s kernels')
    for block in blocks:
        if block.shape[1] > kernels.max_block:
            raise ValueError(f'block of {block.shape[1]} frames exceeds '
                             f'max_block={kernels.max_block}')
    xs = [block.reshape(block.shape[0], block.shape[1], -1) for block in blocks]
    live = list(range(len(states)))  # streams with new frames at the current layer
    with torch.no_grad():
        for index, layer in enumerate(kernels.layers):
            stored = [(i, states[i]._store(index, layer, xs[i])) for i in live]
            if layer.deferred:
                pending = [(i, states[i]._take_pending(index, layer)) for i in live]
                pending = [(i, got) for i, got in pending if got is not None]
                if pending:
                    products = _product(layer.early, [got[0] for _, got in pending])
                    for (i, (_, keep, slots)), part in zip(pending, products):
                        states[i]._accumulate(index, part, keep, slots)
            due = [(i, got) for i, got in stored if got[0] > 0]
            if not due:
                return [None] * len(states)
            live = [i for i, _ in due]
            if layer.deferred:  # the windows' newest frames are the last M new inputs
                rows = [xs[i][:, -m:].reshape(-1, xs[i].shape[2]) for i, (m, _, _) in due]
            else:
                rows = [states[i]._windows(index, m, taps) for i, (m, taps, _) in due]
            ys = _product(layer.conv, rows)
            if layer.deferred:
                ys = [states[i]._close(index, y.reshape(xs[i].shape[0], m, -1), ends)
                      for (i, (m, ends, _)), y in zip(due, ys)]
            if layer.pointwise is not None:
                ys = _product(layer.pointwise, [y.reshape(-1, y.shape[-1]) for y in ys])
            for (i, (m, _, skip)), y in zip(due, ys):
                y = y.reshape(xs[i].shape[0], m, -1)
                xs[i] = y if skip is None else states[i]._buffers[index].index_select(1, skip) + y
        ys = [xs[i] for i in live]
        outs = _product(kernels.shrink, [y.reshape(-1, y.shape[-1]) for y in ys])
        poses: List[Optional[torch.Tensor]] = [None] * len(states)
        for i, y, out in zip(live, ys, outs):
            poses[i] = out.reshape(y.shape[0], y.shape[1], kernels.arch.num_joints_out, 3)
        return poses


def build_model(arch: Architecture) -> TemporalModel:
    return TemporalModel(arch).eval()
