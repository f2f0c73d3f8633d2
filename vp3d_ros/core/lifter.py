"""2D keypoints (pixels) -> 3D H36M-17 poses (metres), with upstream VideoPose3D semantics.

- Input is screen-normalised ``X / w * 2 - [1, h / w]`` (both axes divided by w), not
  root-centred.
- Whole sequences are edge-padded by (RF-1)/2 frames each side (causal: RF-1 on the left
  only), so every input frame gets exactly one pose, whatever the length (also T < RF).
- Test-time flip augmentation (default on): the mirrored input (x negated, left/right
  keypoints swapped) is lifted too, mirrored back with the output symmetry, and averaged.
- Output: metres, root-relative, camera frame (x right, y down, z forward), as the model
  produces it (no rescaling).
- Optional trajectory model (a checkpoint's ``model_traj``, from semi-supervised training):
  the root's camera-space position, lifted from the same padded input (flip-averaged with x
  mirrored back) and added to every joint, as upstream renders it. The pose itself is the
  same as without it.

:class:`SequenceLifter` is the offline path (one pass over the padded sequence);
:class:`StreamingLifter` is the live path (per-layer state, one new output per layer per
frame). Both give the same poses.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .model import StreamingState, TemporalModel, push_streams
from .skeletons import H36M17, get_layout


# The largest normalised coordinate (image widths from the centre, x2) a live lifter takes:
# 50 image widths. Its layers keep the last receptive field of their inputs, so a single
# absurd value would spoil that many later poses; TrackWindow already holds joints more
# than one image size outside the image, this is the lifter's own guard.
MAX_NORMALIZED = 100.0


def normalize_screen(keypoints: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixels -> [-1, 1] along x, aspect-preserving along y (upstream convention)."""
    if width <= 0 or height <= 0:
        raise ValueError(f'image size must be positive, got {width}x{height}')
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape[-1] != 2:
        raise ValueError(f'expected (..., 2) pixel coordinates, got {kp.shape}')
    return kp / width * 2.0 - np.array([1.0, height / width])


class _LifterBase:
    def __init__(self, model: TemporalModel, input_layout: str = 'h36m', flip: bool = True,
                 device: str = 'cpu', trajectory: Optional[TemporalModel] = None):
        self.model = model.eval().to(device)
        self.trajectory = _check_trajectory(model, trajectory)
        if self.trajectory is not None:
            self.trajectory = self.trajectory.eval().to(device)
        self.device = device
        self.dtype = next(model.parameters()).dtype
        arch = model.arch
        self.layout = get_layout(input_layout)
        if self.layout.num_joints != arch.num_joints_in:
            raise ValueError(f'input layout {self.layout.name} has {self.layout.num_joints} '
                             f'joints, model expects {arch.num_joints_in}')
        if arch.in_features != 2:
            raise ValueError(f'model expects {arch.in_features} input features per joint; '
                             'the lifter feeds 2D keypoints (x, y)')
        self.flip = flip
        self.in_perm = list(self.layout.flip_permutation())
        out_layout = H36M17 if arch.num_joints_out == 17 else None
        self.out_perm = list(out_layout.flip_permutation()) if out_layout else \
            list(range(arch.num_joints_out))
        rf = arch.receptive_field
        self.pad_left = rf - 1 if arch.causal else (rf - 1) // 2
        self.pad_right = 0 if arch.causal else (rf - 1) // 2

    @property
    def receptive_field(self) -> int:
        return self.model.arch.receptive_field

    def _batch(self, norm: np.ndarray) -> torch.Tensor:
        """(..., J, 2) normalised -> stacked [orig, flipped] along a new leading axis."""
        x = torch.as_tensor(norm, dtype=self.dtype, device=self.device)
        if not self.flip:
            return x[None]
        flipped = x[..., self.in_perm, :]  # advanced indexing copies
        flipped[..., 0] *= -1
        return torch.stack([x, flipped])

    def _merge(self, out: torch.Tensor, perm: Optional[List[int]] = None) -> np.ndarray:
        """(B, ..., J_out, 3) -> (..., J_out, 3), undoing the flip of batch element 1
        (``perm``: the output's left/right swap; default the pose model's)."""
        if self.flip:
            back = out[1][..., self.out_perm if perm is None else perm, :]
            back[..., 0] *= -1
            out = (out[0] + back) / 2
        else:
            out = out[0]
        return out.detach().cpu().double().numpy()

    def _poses(self, out: torch.Tensor) -> np.ndarray:
        """The pose model's output merged, its Hip set to exactly 0: the network is only
        trained towards it (a few mm off), and the contract is root-relative poses."""
        poses = self._merge(out)
        poses[..., 0, :] = 0.0
        return poses


class SequenceLifter(_LifterBase):
    """Offline: lift a whole (T, J, 2) pixel sequence in one pass."""

    @torch.no_grad()
    def lift(self, keypoints_px: np.ndarray, width: float, height: float) -> np.ndarray:
        """(T, J, 2) pixels -> (T, J_out, 3): root-relative poses, or with a trajectory
        model the poses placed at their predicted root positions (camera frame)."""
        poses, root = self.lift_parts(keypoints_px, width, height)
        return poses if root is None else poses + root

    @torch.no_grad()
    def lift_parts(self, keypoints_px: np.ndarray, width: float, height: float):
        """-> (root-relative poses (T, J_out, 3), root trajectory (T, 1, 3) or None)."""
        kp = np.asarray(keypoints_px, dtype=np.float64)
        if kp.ndim != 3 or kp.shape[1:] != (self.layout.num_joints, 2):
            raise ValueError(f'expected keypoints of shape (T, {self.layout.num_joints}, 2), '
                             f'got {kp.shape}')
        if len(kp) == 0:
            return (np.zeros((0, self.model.arch.num_joints_out, 3)),
                    None if self.trajectory is None else np.zeros((0, 1, 3)))
        norm = normalize_screen(kp, width, height)
        padded = np.pad(norm, ((self.pad_left, self.pad_right), (0, 0), (0, 0)), mode='edge')
        batch = self._batch(padded)
        poses = self._poses(self.model(batch))
        if self.trajectory is None:
            return poses, None
        return poses, self._merge(self.trajectory(batch), [0])

    __call__ = lift


class StreamingLifter(_LifterBase):
    """Live: push frames one at a time; get each frame's pose as soon as it is computable.

    ``push`` returns a list of (frame_index, pose) pairs that became available: for a
    causal model the pushed frame itself; for a symmetric model the frame (RF-1)/2 frames
    back. ``finish`` edge-pads the end like the offline path and returns the remaining
    frames. Results equal :class:`SequenceLifter` over the same frames.

    ``block`` > 1 lifts every ``block`` pushed frames in one pass (:meth:`push_many`): the
    same poses, each ``block - 1`` frames later at most, for a fraction of the cost per frame
    with large models on CPU (their weights are read once per pass, not once per frame).
    A ``deferred`` lifter only queues what is pushed; :func:`lift_queued` lifts the frames
    of many such lifters (cameras, persons) in shared passes (what the live engine does).
    """

    def __init__(self, *args, width: float, height: float, block: int = 1,
                 deferred: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.width, self.height = float(width), float(height)
        self.deferred = bool(deferred)
        self._state = StreamingState(self.model)
        self._traj_state = None if self.trajectory is None else StreamingState(self.trajectory)
        if not 1 <= int(block) <= self._state.max_block:
            raise ValueError(f'block must be 1..{self._state.max_block} frames, got {block}')
        self.block = int(block)
        self.reset()

    def reset(self):
        self._state.reset()
        if self._traj_state is not None:
            self._traj_state.reset()
        self._queued: List[np.ndarray] = []  # frames waiting for a full block
        self._last: Optional[torch.Tensor] = None
        self._pushed = 0  # real frames pushed
        self._emitted = 0  # frames whose pose has been returned

    @property
    def frames_pushed(self) -> int:
        return self._pushed + len(self._queued)

    @property
    def due(self) -> bool:
        """Queued frames make a pass: at least a block of them (one frame when block = 1)."""
        return len(self._queued) >= self.block

    @property
    def pending(self) -> int:
        """Frames received whose pose still waits (for future context or a full block)."""
        return self.frames_pushed - self._emitted

    def _feed(self, frames: torch.Tensor) -> List:
        """frames (B, K, J, 2) normalised (B = 2 with flip) -> newly available poses."""
        return _lift_together([self], [frames])[0]

    def _emit(self, out: torch.Tensor, root: Optional[torch.Tensor] = None) -> List:
        """Network output (B, M, J_out, 3) -> [(frame_index, pose)] for the next M frames;
        ``root`` (B, M, 1, 3): the trajectory model's output for the same frames."""
        results = []
        poses = self._poses(out)
        if self._traj_state is not None:
            if root is None or root.shape[1] != out.shape[1]:
                raise RuntimeError('trajectory model out of step with the pose model')
            poses = poses + self._merge(root, [0])
        for pose in poses:
            results.append((self._emitted, pose))
            self._emitted += 1
        return results

    def push(self, keypoints_px: np.ndarray) -> List:
        """One frame (J, 2) pixels -> [(frame_index, pose)] that became available (always
        none for a ``deferred`` lifter: :func:`lift_queued` lifts its frames later, together
        with the frames queued in other lifters of the same model)."""
        kp = np.asarray(keypoints_px, dtype=np.float64)
        if kp.shape != (self.layout.num_joints, 2):
            raise ValueError(f'expected ({self.layout.num_joints}, 2) keypoints, got {kp.shape}')
        self._check_bounded(kp)
        if self.block == 1 and not self.deferred:
            return self.push_many(kp[None])
        self._queued.append(kp)
        return self._flush_queue() if self.due and not self.deferred else []

    def _check_bounded(self, kp: np.ndarray) -> None:
        """Refuse a frame before it reaches the layers' state: non-finite or absurdly far
        keypoints would corrupt the receptive field's worth of poses after it too."""
        norm = normalize_screen(kp, self.width, self.height)
        if not np.all(np.isfinite(norm)) or np.abs(norm).max(initial=0.0) > MAX_NORMALIZED:
            raise ValueError(f'keypoints not finite or more than {MAX_NORMALIZED / 2:.0f} image '
                             f'widths from the image ({self.width:.0f}x{self.height:.0f}): '
                             'frame refused, the window is unchanged')

    def _take_queued(self) -> Optional[torch.Tensor]:
        """Empty the queue into network input (see :meth:`_prepare`); None if it was empty."""
        queued, self._queued = self._queued, []
        return self._prepare(np.stack(queued)) if queued else None

    def _flush_queue(self) -> List:
        frames = self._take_queued()
        return [] if frames is None else self._feed(frames)

    def _prepare(self, kp: np.ndarray) -> torch.Tensor:
        """(K, J, 2) pixels -> (B, K', J, 2) network input; the first frames edge-padded."""
        if kp.ndim != 3 or kp.shape[1:] != (self.layout.num_joints, 2) or not len(kp):
            raise ValueError(f'expected (K, {self.layout.num_joints}, 2) keypoints, got {kp.shape}')
        frames = self._batch(normalize_screen(kp, self.width, self.height))  # (B, K, J, 2)
        if self._pushed == 0 and self.pad_left:
            frames = frames[:, [0] * self.pad_left + list(range(len(kp)))]
        self._pushed += len(kp)
        self._last = frames[:, -1:]
        return frames

    def push_many(self, keypoints_px: np.ndarray) -> List:
        """Several frames (K, J, 2) at once: the same poses as K pushes, but each layer's
        weights are read once per call (worth it for large models, at K-1 frames latency)."""
        kp = np.asarray(keypoints_px, dtype=np.float64)
        if kp.ndim == 3:
            self._check_bounded(kp)
        return self._feed(self._prepare(kp))

    def finish(self) -> List:
        """Edge-pad the end of the stream; returns the poses still owed, then resets."""
        results = self._flush_queue()
        if self._pushed:
            # Upstream edge padding: (RF-1)/2 copies of the last frame complete every pose.
            if self._emitted < self._pushed:
                results += self._feed(self._last[:, [0] * self.pad_right])
        self.reset()
        return results


class SegmentLifter:
    """A :class:`SequenceLifter` behind the streaming interface (what
    :class:`~vp3d_ros.core.windowing.TrackWindow` drives): frames are kept until the window
    ends the segment, which :meth:`finish` lifts in one pass (offline: every frame gets the
    pose of the whole sequence's context, padded only at the segment's ends).

    Long segments are lifted in chunks with receptive-field overlap, which keeps memory
    bounded and gives the same poses as one pass."""

    due = False  # never lifted in shared passes: all at finish

    def __init__(self, lifter: SequenceLifter, width: float, height: float, chunk: int = 8192):
        self.lifter = lifter
        self.layout = lifter.layout
        self.width, self.height = float(width), float(height)
        self.chunk = max(1, int(chunk))
        self._frames: List[np.ndarray] = []

    @property
    def pending(self) -> int:
        return len(self._frames)

    @property
    def frames_pushed(self) -> int:
        return len(self._frames)

    def reset(self):
        self._frames = []

    def push(self, keypoints_px) -> List:
        self._frames.append(np.asarray(keypoints_px, dtype=np.float64))
        return []

    def finish(self) -> List:
        # Empty when the window already ended this segment (a person lost, or a reset) and
        # nothing came since: like StreamingLifter.finish, nothing is owed.
        if not self._frames:
            return []
        kp = np.stack(self._frames)
        self.reset()
        left, right = self.lifter.pad_left, self.lifter.pad_right
        poses = []
        for a in range(0, len(kp), self.chunk):
            b = min(len(kp), a + self.chunk)
            lo, hi = max(0, a - left), min(len(kp), b + right)
            out = self.lifter.lift(kp[lo:hi], self.width, self.height)
            poses.append(out[a - lo:a - lo + (b - a)])
        return list(enumerate(np.concatenate(poses)))


def lift_queued(lifters: Sequence[StreamingLifter]) -> List[List]:
    """Lift the frames queued in several ``deferred`` lifters; returns each lifter's
    [(frame_index, pose)] in the order given (lifters with nothing due: []).

    Lifters of one model share every pass (:func:`~vp3d_ros.core.model.push_streams`): the
    cameras and persons of a rig whose frames are due together cost about one frame of
    weight reads. A lifter with ``block`` > 1 waits until it has a full block. The poses are
    those of pushing each lifter's frames on its own, as soon (up to float32 rounding)."""
    groups: Dict[int, List[StreamingLifter]] = {}
    for lf in lifters:
        if lf.due:
            groups.setdefault(id(lf._state.kernels), []).append(lf)
    results: Dict[int, List] = {}
    for group in groups.values():
        frames = [lf._take_queued() for lf in group]
        for lf, got in zip(group, _lift_together(group, frames)):
            results[id(lf)] = got
    return [results.get(id(lf), []) for lf in lifters]


def _lift_together(lifters: Sequence[StreamingLifter],
                   frames: Sequence[torch.Tensor]) -> List[List]:
    """Network inputs (B, K_i, J, 2) of lifters sharing a model, in passes of at most
    ``max_block`` frames each -> each lifter's newly available poses."""
    results: List[List] = [[] for _ in lifters]
    step = lifters[0]._state.max_block
    for start in range(0, max(f.shape[1] for f in frames), step):
        take = [i for i, f in enumerate(frames) if f.shape[1] > start]
        blocks = {i: frames[i][:, start:start + step] for i in take}
        outs = push_streams([lifters[i]._state for i in take], [blocks[i] for i in take])
        roots = _push_trajectories([lifters[i] for i in take], [blocks[i] for i in take])
        for i, out, root in zip(take, outs, roots):
            if out is not None:
                results[i] += lifters[i]._emit(out, root)
    return results


def _push_trajectories(lifters: Sequence[StreamingLifter],
                       blocks: Sequence[torch.Tensor]) -> List[Optional[torch.Tensor]]:
    """The same blocks through the lifters' trajectory models (those that have one), in
    shared passes per trajectory model -> each lifter's root positions, or None."""
    roots: List[Optional[torch.Tensor]] = [None] * len(lifters)
    groups: Dict[int, List[int]] = {}
    for k, lf in enumerate(lifters):
        if lf._traj_state is not None:
            groups.setdefault(id(lf._traj_state.kernels), []).append(k)
    for ks in groups.values():
        got = push_streams([lifters[k]._traj_state for k in ks], [blocks[k] for k in ks])
        for k, root in zip(ks, got):
            roots[k] = root
    return roots


def _check_trajectory(model: TemporalModel,
                      trajectory: Optional[TemporalModel]) -> Optional[TemporalModel]:
    """A trajectory model must see the same frames as the pose model (same filter widths
    and causality: its outputs then come out in step) and output one joint."""
    if trajectory is None:
        return None
    a, t = model.arch, trajectory.arch
    if t.num_joints_out != 1 or (t.filter_widths, t.causal, t.num_joints_in, t.in_features) \
            != (a.filter_widths, a.causal, a.num_joints_in, a.in_features):
        raise ValueError(f'trajectory model ({t.describe()}) does not match the pose model '
                         f'({a.describe()}): it needs the same input, filter widths and '
                         'causality, and one output joint')
    return trajectory
