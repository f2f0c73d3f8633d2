"""Loading VideoPose3D-layout checkpoints without executing code from the file.

Accepted files: the official training layout (a dict with ``model_pos`` and optionally
``model_traj``, ``optimizer``, ``epoch``, ``lr``, ``random_state``...) and bare state
dicts. Loading uses ``torch.load(weights_only=True)`` with an explicit allow-list of the
only non-tensor globals a real checkpoint holds (numpy's RandomState tuple in
``random_state``); anything else, e.g. a pickle that carries a callable, is refused.

Filter widths and channels are inferred from tensor shapes; causality is not stored in a
checkpoint (it changes only the skip-connection crops), so it comes from configuration or
from a sidecar file ``<checkpoint>.yaml`` written next to our trained checkpoints.
"""
from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from .hashing import file_sha256  # noqa: F401 - re-exported
from .model import Architecture, TemporalModel


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with a message that says what to fix."""


def _numpy_safe_globals():
    """The numpy globals a pickled ``np.random.RandomState.get_state()`` needs."""
    allowed = [np.ndarray, np.dtype]
    try:
        from numpy.core.multiarray import _reconstruct  # numpy < 2
    except ImportError:  # pragma: no cover - numpy 2
        from numpy._core.multiarray import _reconstruct
    allowed.append(_reconstruct)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in ('UInt32DType', 'Float64DType', 'Int64DType')
                    if hasattr(dtypes, n)]
    return allowed


@dataclass
class LoadedCheckpoint:
    path: str
    sha256: str
    state_dict: Dict[str, torch.Tensor]
    arch: Architecture
    has_trajectory_model: bool = False
    sidecar: Dict[str, Any] = field(default_factory=dict)

    def build(self, device: str = 'cpu', dtype=torch.float32) -> TemporalModel:
        model = TemporalModel(self.arch)
        model.load_state_dict(self.state_dict)
        return model.to(device=device, dtype=dtype).eval()


def read_sidecar(path: str) -> Dict[str, Any]:
    """``model.bin`` -> ``model.yaml`` (architecture, layout, frame rate, provenance)."""
    import yaml
    for candidate in (os.path.splitext(path)[0] + '.yaml', path + '.yaml'):
        if os.path.isfile(candidate):
            with open(candidate) as f:
                data = yaml.safe_load(f) or {}
            if not isinstance(data, dict):
                raise CheckpointError(f'{candidate}: sidecar must be a YAML mapping')
            return data
    return {}


def _extract_state_dict(obj: Any, path: str) -> (Dict[str, torch.Tensor], bool):
    if not isinstance(obj, dict):
        raise CheckpointError(f'{path}: not a checkpoint (top level is {type(obj).__name__}, '
                              'expected a dict with "model_pos" or a state_dict)')
    has_traj = 'model_traj' in obj
    sd = obj['model_pos'] if 'model_pos' in obj else obj
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f'{path}: "model_pos" is not a state_dict')
    sd = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in sd.items()}
    if 'expand_conv.weight' not in sd or 'shrink.weight' not in sd:
        keys = ', '.join(sorted(sd)[:6])
        raise CheckpointError(f'{path}: not a VideoPose3D temporal model (keys: {keys}...; '
                              'expected expand_conv.weight, layers_conv.*, shrink.weight)')
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f'{path}: non-tensor entries in state_dict: {bad[:5]}')
    return sd, has_traj


def infer_architecture(sd: Dict[str, torch.Tensor], num_joints_in: int = 17) -> Architecture:
    """Filter widths, channels and joint counts from tensor shapes (causal unknown: False)."""
    for name, t in sd.items():
        kernel = name in ('expand_conv.weight', 'shrink.weight') or \
            name.startswith('layers_conv.') and name.endswith('.weight')
        if kernel and (not isinstance(t, torch.Tensor) or t.dim() != 3):
            raise CheckpointError(f'{name} has shape {list(getattr(t, "shape", []))}, but a '
                                  'Conv1d kernel is 3-dimensional (out, in, width): not a '
                                  'VideoPose3D model_pos state_dict, or a damaged one')
    w = sd['expand_conv.weight']
    channels, in_dim, fw0 = w.shape
    if in_dim % num_joints_in:
        raise CheckpointError(f'expand_conv takes {in_dim} inputs, not a multiple of '
                              f'{num_joints_in} joints')
    widths = [fw0]
    i = 0
    while f'layers_conv.{2 * i}.weight' in sd:
        widths.append(sd[f'layers_conv.{2 * i}.weight'].shape[2])
        i += 1
    out = sd['shrink.weight'].shape[0]
    if out % 3:
        raise CheckpointError(f'shrink outputs {out} values, not a multiple of 3')
    return Architecture(filter_widths=tuple(int(x) for x in widths), channels=int(channels),
                        num_joints_in=num_joints_in, in_features=in_dim // num_joints_in,
                        num_joints_out=out // 3)


def _torch_load(path: str):
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e).split('\n')[0]
        raise CheckpointError(
            f'{path}: refused to load: the file holds Python objects outside the allow-list '
            f'of a VideoPose3D checkpoint (tensors, dicts, numbers, numpy RNG state); it may '
            f'carry code. Detail: {msg}') from None
    except Exception as e:  # torch raises many types for a non-checkpoint file
        raise CheckpointError(f'{path}: not a readable PyTorch checkpoint ({type(e).__name__}: '
                              f'{str(e).splitlines()[0] if str(e) else ""})') from None


def load_checkpoint(path: str, filter_widths: Optional[Sequence[int]] = None,
                    channels: Optional[int] = None, causal: Optional[bool] = None,
                    num_joints_in: int = 17) -> LoadedCheckpoint:
    """Load and validate. Configured values (None = take from sidecar/inference) must match
    the tensors; a mismatch raises :class:`CheckpointError` naming both architectures."""
    if not path or not os.path.isfile(path):
        raise CheckpointError(f'checkpoint file not found: {path!r} (set the "checkpoint" '
                              'parameter to a VideoPose3D .bin file)')
    obj = _torch_load(path)
    sd, has_traj = _extract_state_dict(obj, path)
    inferred = infer_architecture(sd, num_joints_in)
    sidecar = read_sidecar(path)
    arch_cfg = sidecar.get('architecture', {}) if isinstance(sidecar.get('architecture'), dict) else {}
    want_fw = filter_widths if filter_widths else arch_cfg.get('filter_widths')
    want_ch = channels if channels else arch_cfg.get('channels')
    want_causal = causal if causal is not None else bool(arch_cfg.get('causal', False))
    if want_fw is not None and tuple(int(x) for x in want_fw) != inferred.filter_widths or \
            want_ch is not None and int(want_ch) != inferred.channels:
        configured = f"filter_widths={list(want_fw) if want_fw else 'any'} channels={want_ch or 'any'}"
        raise CheckpointError(
            f'{path}: configured architecture ({configured}) does not match the checkpoint '
            f'({inferred.describe()}); fix filter_widths/channels or pick the right file')
    arch = replace(inferred, causal=want_causal)
    model = TemporalModel(arch)
    shape_err = [f'{k} is {list(sd[k].shape)} where {list(v.shape)} is needed'
                 for k, v in model.state_dict().items()
                 if k in sd and hasattr(sd[k], 'shape') and sd[k].shape != v.shape]
    if shape_err:
        raise CheckpointError(f'{path}: tensors do not fit {arch.describe()}: '
                              f'{"; ".join(shape_err[:4])} (a damaged or edited checkpoint; '
                              'use the file as trained)')
    broken = [k for k, t in sd.items() if isinstance(t, torch.Tensor) and t.is_floating_point()
              and not bool(torch.isfinite(t).all())]
    if broken:
        raise CheckpointError(f'{path}: non-finite values (NaN/inf) in {", ".join(broken[:4])}: '
                              'such a model can only output NaN poses (a diverged training run '
                              'or a damaged file; use another checkpoint)')
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(f'{path}: state_dict does not fit {arch.describe()}: missing '
                              f'{missing[:4]}, unexpected {unexpected[:4]}')
    return LoadedCheckpoint(path=os.path.abspath(path), sha256=file_sha256(path), state_dict=sd,
                            arch=arch, has_trajectory_model=has_traj, sidecar=sidecar)


def save_checkpoint(path: str, model: TemporalModel, **extra) -> None:
    """Write the official layout (``model_pos`` + extras such as ``epoch``/``lr``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    payload = {'model_pos': model.state_dict()}
    payload.update(extra)
    torch.save(payload, path)
