"""A world for a camera without calibration, from its subject: the camera's pitch, roll and
height above the floor. Gravity is the mean body axis (feet midpoint -> Hip and Hip ->
Thorax) over upright standing frames (:func:`~.world.standing_mask`), the floor lies the
foot-joint height below the lowest feet along it. The result is a
:class:`~.calibration.Camera` whose world frame is REP-103 (x forward = the optical axis on
the floor, y left, z up), origin on the floor under the camera, so :func:`.world.to_world`
applies as with a calibration. Offline over a whole track (:func:`estimate_ground`), live
from a stream's first standing frames (:class:`SubjectGround`).

Pure numpy; no ROS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .calibration import Camera
from .world import (FOOT_JOINT_HEIGHT_M, HIP, LFOOT, RFOOT, THORAX, _angle, _unit, body_up,
                    standing_mask)


@dataclass
class GroundEstimate:
    """The floor and gravity seen from an uncalibrated camera."""
    up_cam: np.ndarray        # (3,) unit up vector in the camera frame
    height_m: float           # camera centre above the floor
    pitch_deg: float          # optical axis below the horizon (positive = looking down)
    roll_deg: float           # image x axis above the horizon (positive: the image's right
                              # side is higher than its left)
    standing_frames: int      # frames the estimate used
    camera: Camera            # world (REP-103, z up, floor z = 0) -> camera


def estimate_up(poses: np.ndarray, min_frames: int = 5):
    """Gravity 'up' (3,) in the poses' frame from upright frames; returns (up, frames used).
    With fewer than ``min_frames`` upright frames, the straightest quarter of frames is
    used instead."""
    p = np.asarray(poses, dtype=np.float64)
    axes = body_up(p)
    mask = standing_mask(p)
    if mask.sum() < min_frames:
        legs = p[:, HIP] - (p[:, RFOOT] + p[:, LFOOT]) / 2
        bend = _angle(legs, p[:, THORAX] - p[:, HIP])
        bend = np.where(np.isfinite(bend), bend, np.inf)
        mask = bend <= np.percentile(bend[np.isfinite(bend)], 25) if np.isfinite(bend).any() \
            else mask
    a = axes[mask & np.isfinite(axes).all(-1)]
    if not len(a):
        raise ValueError('no frame to estimate the up direction from')
    up = _unit(np.median(a, axis=0))
    for _ in range(3):  # trimmed mean around the median direction
        ang = _angle(a, up)
        keep = ang <= max(np.percentile(ang, 80), 1e-6)
        up = _unit(a[keep].mean(0))
    return up, int(len(a))


def estimate_ground(poses_cam: np.ndarray, name: str = 'camera',
                    K: Optional[np.ndarray] = None, size=None) -> GroundEstimate:
    """Camera pitch, roll and height above the floor from absolute camera-frame skeletons
    (T, 17, 3) (e.g. :func:`place_skeletons` with an intrinsics-only camera)."""
    p = np.asarray(poses_cam, dtype=np.float64)
    up, n = estimate_up(p)
    feet = np.stack([p[:, RFOOT], p[:, LFOOT]], 1) @ up          # (T, 2) heights along up
    low = np.nanmin(feet, axis=1)
    low = low[np.isfinite(low)]
    floor = float(np.percentile(low, 10)) - FOOT_JOINT_HEIGHT_M  # floor's offset along up
    height = -floor                                              # camera at the origin
    fwd = np.array([0.0, 0.0, 1.0])
    x_w = _unit(fwd - (fwd @ up) * up)        # optical axis on the floor
    y_w = np.cross(up, x_w)                    # left
    R_wc = np.stack([x_w, y_w, up])            # rows: world axes in camera coordinates
    C = np.array([0.0, 0.0, height])
    R = R_wc.T                                 # world -> camera
    pitch = math.degrees(math.asin(np.clip(-fwd @ up, -1, 1)))
    roll = math.degrees(math.asin(np.clip(np.array([1.0, 0, 0]) @ up, -1, 1)))
    cam = Camera(name, np.eye(3) if K is None else K, np.zeros(0), R, -R @ C, size)
    return GroundEstimate(up, height, pitch, roll, n, cam)


class SubjectGround:
    """Live, without a calibration: one camera's floor and gravity from its subject
    (:func:`estimate_ground` on absolute camera-frame skeletons placed through the
    intrinsics-only ``camera``), fixed once ``min_standing`` upright frames (or
    ``max_frames`` frames in all) have been seen: what ``vp3d-offline --estimate-ground``
    does over a whole recording, from the first seconds of a stream."""

    def __init__(self, camera: Camera, min_standing: int = 30, max_frames: int = 600):
        self.guess = camera
        self.min_standing, self.max_frames = int(min_standing), int(max_frames)
        self.poses: list = []
        self.standing = 0
        self.estimate: Optional[GroundEstimate] = None

    def observe(self, pose_cam: np.ndarray) -> Optional[GroundEstimate]:
        """One absolute camera-frame skeleton (17, 3); returns the estimate once made."""
        pose = np.asarray(pose_cam, dtype=np.float64)
        if self.estimate is None and np.isfinite(pose).all():
            self.poses.append(pose)
            self.standing += int(standing_mask(pose[None])[0])
            if self.standing >= self.min_standing or len(self.poses) >= self.max_frames:
                self.estimate = estimate_ground(np.stack(self.poses), self.guess.name,
                                                self.guess.K, self.guess.size)
                self.poses = []
        return self.estimate
