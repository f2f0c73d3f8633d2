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

from .dense import DenseLayer


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


class _Layer:
    """One streaming layer's geometry and (BatchNorm-folded, tap-major) kernels."""

    def __init__(self, span: int, taps: Sequence[int], crop: Optional[int], conv: DenseLayer,
                 pointwise: Optional[DenseLayer], max_block: int):
        self.span, self.taps, self.crop = span, list(taps), crop
        self.conv, self.pointwise = conv, pointwise
        self.size = span + max_block  # ring length: a full window plus room for a block
        self._indices: dict = {}

    def indices(self, pos: int, k: int, m: int):
        """Ring indices for k frames written at ``pos`` that complete m windows: (where to
        write, the m windows' taps or None, their skip frames or None). Computed once per
        distinct (pos, k, m): frame by frame, that is one entry per ring slot."""
        key = (pos, k, m)
        got = self._indices.get(key)
        if got is None:
            if len(self._indices) > 4096:  # odd block sizes only; never in steady state
                self._indices.clear()
            size = self.size
            write = slice(pos, pos + k) if pos + k <= size else \
                torch.tensor([(pos + j) % size for j in range(k)])
            starts = [pos + k - m - self.span + 1 + j for j in range(m)]
            window = torch.tensor([(s + t) % size for s in starts for t in self.taps]) \
                if m else None
            skip = torch.tensor([(s + self.crop) % size for s in starts]) \
                if m and self.crop is not None else None
            got = self._indices[key] = (write, window, skip)
        return got


class StreamingKernels:
    """What every stream of one model shares: the layers folded for streaming. Build it
    through :func:`streaming_kernels`, which keeps one per model (4 cameras of a
    1024-channel model would otherwise hold 4 copies of its 67 MB of weights)."""

    def __init__(self, model: TemporalModel, max_block: int = 64):
        if model.training:
            raise ValueError('streaming needs an eval-mode model (BatchNorm running stats)')
        self.arch = model.arch
        self.max_block = max_block
        fw = model.arch.filter_widths
        expand = DenseLayer(*_fold(model.expand_conv.weight, model.expand_bn))
        self.layers: List[_Layer] = [_Layer(fw[0], range(fw[0]), None, expand, None, max_block)]
        for i, (w, (dilation, crop)) in enumerate(zip(fw[1:], model.blocks)):
            conv = DenseLayer(*_fold(model.layers_conv[2 * i].weight, model.layers_bn[2 * i]))
            pointwise = DenseLayer(*_fold(model.layers_conv[2 * i + 1].weight,
                                          model.layers_bn[2 * i + 1]))
            self.layers.append(_Layer((w - 1) * dilation + 1, range(0, w * dilation, dilation),
                                      crop, conv, pointwise, max_block))
        self.shrink = DenseLayer(model.shrink.weight[:, :, 0], model.shrink.bias, relu=False,
                                 packed=False)


def _fold(weight: torch.Tensor, bn: nn.BatchNorm1d):
    """Conv kernel (out, C, W) + eval BatchNorm -> tap-major (out, W*C) kernel and bias."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        kernel = (weight * scale[:, None, None]).permute(0, 2, 1).reshape(weight.shape[0], -1)
        bias = bn.bias - bn.running_mean * scale
    return kernel, bias


_KERNELS: 'weakref.WeakKeyDictionary[TemporalModel, tuple]' = weakref.WeakKeyDictionary()


def streaming_kernels(model: TemporalModel, max_block: int = 64) -> StreamingKernels:
    """The model's shared :class:`StreamingKernels`, rebuilt if its weights changed since
    (any in-place change, e.g. ``load_state_dict``, bumps a tensor's version)."""
    version = (max_block, tuple(t._version for t in model.state_dict().values()))
    cached = _KERNELS.get(model)
    if cached is None or cached[0] != version:
        cached = _KERNELS[model] = (version, StreamingKernels(model, max_block))
    return cached[1]


class StreamingState:
    """Incremental evaluation of an eval-mode :class:`TemporalModel`.

    Each layer keeps a ring buffer of its last ``(W-1)*dilation+1`` inputs (plus room for a
    block). Pushing frames (already padded/normalised) computes only the new outputs of each
    layer from the W taps they need; a pose comes out once the receptive field is full. Cost
    per frame: one kernel application per layer, instead of recomputing a whole
    receptive-field window. :meth:`push_block` takes several frames at once: the same
    outputs, but each layer's weights are read from memory once per block instead of once
    per frame.

    One frame at a time is a matrix-vector product per layer, bound by memory bandwidth
    (the 1024-channel model reads 67 MB of weights per frame), so the engine does nothing
    else per frame that it can do once: BatchNorm is folded into the kernels, kernels are
    laid out tap-major to match time-major ring buffers and shared by every stream of the
    model, ring indices are computed once, and a layer is one gather and one matrix product
    (:class:`~vp3d_ros.dense.DenseLayer`).
    """

    def __init__(self, model: TemporalModel, max_block: int = 64):
        self.kernels = streaming_kernels(model, max_block)
        self.reset()

    @property
    def max_block(self) -> int:
        return self.kernels.max_block

    def reset(self):
        self._buffers: List = [None] * len(self.kernels.layers)
        self._count = [0] * len(self.kernels.layers)

    def _append(self, index: int, layer: _Layer, x: torch.Tensor):
        """Store x (B, K, C) in a layer's ring; return (taps (B*M, W*C), skip (B, M, C) or
        None, M) for the M windows that became complete, or None if none did."""
        b, k, c = x.shape
        buf = self._buffers[index]
        if buf is None or buf.shape[0] != b or buf.shape[2] != c:
            buf = self._buffers[index] = x.new_zeros(b, layer.size, c)
            self._count[index] = 0
        n = self._count[index]
        self._count[index] = n + k
        m = min(k, n + k - layer.span + 1)  # windows whose last frame is among the new ones
        write, window, skip = layer.indices(n % layer.size, k, max(m, 0))
        buf[:, write] = x
        if m <= 0:
            return None
        # index_select: a third of the cost of advanced indexing for these small gathers.
        taps = buf.index_select(1, window).reshape(b * m, -1)
        return taps, None if skip is None else buf.index_select(1, skip), m

    def push_block(self, frames: torch.Tensor) -> Optional[torch.Tensor]:
        """frames (B, K, J_in, F), K <= max_block -> new poses (B, M, J_out, 3), or None."""
        return push_streams([self], [frames])[0]

    def push(self, frame: torch.Tensor) -> Optional[torch.Tensor]:
        """One frame (B, J_in, F) -> the new pose (B, J_out, 3), or None."""
        out = self.push_block(frame[:, None])
        return None if out is None else out[:, 0]


def push_streams(states: Sequence[StreamingState],
                 blocks: Sequence[torch.Tensor]) -> List[Optional[torch.Tensor]]:
    """Push a block of frames (B_i, K_i, J_in, F) into each of several streams of one model;
    returns each stream's new poses (B_i, M_i, J_out, 3), or None where none came out.

    The streams' windows meet in one matrix product per layer, so a layer's weights are
    read once for all of them: frames of 4 cameras (or 4 persons) that are due together cost
    about what one costs for a memory-bound model. Each stream's outputs are exactly those of
    pushing its block alone."""
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
    live = list(range(len(states)))  # streams with new windows at the current layer
    with torch.no_grad():
        for index, layer in enumerate(kernels.layers):
            due = [(i, states[i]._append(index, layer, xs[i])) for i in live]
            due = [(i, got) for i, got in due if got is not None]
            if not due:
                return [None] * len(states)
            live = [i for i, _ in due]
            windows = [got[0] for _, got in due]
            y = layer.conv(windows[0] if len(windows) == 1 else torch.cat(windows))
            if layer.pointwise is not None:
                y = layer.pointwise(y)
            parts = (y,) if len(windows) == 1 else y.split([len(w) for w in windows])
            for (i, (window, skip, m)), part in zip(due, parts):
                part = part.reshape(len(window) // m, m, -1)
                xs[i] = part if skip is None else skip + part
        ys = [xs[i] for i in live]
        flat = [y.reshape(-1, y.shape[-1]) for y in ys]
        out = kernels.shrink(flat[0] if len(flat) == 1 else torch.cat(flat))
        parts = (out,) if len(flat) == 1 else out.split([len(f) for f in flat])
        poses: List[Optional[torch.Tensor]] = [None] * len(states)
        for i, y, part in zip(live, ys, parts):
            poses[i] = part.reshape(y.shape[0], y.shape[1], kernels.arch.num_joints_out, 3)
        return poses


def build_model(arch: Architecture) -> TemporalModel:
    return TemporalModel(arch).eval()
