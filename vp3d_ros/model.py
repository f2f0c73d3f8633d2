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

    Each layer keeps a ring buffer of its last ``(W-1)*dilation+1`` inputs. Pushing one
    frame (already padded/normalised, shape (B, J_in, F)) computes at most one new output
    per layer from the W taps it needs; :meth:`push` returns the new pose (B, J_out, 3)
    once the receptive field is full. Cost per frame: one kernel application per layer,
    instead of recomputing a whole receptive-field window.
    """

    def __init__(self, model: TemporalModel):
        if model.training:
            raise ValueError('streaming needs an eval-mode model (BatchNorm running stats)')
        self.model = model
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
        """Store x (B, C) in a layer's ring; return (taps (B, C*W), skip (B, C)) when full."""
        span, taps, crop, _ = self._layers[layer]
        buf = self._buffers[layer]
        if buf is None or buf.shape[:2] != x.shape:
            buf = self._buffers[layer] = x.new_zeros(x.shape[0], x.shape[1], span)
            self._count[layer] = 0
        n = self._count[layer]
        buf[:, :, n % span] = x
        self._count[layer] = n + 1
        if n + 1 < span:
            return None
        start = n + 1 - span  # absolute index of the window's oldest frame
        idx = (start + taps) % span
        window = buf[:, :, idx].reshape(x.shape[0], -1)
        skip = buf[:, :, (start + crop) % span] if crop is not None else None
        return window, skip

    @torch.no_grad()
    def push(self, frame: torch.Tensor) -> Optional[torch.Tensor]:
        m = self.model
        self.frames_in += 1
        got = self._append(0, frame.reshape(frame.shape[0], -1))
        if got is None:
            return None
        x = F.relu(m.expand_bn(F.linear(got[0], self._layers[0][3])))
        for i in range(len(m.blocks)):
            got = self._append(i + 1, x)
            if got is None:
                return None
            window, skip = got
            y = F.relu(m.layers_bn[2 * i](F.linear(window, self._layers[i + 1][3])))
            wt = m.layers_conv[2 * i + 1].weight
            x = skip + F.relu(m.layers_bn[2 * i + 1](F.linear(y, wt[:, :, 0])))
        out = F.linear(x, m.shrink.weight[:, :, 0], m.shrink.bias)
        return out.reshape(out.shape[0], m.arch.num_joints_out, 3)


def build_model(arch: Architecture) -> TemporalModel:
    return TemporalModel(arch).eval()
