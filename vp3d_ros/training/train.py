"""Train a VideoPose3D-style lifter on motion capture projected through random cameras.

    python -m vp3d_ros.training.train --data ../shared/data/mocap/h36m17 --kind causal \
        --out vp3d_ros/models/vp3d_ros_causal_h36m.bin --minutes 30

Every step draws a fresh batch (nothing is precomputed): windows of ``RF - 1 + k`` frames
from the training clips, resampled to a random frame rate in 25-60 fps, bones rescaled,
projected through a random virtual camera, corrupted with detector-like noise, randomly
mirrored; the model predicts ``k`` root-relative camera-frame poses per window (chunked
training) and the loss is MPJPE. Adam with a time-based exponential learning-rate decay
(the budget is wall-clock minutes, not epochs) and a decaying BatchNorm momentum.

The checkpoint (official layout: ``model_pos``, ``epoch``, ``lr``, ...) and its sidecar
``<name>.yaml`` (architecture, input layout, frame-rate handling, data provenance and
licences, validation metrics) are rewritten every ``--save-every`` minutes, so an
interrupted run still leaves a usable pair.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..core.checkpoint import read_sidecar, save_checkpoint
from ..core.lifter import SequenceLifter
from ..core.model import Architecture, TemporalModel
from . import synth
from .feeder import BatchFeeder
from .losses import TERMS, describe, training_loss
from .data import (DEFAULT_DATA_DIR, SOURCES, VALIDATION_CMU_CLIPS, VALIDATION_H36M_SUBJECTS,
                   Clip, MotionBank, load_clips, split_clips)
from .metrics import mpjpe, p_mpjpe

KINDS = {
    'causal': Architecture(filter_widths=(3, 3, 3, 3), channels=256, causal=True),
    'symmetric': Architecture(filter_widths=(3, 3, 3, 3), channels=256, causal=False),
    'single': Architecture(filter_widths=(1, 1, 1), channels=256, causal=False),
}
RATE_RANGE = (25.0, 60.0)


def output_pad(arch: Architecture) -> int:
    """Index, inside a training window, of the frame the first output belongs to."""
    rf = arch.receptive_field
    return rf - 1 if arch.causal else (rf - 1) // 2


# ----------------------------------------------------------------------------- batches

def synth_batch(bank: MotionBank, n: int, arch: Architecture, k: int, rng: np.random.Generator,
                rate_range=RATE_RANGE, noise: Optional[synth.NoiseLevel] = synth.NoiseLevel(),
                bones: bool = True, flip: bool = True, rig_prob: float = 0.0,
                definitions: float = 0.0):
    """n windows -> (inputs (n, RF-1+k, 17, 2) normalised, targets (n, k, 17, 3) metres)."""
    rf = arch.receptive_field
    length = rf - 1 + k
    pad = output_pad(arch)
    seq = rng.choice(len(bank.lengths), size=n, p=bank.weights)
    lengths, src_fps = bank.lengths[seq], bank.fps[seq]
    dst_fps = rng.uniform(*rate_range, n) if rate_range else src_fps
    jitter = noise.temporal_jitter if noise is not None else 0.0
    t_in, t_exact = synth.sample_times(n, lengths.astype(np.float64), src_fps, dst_fps, length,
                                       pad, k, rng, jitter=jitter)
    both = synth.interpolate(bank.frames, bank.offsets[seq], lengths,
                             np.concatenate([t_in, t_exact[:, pad:pad + k]], axis=1))
    if bones:
        both = synth.randomize_bones(both, synth.sample_bone_factors(n, rng))
    if definitions > 0:
        both = synth.mediapipe_definitions(both, rng, synth.Definitions(prob=definitions))
    cams = synth.sample_cameras(n, both[:, :length, 0, :2].mean(axis=1), rng, rig_prob=rig_prob)
    cam = synth.world_to_camera(both, cams)
    px = synth.project(cam[:, :length], cams.f, cams.c)
    if noise is not None:
        px = synth.detector_noise(px, rng, noise)
    x = synth.normalize(px, cams.size)
    y = cam[:, length:] - cam[:, length:, :1]
    if flip:
        m = rng.random(n) < 0.5
        x[m] = synth.flip_pairs(x[m])
        y[m] = synth.flip_pairs(y[m])
    return x.astype(np.float32), y.astype(np.float32)


# ----------------------------------------------------------------------------- evaluation

@dataclass
class EvalItem:
    clip: Clip
    px: np.ndarray       # (T, 17, 2) pixels (possibly noisy)
    size: np.ndarray     # (2,) image width, height
    target: np.ndarray   # (T, 17, 3) camera frame, root-relative, metres
    camera: int
    view: Optional[object] = None  # a calibrated camera's level view (geometry.view), if lifted so


def make_eval_set(clips: Sequence[Clip], seed: int = 0, cameras_per_clip: int = 1,
                  noise: Optional[synth.NoiseLevel] = None, max_frames: Optional[int] = None
                  ) -> List[EvalItem]:
    """Deterministic validation pairs: native frame rate, true bone lengths, cameras drawn
    from the training distribution with a fixed seed per (clip, camera)."""
    items = []
    for ci, clip in enumerate(clips):
        poses = clip.poses[:max_frames] if max_frames else clip.poses
        for cam_i in range(cameras_per_clip):
            rng = np.random.default_rng([seed, ci, cam_i])
            world = poses[None].astype(np.float64)
            cams = synth.sample_cameras(1, world[:, :, 0, :2].mean(axis=1), rng)
            cam = synth.world_to_camera(world, cams)
            px = synth.project(cam, cams.f, cams.c)
            if noise is not None:
                if noise.temporal_jitter > 0:
                    t = np.arange(len(poses), dtype=np.float64)
                    t = np.clip(t + rng.normal(0, noise.temporal_jitter, len(t)), 0, len(t) - 1)
                    px_t = synth.interpolate(px[0], np.zeros(1, np.int64),
                                             np.array([len(t)]), t[None])
                    px = px_t
                px = synth.detector_noise(px, rng, noise)
            items.append(EvalItem(clip, px[0], cams.size[0], (cam - cam[:, :, :1])[0], cam_i))
    return items


@torch.no_grad()
def predict(model: TemporalModel, item: EvalItem, flip: bool = True) -> np.ndarray:
    lifter = SequenceLifter(model, input_layout='h36m', flip=flip)
    return lifter.lift(item.px, float(item.size[0]), float(item.size[1]))


def evaluate(model: TemporalModel, items: Sequence[EvalItem], flip: bool = True
             ) -> Dict[str, float]:
    """Frame-weighted MPJPE and P-MPJPE (mm) for the H36M and CMU validation parts."""
    was_training = model.training
    model.eval()
    acc: Dict[str, List[np.ndarray]] = {}
    for it in items:
        pred = predict(model, it, flip=flip)
        for key in (it.clip.source, 'all'):
            acc.setdefault(key + '_mpjpe', []).append(mpjpe(pred, it.target))
            acc.setdefault(key + '_p_mpjpe', []).append(p_mpjpe(pred, it.target))
    model.train(was_training)
    return {k: round(float(np.concatenate(v).mean() * 1000), 1) for k, v in sorted(acc.items())}


# ----------------------------------------------------------------------------- sidecar

def _git_commit() -> str:
    """HEAD of the checkout, or $VP3D_GIT_COMMIT where the tree travelled without .git
    (scripts/train_on_device.sh)."""
    try:
        out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                             text=True, cwd=os.path.dirname(os.path.abspath(__file__)),
                             timeout=5).stdout.strip()
    except Exception:  # pragma: no cover
        out = ''
    return out or os.environ.get('VP3D_GIT_COMMIT', '')


def sidecar_dict(arch: Architecture, kind: str, bank: MotionBank, train_clips: Sequence[Clip],
                 info: Dict, metrics: Dict) -> Dict:
    rf = arch.receptive_field
    per_source = {}
    for c in train_clips:
        d = per_source.setdefault(c.source, {'clips': 0, 'minutes': 0.0})
        d['clips'] += 1
        d['minutes'] += len(c.poses) / c.fps / 60
    sources = []
    for s, d in sorted(per_source.items()):
        entry = dict(SOURCES.get(s, {'name': s, 'licence': 'unknown'}))
        entry.update(clips=d['clips'], minutes=round(d['minutes'], 1))
        sources.append(entry)
    return {
        'architecture': {'filter_widths': list(arch.filter_widths), 'channels': arch.channels,
                         'causal': arch.causal, 'dropout': arch.dropout},
        'input_layout': 'h36m',
        'kind': kind,
        'receptive_field_frames': rf,
        'input': 'pixels normalised as X / w * 2 - [1, h / w] (upstream VideoPose3D), '
                 'whole image, not root-centred',
        'output': 'metres, root-relative (Hip = 0), camera frame: x right, y down, z forward',
        'frame_rate': {
            'trained_on': f'every training window resampled (linear interpolation of the '
                          f'mocap) to a uniform random rate in {RATE_RANGE[0]:g}-'
                          f'{RATE_RANGE[1]:g} fps, with timing jitter',
            'recommended_fps': [RATE_RANGE[0], RATE_RANGE[1]],
            'receptive_field_seconds': {f'{int(f)}fps': round(rf / f, 2) for f in (25, 30, 50, 60)},
            'note': 'feed frames at the camera rate if it is inside 25-60 fps; outside it, '
                    'resample the 2D keypoints into this range first',
        },
        'training': info,
        'augmentation': 'random virtual pinhole cameras (3-7 m, 0.8-2 m high, any yaw, '
                        'slight pitch/roll; a share of lab-rig cameras 2-3.6 m high and '
                        '2.5-4.5 m away, pitched steeply down: see training.rig_cameras; '
                        'focal 0.55-1.5 x long image side, portrait and '
                        'landscape, off-centre subjects), bone lengths scaled per limb '
                        '0.85-1.15 x global 0.87-1.12 in 3D before projection, detector-like '
                        '2D noise (jitter, outliers, dropped joints, leg swaps, timing '
                        'jitter) on 85% of windows, random horizontal flip',
        'data_sources': sources,
        'licence': 'Weights derived from Human3.6M (academic, non-commercial licence) and '
                   'Bandai-Namco-Research-Motiondataset (CC BY-NC 4.0): for non-commercial '
                   'research use only. CMU data: free for research and commercial use.',
        'validation': {
            'split': f'Human3.6M {", ".join(VALIDATION_H36M_SUBJECTS)} (all sequences) + CMU '
                     f'{", ".join(VALIDATION_CMU_CLIPS)}; never used in training',
            'protocol': 'native frame rate, true bone lengths, one seeded random camera per '
                        'clip (seed 0), flip test-time augmentation; MPJPE and P-MPJPE in mm '
                        'over all 17 joints, root-aligned',
            **metrics,
        },
    }


def full_validation(model: TemporalModel, val_clips: Sequence[Clip]) -> Dict:
    """The whole validation set, clean and with detector-like noise (flip on): what a run's
    last snapshot carries."""
    return {'clean_2d': evaluate(model, make_eval_set(val_clips, seed=0), flip=True),
            'noisy_2d': evaluate(model, make_eval_set(val_clips, seed=0,
                                                      noise=synth.EVAL_NOISE), flip=True)}


def validate_pair(path: str, data_dir: str) -> Dict:
    """A run stopped before its ``--minutes`` leaves an intermediate snapshot whose sidecar
    holds only the quick check: add the full validation to it, so the snapshot can be landed
    (its ``training.final: false`` stays, saying where the run stopped)."""
    from ..core.checkpoint import load_checkpoint
    model = load_checkpoint(path).build('cpu')
    _, val_clips = split_clips(load_clips(data_dir))
    metrics = full_validation(model, val_clips)
    side = read_sidecar(path)
    val = dict(side.get('validation') or {})
    val.update(metrics)
    val['note'] = ('clean_2d / noisy_2d: the whole validation set, computed on this snapshot '
                   '(train --validate); quick_clean_2d_no_flip: the trainer\'s own snapshot '
                   'check, first frames per clip')
    side['validation'] = val
    write_sidecar(path, side)
    return metrics


def write_sidecar(path: str, data: Dict) -> None:
    import yaml
    side = os.path.splitext(path)[0] + '.yaml'
    tmp = side + '.tmp'
    with open(tmp, 'w') as f:
        f.write('# vp3d_ros lifter checkpoint description (written by vp3d_ros.training.train)\n')
        yaml.safe_dump(data, f, sort_keys=False, width=100)
    os.replace(tmp, side)


def save_pair(path: str, model: TemporalModel, sidecar: Dict, **extra) -> None:
    tmp = path + '.tmp'
    save_checkpoint(tmp, model, **extra)
    os.replace(tmp, path)
    write_sidecar(path, sidecar)


def load_grown(model: TemporalModel, sd: Dict[str, torch.Tensor]) -> int:
    """Load ``sd`` into ``model``; a checkpoint with fewer residual blocks (a shorter
    receptive field) fills the leading ones and the extra trailing blocks start as the
    identity (their last BatchNorm's scale and shift at 0, so the block adds nothing), so a
    longer-window model resumes from a trained shorter one at the same accuracy. Returns
    the number of blocks added (0: the same architecture)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    if extra or any(sd[k].shape != own[k].shape for k in sd):
        model.load_state_dict(sd)  # raises, naming what does not fit
    added = sorted({int(k.split('.')[1]) // 2 for k in missing if k.startswith('layers_')})
    if any(not k.startswith(('layers_conv.', 'layers_bn.')) for k in missing) or (
            added and added != list(range(len(model.blocks) - len(added), len(model.blocks)))):
        model.load_state_dict(sd)  # not a prefix of this model's blocks: raises
    model.load_state_dict(sd, strict=False)
    with torch.no_grad():
        for b in added:
            model.layers_bn[2 * b + 1].weight.zero_()
            model.layers_bn[2 * b + 1].bias.zero_()
    return len(added)


def relocate(src: str, dst: str) -> None:
    """Copy a trained pair (``.bin`` + sidecar) from where it came back (a device's output
    folder) to ``dst``, naming ``dst`` wherever the sidecar names the path it was trained
    to (its command's ``--out``, a path of the machine that trained it)."""
    import re
    import shutil
    side = read_sidecar(src)
    m = re.search(r'--out\s+(\S+)', str((side.get('training') or {}).get('command', '')))
    old = m.group(1) if m else src

    def swap(v):
        if isinstance(v, str):
            return v.replace(old, dst)
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v
    shutil.copyfile(src, dst + '.tmp')
    os.replace(dst + '.tmp', dst)
    write_sidecar(dst, swap(side))


# ----------------------------------------------------------------------------- training

def parse_source_weights(items: Sequence[str]) -> Dict[str, float]:
    """``['cmu=5']`` -> ``{'cmu': 5.0}``; unknown sources and bad numbers are refused (a
    typo would otherwise silently train on the default mix)."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition('=')
        if not sep or name not in SOURCES:
            raise SystemExit(f'--source-weight {item!r}: expected SOURCE=W with SOURCE one of '
                             f'{", ".join(sorted(SOURCES))}')
        try:
            out[name] = float(value)
        except ValueError:
            raise SystemExit(f'--source-weight {item!r}: {value!r} is not a number') from None
        if out[name] <= 0:
            raise SystemExit(f'--source-weight {item!r}: the weight must be positive')
    return out


def recipe(args, weights: Dict[str, float], term_weights: Dict[str, float]) -> Dict:
    """How a run trains, in words, for the sidecar: optimizer, loss and data mix."""
    return {
        'optimizer': f'Adam (amsgrad), lr {args.lr:g} -> {args.lr * args.lr_final:g} '
                     'exponential in wall-clock time, BatchNorm momentum 0.1 -> 0.001',
        'loss': describe(term_weights),
        'rig_cameras': f'{args.rig_prob:g} of windows through high, steeply pitched '
                       'lab-rig cameras (2-3.6 m high, 2.5-4.5 m away)',
        'mediapipe_definitions': (
            f'{args.definitions:g} of windows with MediaPipe-like hip and shoulder '
            'keypoints (hips lower on the trunk and narrower, shoulders wider; '
            'synth.Definitions)' if args.definitions > 0 else 'none'),
        'deep_flexion': (f'clips weighted x (1 + {args.flexion_boost:g} x their fraction of '
                         'frames with a knee flexed past 120 degrees)'
                         if args.flexion_boost else 'no extra weight'),
        'source_weights': (', '.join(f'{k} x{v:g}' for k, v in sorted(weights.items()))
                           + ' (sampling weight on top of duration)'
                           if weights else 'by duration'),
    }


def resume(model: TemporalModel, args) -> int:
    """Load ``args.resume`` into ``model`` (grown where it is shorter) and carry its
    sidecar's minutes, frames and run history into ``args``; -> its iterations."""
    obj = torch.load(args.resume, map_location='cpu', weights_only=True)
    grown = load_grown(model, obj['model_pos'])
    if grown:
        print(f'grown from {args.resume}: {grown} new block(s), starting as identity',
              flush=True)
    prev = read_sidecar(args.resume).get('training', {}) or {}
    if not args.prior_minutes:
        args.prior_minutes = float(prev.get('minutes', 0.0))
    if not args.prior_frames:
        args.prior_frames = int(prev.get('output_frames_seen', 0))
    args.history = list(prev.get('history') or []) or [
        {k: prev.get(k) for k in ('command', 'git_commit', 'minutes', 'iterations', 'seed')
         if prev.get(k) is not None}]
    args.resume_note = (f"resumed from {os.path.basename(args.resume)} "
                        f"({args.prior_minutes:g} min earlier: {prev.get('command', '?')})")
    start_iter = int(obj.get('iterations', 0))
    print(f'resumed from {args.resume} ({start_iter} iterations)', flush=True)
    return start_iter


def train(args) -> Dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = args.device
    if device == 'cuda' and not torch.cuda.is_available():
        print('CUDA not available, training on CPU', flush=True)
        device = 'cpu'
    base = KINDS[args.kind]
    arch = Architecture(filter_widths=tuple(args.filter_widths or base.filter_widths),
                        channels=args.channels or base.channels, causal=base.causal,
                        dropout=args.dropout)
    clips = load_clips(args.data)
    train_clips, val_clips = split_clips(clips)
    weights = parse_source_weights(args.source_weight)
    term_weights = {t.name: getattr(args, f'{t.name}_weight') for t in TERMS}
    bank = MotionBank.from_clips(train_clips, source_weight=weights,
                                 flexion_boost=args.flexion_boost)
    print(f'[{args.kind}] {arch.describe()}', flush=True)
    print(f'train: {bank.describe()}; validation: {len(val_clips)} clips', flush=True)
    quick_val = make_eval_set(val_clips, seed=0, max_frames=args.quick_val_frames)

    model = TemporalModel(arch)
    # Start from the zero pose (the final projection's default init outputs ~1 m noise,
    # which costs the first hundreds of iterations).
    torch.nn.init.zeros_(model.shrink.weight)
    torch.nn.init.zeros_(model.shrink.bias)
    start_iter = resume(model, args) if args.resume else 0
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, amsgrad=True)
    k = args.outputs_per_window
    n = args.batch

    budget = args.minutes * 60.0
    t0 = time.time()
    last_save = t0
    it = 0
    losses = []
    frames_seen = 0
    history = []
    total_train_frames = int(sum(len(c.poses) for c in train_clips))
    # main() keeps the argv it parsed (sys.argv is pytest's or a caller's otherwise)
    command = 'python -m vp3d_ros.training.train ' + ' '.join(getattr(args, 'argv', sys.argv[1:]))
    info = {}

    def snapshot(final: bool):
        nonlocal last_save
        elapsed = time.time() - t0
        model.eval()
        if final:
            metrics = full_validation(model, val_clips)
        else:
            metrics = {'quick_clean_2d_no_flip': evaluate(model, quick_val, flip=False),
                       'note': f'intermediate snapshot; first {args.quick_val_frames} frames '
                               f'per clip'}
        model.train()
        lr_now = opt.param_groups[0]['lr']
        info.update({
            'command': command,
            'git_commit': _git_commit(), 'device': device, 'threads': args.threads,
            'minutes': round((elapsed + args.prior_minutes * 60) / 60, 1),
            'iterations': start_iter + it, 'windows_per_batch': n, 'outputs_per_window': k,
            'output_frames_seen': int(frames_seen + args.prior_frames),
            **recipe(args, weights, term_weights),
            'seed': args.seed,
            'resumed_from': getattr(args, 'resume_note', None),
            # every run that made these weights, oldest first, this one last
            'history': list(getattr(args, 'history', [])) + [{
                'command': command,
                'git_commit': _git_commit(), 'minutes': round(elapsed / 60, 1),
                'iterations': it, 'seed': args.seed, 'threads': args.threads,
                'workers': args.workers, 'batch': n, 'device': device, 'lr': args.lr,
                **{f'{name}_weight': w for name, w in term_weights.items()},
                'rig_prob': args.rig_prob, 'definitions': args.definitions,
                'flexion_boost': args.flexion_boost,
                'source_weight': dict(weights)}],
            'final': final,
        })
        epoch = int((frames_seen + args.prior_frames) // max(total_train_frames, 1))
        save_pair(args.out, model, sidecar_dict(arch, args.kind, bank, train_clips, info, metrics),
                  epoch=epoch, lr=float(lr_now), iterations=int(start_iter + it))
        last_save = time.time()
        print(f'saved {args.out} after {elapsed / 60:.1f} min: {metrics}', flush=True)
        history.append(metrics)
        return metrics

    feeder = BatchFeeder(lambda rng: synth_batch(bank, n, arch, k, rng, rig_prob=args.rig_prob,
                                                 definitions=args.definitions),
                         args.workers, args.seed)
    try:
        while True:
            elapsed = time.time() - t0
            if elapsed >= budget:
                break
            frac = elapsed / budget
            lr = args.lr * args.lr_final ** frac
            for g in opt.param_groups:
                g['lr'] = lr
            mom = 0.1 * (0.01 ** frac)
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm1d):
                    m.momentum = mom
            x, y = feeder.next()
            x = torch.from_numpy(x).to(device)
            y = torch.from_numpy(y).to(device)
            pred = model(x)
            loss = training_loss(pred, y, term_weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            it += 1
            frames_seen += n * k
            losses.append(loss.item())
            if it % args.log_every == 0:
                print(f'it {start_iter + it} {elapsed / 60:5.1f} min lr {lr:.2e} '
                      f'loss {np.mean(losses[-args.log_every:]) * 1000:.1f} mm', flush=True)
            if time.time() - last_save > args.save_every * 60:
                snapshot(final=False)
        metrics = snapshot(final=True)
    finally:
        feeder.close()
    return {'metrics': metrics, 'iterations': it, 'losses': losses}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--data', default=DEFAULT_DATA_DIR, help='folder of mocap/h36m17 .npz files')
    p.add_argument('--kind', choices=sorted(KINDS), default='symmetric')
    p.add_argument('--out', required=True, help='checkpoint path (.bin); sidecar .yaml next to it')
    p.add_argument('--validate', action='store_true',
                   help='do not train: add the full validation to the sidecar of the snapshot '
                        'at --out (a run stopped before its --minutes), to land it')
    p.add_argument('--minutes', type=float, default=30.0, help='wall-clock training budget')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    p.add_argument('--workers', type=int, default=0,
                   help='processes synthesising batches (feeder.BatchFeeder; 0: in the '
                        'training process, deterministic for a seed; a GPU wants many)')
    p.add_argument('--filter-widths', type=int, nargs='+', default=None)
    p.add_argument('--channels', type=int, default=None)
    p.add_argument('--dropout', type=float, default=0.1,
                   help='0.1 rather than upstream 0.25: every batch is freshly synthesised')
    p.add_argument('--batch', type=int, default=48, help='windows per batch')
    p.add_argument('--outputs-per-window', type=int, default=64,
                   help='poses predicted per window (chunked training)')
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--lr-final', type=float, default=0.03,
                   help='final learning rate as a fraction of --lr')
    p.add_argument('--save-every', type=float, default=4.0, help='minutes between snapshots')
    p.add_argument('--quick-val-frames', type=int, default=600)
    p.add_argument('--log-every', type=int, default=50)
    p.add_argument('--seed', type=int, default=1)
    for term in TERMS:
        p.add_argument(f'--{term.name}-weight', type=float, default=term.default,
                       help=term.help)
    p.add_argument('--rig-prob', type=float, default=0.3,
                   help='fraction of windows seen through high, steeply pitched rig cameras')
    p.add_argument('--definitions', type=float, default=0.5,
                   help='fraction of windows with MediaPipe-like hip/shoulder keypoints')
    p.add_argument('--flexion-boost', type=float, default=0.0,
                   help='extra sampling weight of clips with deeply bent knees (data.'
                        'deep_flexion_fraction; sitting on the floor, issue 21)')
    p.add_argument('--source-weight', nargs='*', default=[], metavar='SOURCE=W',
                   help='extra sampling weight of a data source on top of its duration, e.g. '
                        'cmu=5 (sources: ' + ', '.join(sorted(SOURCES)) + ')')
    p.add_argument('--resume', default=None,
                   help='start from this checkpoint\'s weights; with --filter-widths longer '
                        'than its own, the extra blocks are added as identity (load_grown)')
    p.add_argument('--prior-minutes', type=float, default=0.0,
                   help='training minutes already spent in --resume (for the sidecar)')
    p.add_argument('--prior-frames', type=int, default=0,
                   help='output frames already seen in --resume (for the sidecar)')
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv   # the sidecar's command line
    if args.validate:
        print(validate_pair(args.out, args.data))
        return 0
    train(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
