"""Which checkpoint, architecture and input layout a lifter uses: one resolution rule for
the CLI, the offline tool and the lifter node.

Explicit settings win; then the checkpoint's sidecar (``<name>.yaml``); then defaults
(H36M input layout). Without a checkpoint the shipped default model is used, if present.

Importing this module does not import torch (checkpoint loading does, when called).
``model_provenance`` is the record of what was resolved, for bags and the lifter's ``~/model``.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from .checkpoint import LoadedCheckpoint

from .. import MODELS_DIR
DEFAULT_CHECKPOINTS = {
    'causal': os.path.join(MODELS_DIR, 'vp3d_ros_causal_h36m.bin'),
    'symmetric': os.path.join(MODELS_DIR, 'vp3d_ros_symmetric_h36m.bin'),
}


def default_checkpoint(mode: str = 'symmetric') -> str:
    """The shipped checkpoint of ``mode`` ('causal' or 'symmetric')."""
    from .checkpoint import CheckpointError
    if mode not in DEFAULT_CHECKPOINTS:
        raise CheckpointError(f"mode must be {' or '.join(repr(k) for k in DEFAULT_CHECKPOINTS)} "
                              f'(which shipped model to use when no checkpoint is given), '
                              f'got {mode!r}')
    path = DEFAULT_CHECKPOINTS[mode]
    if not os.path.isfile(path):
        raise CheckpointError(f'no checkpoint given and the shipped default ({path}) is not '
                              'installed; pass a VideoPose3D checkpoint explicitly')
    return path


def resolve_lifter(checkpoint: Optional[str], filter_widths: Optional[Sequence[int]] = None,
                   channels: Optional[int] = None, causal: Optional[bool] = None,
                   layout: Optional[str] = None, mode: str = 'symmetric'
                   ) -> Tuple[LoadedCheckpoint, str]:
    from .checkpoint import CheckpointError, load_checkpoint
    path = checkpoint or default_checkpoint(mode)
    ckpt = load_checkpoint(path, filter_widths=filter_widths or None, channels=channels or None,
                           causal=causal)
    if not layout:
        layout = str(ckpt.sidecar.get('input_layout', 'h36m'))
    if layout not in ('coco', 'h36m'):
        raise CheckpointError(f"input layout must be 'coco' or 'h36m', got {layout!r}")
    return ckpt, layout


def model_provenance(ckpt: LoadedCheckpoint, layout: str, flip: bool, **extra) -> dict:
    """What a lifter actually loaded and how it lifts, as bags record it (``vp3d.checkpoint``):
    the live lifter announces this on its ``~/model`` topic and the offline tool writes it, so
    a bag names the model that made its skeletons, not the one a recorder was told about."""
    arch = ckpt.arch
    defaults = {os.path.abspath(p) for p in DEFAULT_CHECKPOINTS.values()}
    return {
        'path': ckpt.path, 'sha256': ckpt.sha256,
        'architecture': {'filter_widths': list(arch.filter_widths), 'channels': arch.channels,
                         'causal': arch.causal, 'receptive_field': arch.receptive_field,
                         'joints_in': arch.num_joints_in, 'joints_out': arch.num_joints_out},
        'input_layout': layout, 'causal': arch.causal, 'flip': bool(flip),
        'mode': 'causal' if arch.causal else 'symmetric',
        'shipped_default': os.path.abspath(ckpt.path) in defaults,
        **extra}
