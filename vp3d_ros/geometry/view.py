"""The level view: lift a person as a level camera aimed at them would see them.

Why: the lifter learned poses from cameras with little roll (<= 5 degrees) whose optical
axis passes near the person. Lab rigs mount cameras rolled (the bundled clip's portrait
cameras: 13 and 26 degrees) and pitched down 20-35 degrees, and the lifter's poses lean and
bend with the camera. Turning a camera about its centre moves every image point by the
homography ``K R K^-1`` and changes nothing else, so the keypoints can be re-drawn exactly as
a virtual camera at the same place sees them: its optical axis through the person's root
(this frame's Hip), its image up along gravity. The lifter runs on those; every pose is
turned back (``R^T``) into the real camera's optical frame, so the output keeps its contract
(metres, root-relative, camera frame). The view is per frame and needs no state: live and
offline use it alike.

What it needs: the intrinsics (and distortion: the keypoints are undistorted first) and
gravity in the camera frame, from a calibration whose world z is up (Pose2Sim, Qualisys,
Human3.6M; REP-103) or a ground estimate. :func:`level_view` refuses (``None``) a camera
whose image up is more than 60 degrees from gravity's: that is a calibration whose world z
is not up, or an upside-down mount this view would turn over.

Measured (``benchmarks/real_clip.py``): held-out Human3.6M S8 through the bundled clip's
four calibrated cameras, symmetric model, MPJPE 48.6 -> 43.0 mm (the camera rolled 26 degrees:
57.0 -> 44.3); README "The level view".
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from ..core.skeletons import SkeletonLayout, get_layout
from .calibration import Camera

#: The camera's image up (-y) must be within this angle of gravity's image direction.
MAX_TILT_DEG = 60.0


def aim_joints(layout: SkeletonLayout) -> Tuple[int, ...]:
    """The joints whose mean the virtual camera aims at: the root (Hip), or both hips."""
    if 'Hip' in layout.joints:
        return (layout.index('Hip'),)
    return (layout.index('left_hip'), layout.index('right_hip'))


#: A person seen within this angle of straight up or down has no level view (the turn about
#: the vertical is undefined there): that frame keeps the real camera.
MIN_FROM_VERTICAL_DEG = 10.0


def _look_along(d: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Rotations (..., 3, 3) whose rows are a camera's x (right), y (down), z (forward) in
    the real camera's frame: z along ``d`` (..., 3), image up as close to ``up`` as z allows;
    the identity where ``d`` is within ``MIN_FROM_VERTICAL_DEG`` of ``up``'s line."""
    z = d / np.linalg.norm(d, axis=-1, keepdims=True)
    x = np.cross(-up, z)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    steep = n < np.sin(np.radians(MIN_FROM_VERTICAL_DEG))
    x = x / np.where(steep, 1.0, n)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=-2)
    return np.where(steep[..., None], np.eye(3), R)


class LevelView:
    """Keypoints of one camera <-> its level view, frame by frame.

    ``camera``: intrinsics and distortion of the images the keypoints come from;
    ``up``: gravity's up direction in that camera's optical frame (unit vector);
    ``layout``: the keypoints' layout (which joints the view aims at)."""

    def __init__(self, camera: Camera, up: np.ndarray, layout: str = 'h36m'):
        self.camera = camera
        up = np.asarray(up, dtype=np.float64)
        self.up = up / np.linalg.norm(up)
        self.aim = list(aim_joints(get_layout(layout)))
        self.K = np.asarray(camera.K, dtype=np.float64)
        self.K_inv = np.linalg.inv(self.K)

    def rotations(self, keypoints_px: np.ndarray) -> np.ndarray:
        """Undistorted keypoints (..., J, 2) -> the view's rotations (..., 3, 3), real
        camera frame -> virtual. A frame whose aim joints are not finite aims at the mean
        of its finite joints; one with none keeps the real camera (identity)."""
        kp = np.asarray(keypoints_px, dtype=np.float64)
        with np.errstate(all='ignore'):
            aim = np.nanmean(kp[..., self.aim, :], axis=-2)
            bad = ~np.all(np.isfinite(aim), axis=-1)
            if bad.any():
                aim = np.where(bad[..., None], np.nanmean(kp, axis=-2), aim)
        none = ~np.all(np.isfinite(aim), axis=-1)
        aim = np.where(none[..., None], self.K[:2, 2], aim)
        ray = np.concatenate([aim, np.ones(aim.shape[:-1] + (1,))], -1) @ self.K_inv.T
        return _look_along(ray, np.broadcast_to(self.up, ray.shape))

    def to_view(self, keypoints_px: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Pixels (..., J, 2) of the real camera -> (pixels of the level view, same image
        size and intrinsics; the rotations (..., 3, 3) to undo it with :meth:`from_view`)."""
        und = self.camera.undistort_pixels(np.asarray(keypoints_px, dtype=np.float64))
        R = self.rotations(und)
        h = np.concatenate([und, np.ones(und.shape[:-1] + (1,))], -1)
        H = self.K @ R @ self.K_inv                               # (..., 3, 3)
        v = np.einsum('...ij,...kj->...ki', H, h)
        with np.errstate(all='ignore'):
            return v[..., :2] / v[..., 2:], R

    @staticmethod
    def from_view(poses: np.ndarray, rotations: np.ndarray) -> np.ndarray:
        """Poses (..., J, 3) lifted in the view -> the real camera's optical frame."""
        return np.einsum('...kj,...ji->...ki', poses, rotations)

    def lift(self, lifter, keypoints_px: np.ndarray, width: Optional[float] = None,
             height: Optional[float] = None) -> np.ndarray:
        """A whole sequence (T, J, 2) through a :class:`~vp3d_ros.core.lifter.SequenceLifter`
        in the level view -> (T, J_out, 3), real camera frame. The image size: the camera's,
        unless given."""
        if width is None or height is None:
            if self.camera.size is None:
                raise ValueError(f'camera {self.camera.name!r} has no image size: give '
                                 'width and height')
            width, height = self.camera.size
        kp, R = self.to_view(keypoints_px)
        return self.from_view(lifter.lift(kp, width, height), R)


def up_in_camera(camera: Camera, up_world: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """The world's up direction in the camera's optical frame (``R up``)."""
    return np.asarray(camera.R, dtype=np.float64) @ np.asarray(up_world, dtype=np.float64)


def level_view(camera: Camera, layout: str = 'h36m',
               up_world: Sequence[float] = (0.0, 0.0, 1.0)) -> Optional[LevelView]:
    """The level view of a calibrated camera (world ``up_world`` is up), or ``None`` when the
    camera's image up is more than ``MAX_TILT_DEG`` from gravity's (see the module)."""
    return view_with_up(camera, up_in_camera(camera, up_world), layout)


def level_view_factory(camera: Camera, layout: str = 'h36m'):
    """(width, height) -> the calibrated camera's level view for images of that size (the
    calibration scaled to them by :meth:`Camera.with_image_size`, which raises
    ``CalibrationError`` for another aspect ratio); ``None`` when the camera has no level
    view at all. What the lifting engine takes per camera (``LiftingEngine(views=)``)."""
    if level_view(camera, layout) is None:
        return None
    return lambda w, h: level_view(camera.with_image_size(int(w), int(h)), layout)


def view_with_up(camera: Camera, up: np.ndarray, layout: str = 'h36m') -> Optional[LevelView]:
    """The level view for gravity ``up`` in the camera's frame, or ``None`` past the tilt
    limit."""
    up = np.asarray(up, dtype=np.float64)
    n = float(np.linalg.norm(up))
    if not np.isfinite(n) or n == 0:
        return None
    if -up[1] / n < np.cos(np.radians(MAX_TILT_DEG)):
        return None
    return LevelView(camera, up / n, layout)


def subject_level_view(poses_cam: np.ndarray, camera: Camera,
                       layout: str = 'h36m') -> Optional[LevelView]:
    """Without a calibration: the level view with gravity taken from the subject, i.e. the
    body axis of its upright frames (:func:`~.ground.estimate_ground`) in absolute camera-frame
    skeletons placed through ``camera`` (intrinsics only will do: a first, plain lift), or
    ``None`` when they cannot tell. On held-out S8 through the bundled clip's cameras this
    gives what the true up gives (43.1 vs 43.0 mm); on the bundled clip itself, whose subject
    leans while balancing (up 1-20 degrees off), 90.5 vs 90.1 mm (94.1 without a view)."""
    from .ground import estimate_ground
    try:
        ground = estimate_ground(poses_cam, camera.name, camera.K, camera.size)
    except ValueError:
        return None
    return view_with_up(camera, ground.up_cam, layout)
