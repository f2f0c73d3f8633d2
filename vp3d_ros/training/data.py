"""Motion-capture sequences (H36M-17 joints, metres, z-up) and the fixed train/validation split.

Files are the ``mocap/h36m17/*.npz`` conversions described in the shared data's
SOURCES.md: ``joint_names``, ``fps``, ``sequences`` and one (T, 17, 3) array per sequence.

Validation (never used in training): Human3.6M subject S8 (all 30 sequences) and the six
CMU clips whose names start with ``test_`` (basketball, jumping, running, soccer, walking,
window washing). Everything else (H36M S1, S5, S6, S7; CMU ``train_*``; all Bandai-Namco
clips) is training data.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..geometry.bones import flexion_deg

VALIDATION_H36M_SUBJECTS = ('S8',)
VALIDATION_CMU_CLIPS = ('test_basketball_1', 'test_jumping_1', 'test_running_1',
                        'test_soccer_1', 'test_walking_1', 'test_washwindow_1')

DEFAULT_DATA_DIR = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'shared', 'data', 'mocap',
    'h36m17'))

# Provenance and licence of each source file family (copied into checkpoint sidecars).
SOURCES = {
    'h36m': {'name': 'Human3.6M (subjects S1, S5, S6, S7; S8 held out for validation), '
                     'exponential-map export of the motion-prediction community, forward '
                     'kinematics to 17 joints',
             'licence': 'Human3.6M licence: academic, non-commercial use only'},
    'cmu': {'name': 'CMU Graphics Lab Motion Capture Database, 38-clip subset '
                    '(6 test_* clips held out for validation)',
            'licence': 'CMU: free for research and commercial use'},
    'bandai': {'name': 'Bandai-Namco-Research-Motiondataset, dataset 1 (174 clips)',
               'licence': 'CC BY-NC 4.0 (non-commercial, attribution)'},
}


def source_of(filename: str) -> str:
    base = os.path.basename(filename).lower()
    if base.startswith('h36m'):
        return 'h36m'
    if base.startswith('cmu'):
        return 'cmu'
    if base.startswith('bandai'):
        return 'bandai'
    return os.path.splitext(base)[0]


@dataclass
class Clip:
    source: str       # h36m / cmu / bandai
    subject: str      # e.g. S8 (H36M), '' otherwise
    name: str         # sequence name in the file
    fps: float
    poses: np.ndarray  # (T, 17, 3) float32 world metres, z-up

    @property
    def action(self) -> str:
        """H36M action without the take number (``walkingdog_2`` -> ``walkingdog``)."""
        base = self.name
        if base.startswith(('test_', 'train_')):
            base = base.split('_', 1)[1]
        head, _, tail = base.rpartition('_')
        return head if tail.isdigit() and head else base

    @property
    def key(self) -> str:
        return f'{self.source}/{self.subject + "/" if self.subject else ""}{self.name}'


def load_clips(data_dir: str, min_frames: int = 10) -> List[Clip]:
    files = sorted(glob.glob(os.path.join(data_dir, '*.npz')))
    if not files:
        raise FileNotFoundError(f'no .npz motion files in {data_dir!r} (expected the '
                                'mocap/h36m17 folder of the shared data; pass --data)')
    clips = []
    for path in files:
        src = source_of(path)
        subject = ''
        if src == 'h36m':
            subject = os.path.splitext(os.path.basename(path))[0].split('_')[-1]
        with np.load(path, allow_pickle=False) as d:
            fps = float(d['fps'])
            for name in d['sequences']:
                arr = np.asarray(d[str(name)], dtype=np.float32)
                if arr.ndim != 3 or arr.shape[1:] != (17, 3):
                    raise ValueError(f'{path}:{name}: expected (T, 17, 3), got {arr.shape}')
                if len(arr) >= min_frames and np.isfinite(arr).all():
                    clips.append(Clip(src, subject, str(name), fps, arr))
    return clips


def is_validation(clip: Clip) -> bool:
    if clip.source == 'h36m':
        return clip.subject in VALIDATION_H36M_SUBJECTS
    if clip.source == 'cmu':
        return clip.name in VALIDATION_CMU_CLIPS
    return False


def split_clips(clips: Sequence[Clip]):
    train = [c for c in clips if not is_validation(c)]
    val = [c for c in clips if is_validation(c)]
    return train, val


DEEP_FLEXION_DEG = 120.0
LEGS = ((1, 2, 3), (4, 5, 6))   # hip, knee, foot (H36M-17), right then left


def deep_flexion_fraction(poses: np.ndarray, threshold: float = DEEP_FLEXION_DEG) -> float:
    """Fraction of frames with either knee flexed past ``threshold`` degrees (sitting on
    the floor, kneeling): 5% of the training mocap, 64% of Human3.6M S8's sittingdown takes,
    where one-camera knee angles are furthest off (issue 21)."""
    bent = np.zeros(len(poses), bool)
    for h, k, f in LEGS:
        bent |= np.nan_to_num(flexion_deg(poses, h, k, f)) > threshold
    return float(bent.mean()) if len(poses) else 0.0


@dataclass
class MotionBank:
    """Clips concatenated for fast vectorised window sampling."""
    frames: np.ndarray        # (M, 17, 3) float64
    offsets: np.ndarray       # (S,)
    lengths: np.ndarray       # (S,)
    fps: np.ndarray           # (S,)
    weights: np.ndarray       # (S,) sampling probability
    sources: List[str] = field(default_factory=list)

    @classmethod
    def from_clips(cls, clips: Sequence[Clip],
                   source_weight: Optional[Dict[str, float]] = None,
                   flexion_boost: float = 0.0) -> 'MotionBank':
        """``flexion_boost`` b: a clip's weight x (1 + b x its :func:`deep_flexion_fraction`)."""
        if not clips:
            raise ValueError('no clips to train on')
        lengths = np.array([len(c.poses) for c in clips])
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        fps = np.array([c.fps for c in clips], dtype=np.float64)
        # Sample proportionally to duration, optionally re-weighted per source.
        w = lengths / fps
        if source_weight:
            w = w * np.array([source_weight.get(c.source, 1.0) for c in clips])
        if flexion_boost:
            w = w * (1.0 + flexion_boost * np.array([deep_flexion_fraction(c.poses)
                                                     for c in clips]))
        return cls(frames=np.concatenate([c.poses for c in clips]).astype(np.float64),
                   offsets=offsets, lengths=lengths, fps=fps, weights=w / w.sum(),
                   sources=[c.source for c in clips])

    def describe(self) -> str:
        parts = {}
        for s, n, f in zip(self.sources, self.lengths, self.fps):
            parts.setdefault(s, [0, 0.0])
            parts[s][0] += 1
            parts[s][1] += n / f / 60
        return ', '.join(f'{s}: {k} clips {m:.1f} min' for s, (k, m) in sorted(parts.items()))
