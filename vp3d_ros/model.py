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

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F


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
    else per frame that it can do once: BatchNorm is folded into the kernels, and kernels
    are laid out tap-major to match time-major ring buffers, so a layer is one gather and
    one ``linear``.
    """

    def __init__(self, model: TemporalModel, max_block: int = 64):
        if model.training:
            raise ValueError('streaming needs an eval-mode model (BatchNorm running stats)')
        self.arch = model.arch
        self.max_block = max_block
        weight = model.expand_conv.weight
        fw = model.arch.filter_widths
        # Per layer: (span, tap offsets from the window start, skip offset or None, kernel,
        # bias, then the block's 1x1 kernel and bias or None).
        self._layers = []
        kernel, bias = self._fold(weight, model.expand_bn)
        self._layers.append((fw[0], self._index(range(fw[0])), None, kernel, bias, None, None))
        for i, (w, (dilation, crop)) in enumerate(zip(fw[1:], model.blocks)):
            kernel, bias = self._fold(model.layers_conv[2 * i].weight, model.layers_bn[2 * i])
            k1, b1 = self._fold(model.layers_conv[2 * i + 1].weight, model.layers_bn[2 * i + 1])
            self._layers.append(((w - 1) * dilation + 1, self._index(range(0, w * dilation, dilation)),
                                 crop, kernel, bias, k1, b1))
        self._shrink = (model.shrink.weight[:, :, 0].detach().contiguous(), model.shrink.bias.detach())
        self.reset()

    @staticmethod
    def _index(values) -> torch.Tensor:
        return torch.tensor(list(values), dtype=torch.long)

    def _fold(self, weight: torch.Tensor, bn: nn.BatchNorm1d):
        """Conv kernel (out, C, W) + eval BatchNorm -> tap-major (out, W*C) kernel and bias."""
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            kernel = (weight * scale[:, None, None]).permute(0, 2, 1).reshape(weight.shape[0], -1)
            bias = bn.bias - bn.running_mean * scale
        return kernel.contiguous(), bias.contiguous()

    def reset(self):
        self._buffers: List = [None] * len(self._layers)
        self._count = [0] * len(self._layers)

    def _append(self, layer: int, x: torch.Tensor):
        """Store x (B, K, C) in a layer's ring; return (taps (B*M, W*C), skip (B, M, C) or
        None, M) for the M windows that became complete, or None if none did."""
        span, taps, crop = self._layers[layer][:3]
        b, k, c = x.shape
        size = span + self.max_block
        buf = self._buffers[layer]
        if buf is None or buf.shape[0] != b or buf.shape[2] != c:
            buf = self._buffers[layer] = x.new_zeros(b, size, c)
            self._count[layer] = 0
        n = self._count[layer]
        pos = n % size
        if pos + k <= size:
            buf[:, pos:pos + k] = x
        else:
            buf[:, self._index((n + j) % size for j in range(k))] = x
        self._count[layer] = n + k
        first = max(n, span - 1)  # absolute index of the first newly completed window's end
        m = n + k - first
        if m <= 0:
            return None
        starts = self._index(range(first - span + 1, n + k - span + 1))
        window = buf[:, (starts[:, None] + taps[None, :]) % size].reshape(b * m, -1)
        skip = buf[:, (starts + crop) % size] if crop is not None else None
        return window, skip, m

    @staticmethod
    def _dense(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Conv (as one matrix product over the gathered taps) + folded BatchNorm + ReLU."""
        return F.linear(x, kernel, bias).clamp_(min=0)

    def push_block(self, frames: torch.Tensor) -> Optional[torch.Tensor]:
        """frames (B, K, J_in, F), K <= max_block -> new poses (B, M, J_out, 3), or None."""
        b, k = frames.shape[:2]
        if k > self.max_block:
            raise ValueError(f'block of {k} frames exceeds max_block={self.max_block}')
        with torch.no_grad():
            x = frames.reshape(b, k, -1)
            for layer, (_, _, crop, kernel, bias, k1, b1) in enumerate(self._layers):
                got = self._append(layer, x)
                if got is None:
                    return None
                window, skip, m = got
                y = self._dense(window, kernel, bias)
                if crop is None:
                    x = y.reshape(b, m, -1)
                else:
                    x = skip + self._dense(y, k1, b1).reshape(b, m, -1)
            out = F.linear(x, *self._shrink)
            return out.reshape(b, m, self.arch.num_joints_out, 3)

    def push(self, frame: torch.Tensor) -> Optional[torch.Tensor]:
        """One frame (B, J_in, F) -> the new pose (B, J_out, 3), or None."""
        out = self.push_block(frame[:, None])
        return None if out is None else out[:, 0]


def build_model(arch: Architecture) -> TemporalModel:
    return TemporalModel(arch).eval()
