"""One streaming layer as a matrix product: ``relu(x @ kernel.T + bias)`` for a few rows.

Streaming a large model frame by frame multiplies a handful of rows (2 with flip
augmentation) by each layer's kernel, so the cost is reading the kernel from memory. Plain
``F.linear`` does that well for one row, but for 2..16 rows the BLAS behind it repacks the
whole kernel on every call and reads it about twice (measured on AMD EPYC with torch's MKL).
oneDNN can pack a kernel once, ahead of time; :class:`DenseLayer` uses that packed copy for
multi-row products with kernels too large for the caches, when the running torch offers it
and it reproduces ``F.linear`` on a probe, and falls back to ``F.linear`` otherwise (other
builds, other devices), so results never depend on which path ran beyond float32 rounding.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch.nn import functional as F

#: The row count the packed kernel is laid out for: a frame and its mirror image.
PACKED_ROWS = 2
#: Smaller kernels stay in cache, where the packed call's fixed cost (~25 us) outweighs what
#: it saves (measured: break-even between 1 and 3 MB on a 2-core EPYC VM).
PACK_MIN_BYTES = 2 * 2 ** 20


def _packed_ops():
    """oneDNN's prepacked linear (the one torch's own CPU compiler uses), or None."""
    ops = getattr(torch.ops, 'mkldnn', None)
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        return ops._reorder_linear_weight, ops._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


class DenseLayer:
    """``relu(x @ kernel.T + bias)`` (or without the ReLU or the bias) for x of shape
    (rows, in)."""

    def __init__(self, kernel: torch.Tensor, bias: Optional[torch.Tensor], relu: bool = True,
                 packed: bool = True):
        self.kernel = kernel.detach().contiguous()
        self.bias = None if bias is None else bias.detach().contiguous()
        self.relu = relu
        self._packed = self._pack() if packed else None

    @property
    def nbytes(self) -> int:
        """Bytes a product reads from memory: the kernel (bias and rows are negligible)."""
        return self.kernel.numel() * self.kernel.element_size()

    @property
    def is_packed(self) -> bool:
        return self._packed is not None

    def _pack(self):
        ops = _packed_ops()
        if (ops is None or self.kernel.device.type != 'cpu' or self.kernel.dtype != torch.float32
                or self.nbytes < PACK_MIN_BYTES):
            return None
        reorder, linear = ops
        attr = 'relu' if self.relu else 'none'
        try:
            weight = reorder(self.kernel, PACKED_ROWS)
            probe = torch.randn(PACKED_ROWS + 1, self.kernel.shape[1],
                                generator=torch.Generator().manual_seed(0))
            got = linear(probe, weight, self.bias, attr, [], '')
        except (RuntimeError, TypeError):
            return None
        if not torch.allclose(got, self._plain(probe), rtol=1e-4, atol=1e-4):
            return None
        return linear, weight, attr

    def _plain(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.kernel, self.bias)
        return y.clamp_(min=0) if self.relu else y

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # One row: plain GEMV already reads the kernel once; packed would be slower.
        if self._packed is None or x.shape[0] < 2:
            return self._plain(x)
        linear, weight, attr = self._packed
        return linear(x.contiguous(), weight, self.bias, attr, [], '')
