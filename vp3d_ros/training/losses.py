"""Loss terms beside MPJPE: what a pose can get wrong while its joints stay within a few
centimetres (a limb that changes length, a bent knee drawn straight). Each takes
(n, k, 17, 3) tensors in metres, a window's k outputs per row."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from .synth import NUM_JOINTS, PARENTS


def bone_consistency(pred: torch.Tensor) -> torch.Tensor:
    """Mean absolute deviation (metres) of each bone's length from its mean over the
    window's outputs: a person's limbs do not change length between frames, and a window
    of training outputs always shows one person (issue 15: limb bone CV on real clips)."""
    child = torch.arange(1, NUM_JOINTS)
    parent = torch.as_tensor(PARENTS[1:])
    lengths = torch.linalg.norm(pred[:, :, child] - pred[:, :, parent], dim=-1)  # (n, k, 16)
    return (lengths - lengths.mean(dim=1, keepdim=True)).abs().mean()


LIMB_CHILDREN = (2, 3, 5, 6, 12, 13, 15, 16)   # knees, feet, elbows, wrists
DIRECTION_FLOOR_M = 0.05   # limb bones are 0.25-0.45 m: only a degenerate pose is this short
_LIMB_CHILD = torch.tensor(LIMB_CHILDREN)
_LIMB_PARENT = torch.as_tensor(PARENTS[list(LIMB_CHILDREN)])


def _limbs(x: torch.Tensor) -> torch.Tensor:
    """(n, k, 8, 3) vectors of the 8 limb bones, parent to child."""
    return x[:, :, _LIMB_CHILD] - x[:, :, _LIMB_PARENT]


def bone_directions(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean distance between predicted and true unit vectors of the 8 limb bones (chord:
    2 sin(angle/2)): joint angles (knee flexion, issue 21) are limb directions, which
    MPJPE lets a bent or flattened limb hide in a few centimetres. Bones shorter than
    :data:`DIRECTION_FLOOR_M` are divided by that length instead of their own: a network
    started at the all-zero pose has bones of ~0 length, whose directions have unbounded
    gradients."""
    def unit(x):
        b = _limbs(x)
        return b / torch.linalg.norm(b, dim=-1, keepdim=True).clamp_min(DIRECTION_FLOOR_M)

    return torch.linalg.norm(unit(pred) - unit(target), dim=-1).mean()


def limb_lengths(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (metres) of the 8 limb bones' lengths against the truth, frame by
    frame. Where a limb's depth is ambiguous, the average of the two folds is a shortened
    limb: the lifter's thighs and shins come out 13-23% short in deep crouches, which is how
    it draws a 120 degree knee at 85 (issue 21). Rewarding the true length rules that
    average out; which fold it is stays to MPJPE and the other terms."""
    return (torch.linalg.norm(_limbs(pred), dim=-1)
            - torch.linalg.norm(_limbs(target), dim=-1)).abs().mean()


# the angles the bend term compares, each between two bones (from, to): knees and elbows
# (both bones from the middle joint), and hips (pelvis centre -> spine against the thigh)
BEND_PAIRS = (((2, 1), (2, 3)), ((5, 4), (5, 6)), ((12, 11), (12, 13)), ((15, 14), (15, 16)),
              ((0, 7), (1, 2)), ((0, 7), (4, 5)))
_BEND_U = torch.tensor([u for u, _ in BEND_PAIRS])     # (6, 2): first bone's from, to
_BEND_V = torch.tensor([v for _, v in BEND_PAIRS])     # (6, 2): second bone's from, to


def joint_bends(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference (radians) of the knee, elbow and hip angles. Where depth is
    ambiguous (a shin folded towards or away from the camera), MPJPE and the direction
    term are smallest for the average of the two answers, a straighter knee; the angle is
    the same for both, so this term rewards committing to one (issue 21)."""
    def angles(x):
        u = x[:, :, _BEND_U[:, 1]] - x[:, :, _BEND_U[:, 0]]
        v = x[:, :, _BEND_V[:, 1]] - x[:, :, _BEND_V[:, 0]]
        cross = torch.sqrt((torch.linalg.cross(u, v) ** 2).sum(-1) + 1e-10)
        return torch.atan2(cross, (u * v).sum(-1))

    return (angles(pred) - angles(target)).abs().mean()


TRUNK = (0, 8)   # Hip -> Thorax
HIPS = (1, 4)    # RHip, LHip
_UP = torch.tensor([0.0, -1.0, 0.0])   # the camera's up axis (camera frame: y down)


def forward_lean(x: torch.Tensor) -> torch.Tensor:
    """(n, k) forward lean of the trunk (Hip -> Thorax) in radians, in the plane of the
    camera's up axis and the body's forward axis (up x the hips' left-right axis):
    positive forward, as ``benchmarks/folds.py`` measures it in the world."""
    left = x[:, :, HIPS[1]] - x[:, :, HIPS[0]]
    left = left - (left @ _UP)[..., None] * _UP
    fwd = torch.linalg.cross(left, _UP.expand_as(left))
    fwd = fwd / torch.linalg.norm(fwd, dim=-1, keepdim=True).clamp_min(1e-6)
    t = x[:, :, TRUNK[1]] - x[:, :, TRUNK[0]]
    return torch.atan2((t * fwd).sum(-1), t @ _UP)


def trunk_lean(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference (radians) of the trunk's forward lean (:func:`forward_lean`).
    A trunk leaning towards or away from the camera projects alike; MPJPE is smallest for
    the mean of the two, a trunk drawn too upright (one camera's trunk 2-4 deg too upright,
    20-31% of the frames leaning over 10 deg drawn at under half their lean, and OpenSim's
    pelvis tilt and hip flexion with it: issue 21, ``benchmarks/folds.py``). An absolute
    error is smallest for the likelier lean instead of the mean. In the level view a
    calibration gives, the camera's up is gravity's."""
    return (forward_lean(pred) - forward_lean(target)).abs().mean()


@dataclass(frozen=True)
class Term:
    """One loss term beside MPJPE, weighted by ``--<name>-weight`` (0: off); the sidecar
    says it as ``<weight> x <says>`` and keeps the weight as ``<name>_weight``."""
    name: str
    default: float
    says: str
    help: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # (pred, truth) -> scalar


TERMS = (
    Term('bone', 1.0, 'bone-length deviation over the window',
         'weight of the bone-length consistency term (0: plain MPJPE)',
         lambda pred, target: bone_consistency(pred)),
    Term('direction', 0.1, 'limb-direction error (unit-vector chord)',
         'weight of the bone-direction term (0: none)', bone_directions),
    Term('angle', 0.0, 'knee, elbow and hip angle error (radians)',
         'weight of the knee/elbow/hip angle term (radians; 0: none)', joint_bends),
    Term('length', 0.0, 'limb-length error against the truth',
         'weight of the limb-length term against the truth (metres; 0: none)', limb_lengths),
    Term('lean', 0.0, "trunk's forward-lean error (radians)",
         "weight of the trunk-lean term: the trunk's forward lean from the camera's up "
         "axis against the truth's (radians; 0: none)", trunk_lean),
)


def training_loss(pred: torch.Tensor, target: torch.Tensor,
                  weights: Mapping[str, float]) -> torch.Tensor:
    """MPJPE plus each term of :data:`TERMS` at its weight (term name -> weight)."""
    loss = torch.linalg.norm(pred - target, dim=-1).mean()
    for term in TERMS:
        if weights[term.name] > 0:
            loss = loss + weights[term.name] * term.fn(pred, target)
    return loss


def describe(weights: Mapping[str, float]) -> str:
    """The loss in words, for the sidecar."""
    return 'MPJPE (root-relative camera-frame 3D)' + ''.join(
        f' + {weights[t.name]:g} x {t.says}' for t in TERMS if weights[t.name] > 0)
