"""Live joint angles: one world skeleton at a time -> the model's coordinates, solved as
``vp3d-kinematics`` solves that frame (the kinematics node's engine; OpenSim, no ROS)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import markers as km
from .ik import FrameIK


class WorldSkeletonIK:
    """:class:`~.ik.FrameIK` fed with H36M-17 world skeletons (REP-103: z up, metres): each
    turned to OpenSim's Y up and, with ``face_forward``, about the vertical so that the
    subject's first seen heading faces +X (``vp3d-kinematics`` uses the mean heading: the
    pelvis angles are ground-frame Euler angles, so tilt reads as tilt facing +X). A frame
    without the three pelvis joints or with fewer than ``markers.MIN_MARKERS`` joints is not
    solved (offline it stays NaN). ``model_path``: None for the bundled model."""

    def __init__(self, model_path=None, face_forward: bool = True):
        self.solver = FrameIK(model_path, km.H36M_MARKERS)
        self.coordinates = list(self.solver.coordinates)
        self.turn: Optional[float] = None if face_forward else 0.0   # degrees, once known

    def step(self, xyz: np.ndarray, t: float) -> Optional[np.ndarray]:
        """(17, 3) world joints at ``t`` seconds -> coordinate values (radians / metres) in
        :attr:`coordinates` order, or None when the frame cannot be solved (or, before the
        heading is known, has no hips to tell it)."""
        m = km.Markers(np.array([t]), km.H36M_MARKERS, km.zup_to_yup(xyz)[None])
        if self.turn is None:
            if not np.isfinite(xyz[[1, 4]]).all():   # RHip, LHip tell the heading
                return None
            self.turn = km.heading_deg(m)
        m = km.rotate_about_vertical(m, self.turn)
        if not km.solvable_frames(m)[0]:
            return None
        return np.asarray(self.solver.solve(m.xyz[0], t), dtype=float)
