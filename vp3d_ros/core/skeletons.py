"""Skeleton layouts as data: joint names, parents and left/right symmetry.

The three layouts the package meets: MediaPipe Pose (33 landmarks, the detector),
COCO-17 (what `pretrained_h36m_detectron_coco.bin` eats) and Human3.6M-17 in
VideoPose3D order (what `pretrained_h36m_cpn.bin` eats and what every lifter emits).
Symmetry lists drive test-time flip augmentation, so they must be exact; the limbs drive
the repair of left/right label swaps (:mod:`vp3d_ros.core.label_swaps`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class SkeletonLayout:
    name: str
    joints: Tuple[str, ...]
    parents: Tuple[int, ...]  # -1 for the root
    left: Tuple[int, ...]
    right: Tuple[int, ...]
    # Left joints of each limb a detector names the wrong way round as one piece (a leg from
    # the hip down, an arm from the shoulder down); the right twins follow from left/right.
    limbs: Tuple[Tuple[int, ...], ...] = ()

    def __post_init__(self):
        n = len(self.joints)
        if len(self.parents) != n:
            raise ValueError(f'{self.name}: {n} joints but {len(self.parents)} parents')
        if len(self.left) != len(self.right):
            raise ValueError(f'{self.name}: left/right lists differ in length')
        stray = {j for limb in self.limbs for j in limb} - set(self.left)
        if stray:
            raise ValueError(f'{self.name}: limb joints {sorted(stray)} are not left joints')

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        return self.joints.index(joint)

    @property
    def bones(self) -> Tuple[Tuple[int, int], ...]:
        """(parent, child) pairs, for drawing and bone-length statistics."""
        return tuple((p, c) for c, p in enumerate(self.parents) if p >= 0)

    def flip_permutation(self) -> Tuple[int, ...]:
        """Index permutation that swaps every left joint with its right twin."""
        perm = list(range(self.num_joints))
        for l, r in zip(self.left, self.right):
            perm[l], perm[r] = r, l
        return tuple(perm)


H36M17 = SkeletonLayout(
    name='h36m',
    joints=('Hip', 'RHip', 'RKnee', 'RFoot', 'LHip', 'LKnee', 'LFoot', 'Spine', 'Thorax',
            'Neck/Nose', 'Head', 'LShoulder', 'LElbow', 'LWrist', 'RShoulder', 'RElbow',
            'RWrist'),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    left=(4, 5, 6, 11, 12, 13),
    right=(1, 2, 3, 14, 15, 16),
    limbs=((4, 5, 6), (11, 12, 13)),
)

COCO17 = SkeletonLayout(
    name='coco',
    joints=('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
            'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
            'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle'),
    # A drawing tree rooted at the nose (COCO defines no kinematic tree).
    parents=(-1, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14),
    left=(1, 3, 5, 7, 9, 11, 13, 15),
    right=(2, 4, 6, 8, 10, 12, 14, 16),
    limbs=((11, 13, 15), (5, 7, 9)),
)

MEDIAPIPE33 = SkeletonLayout(
    name='mediapipe33',
    joints=('nose', 'left_eye_inner', 'left_eye', 'left_eye_outer', 'right_eye_inner',
            'right_eye', 'right_eye_outer', 'left_ear', 'right_ear', 'mouth_left',
            'mouth_right', 'left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow',
            'left_wrist', 'right_wrist', 'left_pinky', 'right_pinky', 'left_index',
            'right_index', 'left_thumb', 'right_thumb', 'left_hip', 'right_hip',
            'left_knee', 'right_knee', 'left_ankle', 'right_ankle', 'left_heel',
            'right_heel', 'left_foot_index', 'right_foot_index'),
    parents=(-1, 0, 1, 2, 0, 4, 5, 3, 6, 0, 0, 0, 0, 11, 12, 13, 14, 15, 16, 15, 16, 15,
             16, 11, 12, 23, 24, 25, 26, 27, 28, 27, 28),
    left=(1, 2, 3, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
    right=(4, 5, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32),
    limbs=((23, 25, 27, 29, 31), (11, 13, 15, 17, 19, 21)),
)

LAYOUTS = {layout.name: layout for layout in (H36M17, COCO17, MEDIAPIPE33)}


def get_layout(name: str) -> SkeletonLayout:
    try:
        return LAYOUTS[name.lower()]
    except KeyError:
        raise ValueError(f'unknown skeleton layout {name!r}; known: {sorted(LAYOUTS)}') from None
