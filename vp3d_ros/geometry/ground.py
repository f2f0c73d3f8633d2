"""A world for a camera without calibration, from its subject: the camera's pitch, roll and
height above the floor. Gravity is the mean body axis (feet midpoint -> Hip and Hip ->
Thorax) over upright standing frames (:func:`~.world.standing_mask`), or from balance
when the subject never stands upright or its upright frames lean with it
(:func:`estimate_up`); the floor lies the foot-joint
height below the lowest feet along it. The result is a
:class:`~.calibration.Camera` whose world frame is REP-103 (x forward = the optical axis on
the floor, y left, z up), origin on the floor under the camera, so :func:`.world.to_world`
applies as with a calibration. Offline over a whole track (:func:`estimate_ground`), live
from a stream's first standing frames (:class:`SubjectGround`).

Pure numpy; no ROS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from .calibration import Camera
from .balance import balance_axes
from .world import (FOOT_JOINT_HEIGHT_M, HIP, LFOOT, LKNEE, RFOOT, RKNEE, THORAX, _angle,
                    _unit, body_up, standing_mask)

# Seated (see :func:`balance_up`): trunk and shins within this of each other, and the
# balance axis this far from them (degrees; on held-out mocap, 60-frame seated windows have
# trunk and shins 2-20 apart, 10th-90th percentile, and the balance axis 20-51 from them).
SEATED_AGREE_DEG = 20.0
SEATED_APART_DEG = 20.0
# The upright frames' axis gives way to balance when the two are this far apart (degrees)
# and the subject's hips stay this high (a share of their upright height) in the other frames.
DISAGREE_DEG = 8.0
ON_FEET_HIP_RATIO = 0.8


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
    cue: str = 'upright'      # what gave gravity: a key of CUES

    def said(self) -> str:
        """The estimate in words, for logs and the bag's parameters."""
        return (f'pitch {self.pitch_deg:.1f} deg, roll {self.roll_deg:.1f} deg, camera '
                f'{self.height_m:.2f} m above the floor (gravity from {CUES[self.cue]}, '
                f'{self.standing_frames} frames)')


# What gave gravity (:func:`estimate_up`), in words.
CUES = {'upright': 'the upright body', 'balance': 'balance',
        'seated': 'trunk and shins, seated'}


class UpEstimate(NamedTuple):
    up: np.ndarray            # (3,) unit vector in the poses' frame
    frames: int               # frames it came from
    cue: str                  # a key of CUES


def mean_direction(axes: np.ndarray) -> np.ndarray:
    """Robust mean (3,) of unit vectors (N, 3): a trimmed mean (the closest 80 %) around
    their median direction, three times."""
    up = _unit(np.median(axes, axis=0))
    for _ in range(3):
        ang = _angle(axes, up)
        keep = ang <= max(np.percentile(ang, 80), 1e-6)
        up = _unit(axes[keep].mean(0))
    return up


def estimate_up(poses: np.ndarray, min_frames: int = 5) -> UpEstimate:
    """Gravity 'up' (3,) in the poses' frame, the frames it came from and the cue.

    - Upright in ``min_frames`` frames or more (:func:`~.world.standing_mask`): the mean
      body axis of those frames, unless balance (:func:`balance_up`) disagrees by more
      than ``DISAGREE_DEG`` while the subject stays on the feet in the other frames (the
      hips, above the lower foot, at ``ON_FEET_HIP_RATIO`` of their upright height or
      more). Such a subject balances or leans, and the frames that pass as upright lean
      with them (18-20 deg off on the real balancing clip); then balance.
    - Never upright: balance.

    Measured by ``benchmarks/world.py --gravity-only`` (the 952-minute lifter; the earlier
    rule, upright frames else the straightest quarter, in brackets): held-out mocap through
    the Human3.6M cameras, level and rolled, 60-frame windows 8.0 deg mean error (9.9), 90th
    percentile 13.6 (25.3); whole clips 3.5 (3.5). The real balancing clip's four cameras,
    first 60 frames: 2.9-5.9 deg (3.4-29.8); with the 811-minute lifter 2.4-6.7 (3.0-22.4)."""
    p = np.asarray(poses, dtype=np.float64)
    axes = body_up(p)
    upright = standing_mask(p) & np.isfinite(axes).all(-1)
    n = int(upright.sum())
    if n < min_frames:
        return balance_up(p)
    up = UpEstimate(mean_direction(axes[upright]), n, 'upright')
    if n == len(p):
        return up
    balance = balance_up(p)
    if _angle(up.up, balance.up) <= DISAGREE_DEG:
        return up
    lower = np.where(((p[:, RFOOT] - p[:, LFOOT]) @ up.up < 0)[:, None], p[:, RFOOT],
                     p[:, LFOOT])
    hips = (p[:, HIP] - lower) @ up.up
    on_feet = np.nanmedian(hips[~upright]) >= ON_FEET_HIP_RATIO * np.nanmedian(hips[upright])
    return balance if on_feet else up


def balance_up(poses: np.ndarray) -> UpEstimate:
    """Gravity (3,) of a subject who does not stand upright, and the frames used: the
    centre of mass stands over the still foot (:mod:`.balance`), unless the subject sits.
    Seated, trunk and shins stand upright while a chair takes the weight, and the balance
    axis tilts back from them; then trunk and shins are used instead.

    On held-out mocap through the Human3.6M cameras, 60-frame windows without 5 upright
    frames (649 of 2552; a one-off measurement with the 811-minute lifter): 9.7 deg mean
    error off the seated takes (the earlier fallback, the straightest quarter of body axes:
    16.4), seated 7.5-41 deg (16-41)."""
    p = np.asarray(poses, dtype=np.float64)
    ok = np.isfinite(p).all((1, 2))
    if ok.sum() < 3:
        raise ValueError('no frame to estimate the up direction from')
    up = mean_direction(balance_axes(p)[ok])
    for _ in range(3):
        up = mean_direction(balance_axes(p, up)[ok])
    q = p[ok]
    trunk = mean_direction(_unit(q[:, THORAX] - q[:, HIP]))
    shins = mean_direction(np.concatenate([_unit(q[:, RKNEE] - q[:, RFOOT]),
                                           _unit(q[:, LKNEE] - q[:, LFOOT])]))
    upright = _unit(trunk + shins)
    if _angle(trunk, shins) < SEATED_AGREE_DEG and _angle(up, upright) > SEATED_APART_DEG:
        return UpEstimate(upright, int(ok.sum()), 'seated')
    return UpEstimate(up, int(ok.sum()), 'balance')


def estimate_ground(poses_cam: np.ndarray, name: str = 'camera',
                    K: Optional[np.ndarray] = None, size=None,
                    feet_from: Optional[np.ndarray] = None) -> GroundEstimate:
    """Camera pitch, roll and height above the floor from absolute camera-frame skeletons
    (T, 17, 3) (e.g. :func:`place_skeletons` with an intrinsics-only camera).
    ``feet_from``: the track whose feet the floor goes under, when it is not the one that
    tells gravity (the world track with its limbs refit to the 2D, :mod:`.limbs`; gravity
    from balance was measured on the lifter's own limbs)."""
    p = np.asarray(poses_cam, dtype=np.float64)
    up, n, cue = estimate_up(p)
    f = p if feet_from is None else np.asarray(feet_from, dtype=np.float64)
    feet = np.stack([f[:, RFOOT], f[:, LFOOT]], 1) @ up          # (T, 2) heights along up
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
    return GroundEstimate(up, height, pitch, roll, n, cam, cue)


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
