"""Gimbal-free shoulder angles from a solved pose: humerothoracic elevation and its plane.

The model's shoulder coordinates (arm_flex, arm_add, arm_rot) are Euler angles, singular
with the arm held sideways: on the demo clip an abducted arm (90 deg of elevation) read as
170 deg of flexion, then jumped to 0 when IK changed branch. The direction of the humerus
in the torso frame has no such singularity; reported next to the coordinates, not instead.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

# what each derived angle is (the summary says it next to the numbers)
DESCRIPTIONS = {
    'shoulder_elevation': 'humerothoracic elevation (deg): the humerus from its hanging '
                          'direction, in the torso frame; no gimbal lock, unlike arm_flex',
    'shoulder_plane': 'plane of elevation (deg): 0 = abduction in the frontal plane, '
                      '90 = forward flexion; undefined near 0 elevation',
}
SHOULDER_ANGLES = ('shoulder_elevation_r', 'shoulder_plane_r',
                   'shoulder_elevation_l', 'shoulder_plane_l')


class Humerothoracic:
    """The humerus's direction on the torso as elevation and plane of elevation (degrees).

    Elevation: its angle from the hanging direction of the model's neutral pose, in the torso
    frame; plane: its azimuth about that direction (0 = abduction in the frontal plane,
    90 = forward flexion, ISB-like). Call it with a state realised by IK.
    """

    def __init__(self, model, state):
        """``state``: the model's neutral pose (arm coordinates at their defaults)."""
        self.model = model
        model.realizePosition(state)
        bodies, joints = model.getBodySet(), model.getJointSet()
        self.torso = bodies.get('torso')
        self.sides = []
        for side, sign in (('r', 1.0), ('l', -1.0)):
            hum = bodies.get(f'humerus_{side}')
            # shoulder centre -> elbow centre, in the humerus frame (the joints' offsets)
            elbow = joints.get(f'elbow_{side}').getParentFrame().findTransformInBaseFrame()
            shoulder = joints.get(f'acromial_{side}').getChildFrame().findTransformInBaseFrame()
            axis = elbow.p().to_numpy() - shoulder.p().to_numpy()
            self.sides.append((hum, axis / np.linalg.norm(axis), sign))
        # per side, the rotation that takes its neutral direction to the torso's -y: both
        # angles are then measured about the model's own hanging arm
        self.to_neutral = [_align(self._direction(state, h, a), np.array([0.0, -1.0, 0.0]))
                           for h, a, _ in self.sides]

    @classmethod
    def of(cls, model, state) -> Optional['Humerothoracic']:
        """None for a model without this one's torso, humeri and joint names."""
        bodies, joints = model.getBodySet(), model.getJointSet()
        if not (bodies.contains('torso') and all(
                bodies.contains(f'humerus_{s}') and joints.contains(f'acromial_{s}')
                and joints.contains(f'elbow_{s}') for s in 'rl')):
            return None
        return cls(model, state)

    def _direction(self, state, hum, axis) -> np.ndarray:
        rt = self.torso.getTransformInGround(state).R().asMat33()
        rh = hum.getTransformInGround(state).R().asMat33()
        rt = np.array([[rt.get(i, j) for j in range(3)] for i in range(3)])
        rh = np.array([[rh.get(i, j) for j in range(3)] for i in range(3)])
        return rt.T @ (rh @ axis)

    def __call__(self, state) -> list:
        self.model.realizePosition(state)
        out = []
        for (hum, axis, sign), q in zip(self.sides, self.to_neutral):
            d = q @ self._direction(state, hum, axis)
            elev = np.degrees(np.arccos(np.clip(-d[1], -1.0, 1.0)))
            plane = np.degrees(np.arctan2(d[0], sign * d[2]))   # torso x forward, z right
            out += [elev, plane]
        return out


def _align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector ``a`` to unit vector ``b``."""
    v, c = np.cross(a, b), float(a @ b)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)
