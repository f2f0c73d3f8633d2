"""Loading VideoPose3D-layout checkpoints without executing code from the file.

Accepted files: what VideoPose3D's ``run.py`` saves (a dict with ``model_pos`` and
``epoch``, ``lr``, ``optimizer``, ``random_state``, ``model_traj``, ``random_state_semi``,
the last three possibly None), in torch's zip or legacy (pre-1.6) serialization, pickled by
any numpy from 1.1x (the official 2018-19 files) to 2.x; our trained checkpoints; and bare
state dicts. Loading uses ``torch.load(weights_only=True)``. Besides tensors a training
checkpoint holds the data generator's ``np.random.RandomState`` object and its arrays;
inference needs none of that, and numpy 1.26 cannot even rebuild a RandomState pickled by
numpy 2, so the few globals naming them (:data:`TRAINING_STATE_GLOBALS`) are mapped to an
inert stand-in instead of numpy's constructors. Any other global (a callable, a class) is
refused, and nothing from the file runs. A file that is no torch checkpoint at all (text,
empty, truncated, a Git LFS pointer) is named as such before unpickling.

The trajectory model (``model_traj``, semi-supervised training) predicts the root joint's
camera-space position; :meth:`LoadedCheckpoint.build_trajectory` builds it on request.

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

import torch

from .hashing import file_sha256  # noqa: F401 - re-exported
from .model import Architecture, TemporalModel


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with a message that says what to fix."""


class DiscardedState:
    """Stands in for what a training checkpoint carries for training only: the data
    generator's RandomState (numpy 1.1x, 1.17+ and 2.x pickles), its bit generator and the
    numpy arrays and dtypes of its state. Built from anything, keeps nothing, does nothing."""
    __slots__ = ()

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __repr__(self):
        return '<training state, not loaded>'


# Every non-tensor global a VideoPose3D training checkpoint names; each is loaded as a
# DiscardedState (never the numpy object it names).
TRAINING_STATE_GLOBALS = (
    'numpy.random.__RandomState_ctor',            # RandomState, numpy < 1.17 (2018-19 files)
    'numpy.random._pickle.__randomstate_ctor',    # RandomState, numpy >= 1.17
    'numpy.random._pickle.__bit_generator_ctor',  # its MT19937, numpy >= 1.17
    'numpy.random._mt19937.MT19937',              # the bit generator's class, numpy 2
    'numpy.core.multiarray._reconstruct',         # arrays (the MT19937 key), numpy < 2
    'numpy._core.multiarray._reconstruct',        # arrays, numpy 2
    'numpy.ndarray',
    'numpy.dtype',
)

# A legacy (pre-1.6) torch.save file starts with its magic number, pickled with protocol 2.
_LEGACY_MAGIC = pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)
_ZIP_MAGIC = b'PK\x03\x04'


@dataclass
class LoadedCheckpoint:
    path: str
    sha256: str
    state_dict: Dict[str, torch.Tensor]
    arch: Architecture
    has_trajectory_model: bool = False
    sidecar: Dict[str, Any] = field(default_factory=dict)
    trajectory_state_dict: Any = None  # model_traj as stored; checked by build_trajectory

    def build(self, device: str = 'cpu', dtype=torch.float32) -> TemporalModel:
        model = TemporalModel(self.arch)
        model.load_state_dict(self.state_dict)
        return model.to(device=device, dtype=dtype).eval()

    def build_trajectory(self, device: str = 'cpu', dtype=torch.float32) -> TemporalModel:
        """The trajectory model: the root joint's camera-space position per frame (metres),
        from the same 2D input; upstream adds it to the root-relative pose. Same filter
        widths and causality as ``model_pos`` (run.py builds both from one set of
        arguments), one output joint."""
        if not self.has_trajectory_model:
            raise CheckpointError(f'{self.path}: no trajectory model in this checkpoint '
                                  '("model_traj" is absent or None: only semi-supervised '
                                  'VideoPose3D training saves one); turn the trajectory off')
        sd = _clean_state_dict(self.trajectory_state_dict, self.path, 'model_traj')
        inferred = infer_architecture(sd, self.arch.num_joints_in)
        if inferred.num_joints_out != 1 or inferred.filter_widths != self.arch.filter_widths \
                or inferred.in_features != self.arch.in_features:
            raise CheckpointError(
                f'{self.path}: "model_traj" ({inferred.describe()}) is not a trajectory model '
                f'for model_pos ({self.arch.describe()}): it must output 1 joint from the same '
                'input with the same filter widths')
        arch = replace(inferred, causal=self.arch.causal)
        model = _fitted_model(sd, arch, self.path, 'model_traj')
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


def _clean_state_dict(sd: Any, path: str, what: str) -> Dict[str, torch.Tensor]:
    """A VideoPose3D temporal model's state_dict (``module.`` prefixes of DataParallel
    training removed), or a CheckpointError naming ``what`` and the problem."""
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f'{path}: "{what}" is not a state_dict')
    sd = {k[len('module.'):] if isinstance(k, str) and k.startswith('module.') else k: v
          for k, v in sd.items()}
    if 'expand_conv.weight' not in sd or 'shrink.weight' not in sd:
        keys = ', '.join(sorted(map(str, sd))[:6])
        raise CheckpointError(f'{path}: not a VideoPose3D temporal model (keys: {keys}...; '
                              'expected expand_conv.weight, layers_conv.*, shrink.weight)')
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f'{path}: non-tensor entries in {what}: {bad[:5]}')
    return sd


def _extract_state_dict(obj: Any, path: str) -> (Dict[str, torch.Tensor], Any):
    """-> (model_pos state_dict, model_traj as stored or None)."""
    if not isinstance(obj, dict):
        raise CheckpointError(f'{path}: not a checkpoint (top level is {type(obj).__name__}, '
                              'expected a dict with "model_pos" or a state_dict)')
    official = 'model_pos' in obj
    sd = _clean_state_dict(obj['model_pos'] if official else obj, path,
                           'model_pos' if official else 'state_dict')
    return sd, obj.get('model_traj') if official else None


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


def _sniff(path: str) -> None:
    """Name a file that is no torch.save output before unpickling it: torch's weights-only
    unpickler reports text or a plain pickle as a pickle that "may carry code"."""
    try:
        size = os.path.getsize(path)
        with open(path, 'rb') as f:
            head = f.read(64)
    except OSError as e:
        raise CheckpointError(f'{path}: cannot read the checkpoint ({e.strerror or e})') from None
    if size == 0:
        raise CheckpointError(f'{path}: the file is empty (0 bytes), not a checkpoint (an '
                              'interrupted download or copy?)')
    if head.startswith((_ZIP_MAGIC, _LEGACY_MAGIC)):
        return
    if head.startswith(b'version https://git-lfs'):
        raise CheckpointError(f'{path}: a Git LFS pointer (a small text file), not the '
                              'checkpoint itself: fetch it with "git lfs pull"')
    if head[:1] == b'\x80':
        what = ('a Python pickle, but not one torch.save wrote (no torch magic number); '
                'refused unread')
    elif head[:6] == b'\x93NUMPY':
        what = 'a numpy .npy array, not a checkpoint'
    else:
        text = all(32 <= b < 127 or b in b'\t\r\n' for b in head[:16])
        what = ('text' if text else 'neither a torch.save zip archive nor a legacy torch '
                'pickle') + f' (it starts with {head[:12]!r})'
    raise CheckpointError(f'{path} is not a PyTorch checkpoint: {what}; set "checkpoint" to a '
                          'VideoPose3D .bin file')


# What torch's weights-only unpickler says when a pickle names something not allowed (as
# opposed to a damaged pickle).
_REFUSAL = re.compile(r'Unsupported global|unrecognized function|Can only (build|create|'
                      r'append|extend)|is blocked|persistent_load|not an allowed global')


def _unpickler_detail(text: str) -> str:
    """The reason in torch's weights-only error, without its advice (re-run with
    weights_only=False, add safe globals) that would run the file's code."""
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()
             and not line.startswith(('Weights only load failed', 'Check the documentation'))]
    return lines[0].split(' Please use `torch.serialization', 1)[0] if lines else 'unknown'


def _torch_load(path: str):
    _sniff(path)
    allowed = [(DiscardedState, name) for name in TRAINING_STATE_GLOBALS]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        detail = _unpickler_detail(text)
        if _REFUSAL.search(text):
            raise CheckpointError(
                f'{path}: refused to load: the file holds Python objects outside the allow-list '
                f'of a VideoPose3D checkpoint (tensors, dicts, numbers, and numpy RNG state, '
                f'which is not loaded); it may carry code. Detail: {detail}') from None
        raise CheckpointError(f'{path}: a damaged checkpoint: its pickle does not parse '
                              f'({detail}); download or copy it again') from None
    except (EOFError, OSError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f'{path}: a truncated or damaged checkpoint ({reason}); download '
                              'or copy it again') from None
    except Exception as e:  # torch raises many types for a non-checkpoint file
        raise CheckpointError(f'{path}: not a readable PyTorch checkpoint ({type(e).__name__}: '
                              f'{str(e).splitlines()[0] if str(e) else ""})') from None


def _fitted_model(sd: Dict[str, torch.Tensor], arch: Architecture, path: str,
                  what: str) -> TemporalModel:
    """``arch`` with ``sd`` loaded, or a CheckpointError naming the tensors that do not fit."""
    model = TemporalModel(arch)
    shape_err = [f'{k} is {list(sd[k].shape)} where {list(v.shape)} is needed'
                 for k, v in model.state_dict().items()
                 if k in sd and hasattr(sd[k], 'shape') and sd[k].shape != v.shape]
    if shape_err:
        raise CheckpointError(f'{path}: {what} tensors do not fit {arch.describe()}: '
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
        raise CheckpointError(f'{path}: {what} state_dict does not fit {arch.describe()}: '
                              f'missing {missing[:4]}, unexpected {unexpected[:4]}')
    return model


def load_checkpoint(path: str, filter_widths: Optional[Sequence[int]] = None,
                    channels: Optional[int] = None, causal: Optional[bool] = None,
                    num_joints_in: int = 17) -> LoadedCheckpoint:
    """Load and validate. Configured values (None = take from sidecar/inference) must match
    the tensors; a mismatch raises :class:`CheckpointError` naming both architectures."""
    if not path or not os.path.isfile(path):
        raise CheckpointError(f'checkpoint file not found: {path!r} (set the "checkpoint" '
                              'parameter to a VideoPose3D .bin file)')
    obj = _torch_load(path)
    sd, traj = _extract_state_dict(obj, path)
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
    _fitted_model(sd, arch, path, 'model_pos')
    return LoadedCheckpoint(path=os.path.abspath(path), sha256=file_sha256(path), state_dict=sd,
                            arch=arch, has_trajectory_model=traj is not None, sidecar=sidecar,
                            trajectory_state_dict=traj)


def save_checkpoint(path: str, model: TemporalModel, **extra) -> None:
    """Write the official layout (``model_pos`` + extras such as ``epoch``/``lr``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    payload = {'model_pos': model.state_dict()}
    payload.update(extra)
    torch.save(payload, path)
