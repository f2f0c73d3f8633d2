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
    per frame (large models are memory-bound on CPU).
    """

    def __init__(self, model: TemporalModel, max_block: int = 64):
        if model.training:
            raise ValueError('streaming needs an eval-mode model (BatchNorm running stats)')
        self.model = model
        self.max_block = max_block
        fw = model.arch.filter_widths
        # Per layer: (span, tap offsets from the window start, skip offset or None, weight).
        self._layers = []
        w0 = model.expand_conv.weight
        self._layers.append((fw[0], torch.arange(fw[0]), None, w0.reshape(w0.shape[0], -1)))
        for i, (w, (dilation, crop)) in enumerate(zip(fw[1:], model.blocks)):
            wt = model.layers_conv[2 * i].weight
            self._layers.append(((w - 1) * dilation + 1, torch.arange(w) * dilation, crop,
                                 wt.reshape(wt.shape[0], -1)))
        self.reset()

    def reset(self):
        self._buffers: List[Optional[torch.Tensor]] = [None] * len(self._layers)
        self._count = [0] * len(self._layers)
        self.frames_in = 0

    def _append(self, layer: int, x: torch.Tensor):
        """Store x (B, K, C) in a layer's ring; return (taps (B*M, C*W), skip (B, M, C) or
        None, M) for the M windows that became complete, or None if none did."""
        span, taps, crop, _ = self._layers[layer]
        b, k, c = x.shape
        size = span + self.max_block
        buf = self._buffers[layer]
        if buf is None or buf.shape[:2] != (b, c):
            buf = self._buffers[layer] = x.new_zeros(b, c, size)
            self._count[layer] = 0
        n = self._count[layer]
        buf[:, :, (n + torch.arange(k)) % size] = x.permute(0, 2, 1)
        self._count[layer] = n + k
        first = max(n, span - 1)  # absolute index of the first newly completed window's end
        m = n + k - first
        if m <= 0:
            return None
        starts = torch.arange(first, n + k) - span + 1
        idx = (starts[:, None] + taps[None, :]) % size  # (M, W)
        window = buf[:, :, idx].permute(0, 2, 1, 3).reshape(b * m, -1)
        skip = buf[:, :, (starts + crop) % size].permute(0, 2, 1) if crop is not None else None
        return window, skip, m

    @torch.no_grad()
    def push_block(self, frames: torch.Tensor) -> Optional[torch.Tensor]:
        """frames (B, K, J_in, F), K <= max_block -> new poses (B, M, J_out, 3), or None."""
        mdl = self.model
        b, k = frames.shape[:2]
        if k > self.max_block:
            raise ValueError(f'block of {k} frames exceeds max_block={self.max_block}')
        self.frames_in += k
        got = self._append(0, frames.reshape(b, k, -1))
        if got is None:
            return None
        window, _, m = got
        x = F.relu(mdl.expand_bn(F.linear(window, self._layers[0][3]))).reshape(b, m, -1)
        for i in range(len(mdl.blocks)):
            got = self._append(i + 1, x)
            if got is None:
                return None
            window, skip, m = got
            y = F.relu(mdl.layers_bn[2 * i](F.linear(window, self._layers[i + 1][3])))
            wt = mdl.layers_conv[2 * i + 1].weight
            y = F.relu(mdl.layers_bn[2 * i + 1](F.linear(y, wt[:, :, 0])))
            x = skip + y.reshape(b, m, -1)
        out = F.linear(x, mdl.shrink.weight[:, :, 0], mdl.shrink.bias)
        return out.reshape(b, m, mdl.arch.num_joints_out, 3)

    def push(self, frame: torch.Tensor) -> Optional[torch.Tensor]:
        """One frame (B, J_in, F) -> the new pose (B, J_out, 3), or None."""
        out = self.push_block(frame.unsqueeze(1))
        return None if out is None else out[:, 0]


def build_model(arch: Architecture) -> TemporalModel:
    return TemporalModel(arch).eval()
