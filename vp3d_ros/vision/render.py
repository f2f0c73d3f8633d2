"""Pictures a person would rather look at than read: 2D skeletons drawn on frames and the
3D skeleton rendered beside them (OpenCV only)."""
from __future__ import annotations

from typing import List, Optional, Sequence

import cv2
import numpy as np

from ..core.skeletons import H36M17

LEFT, RIGHT, MID = (255, 140, 40), (40, 70, 255), (230, 230, 230)  # BGR


def _colour(j: int):
    return LEFT if j in H36M17.left else RIGHT if j in H36M17.right else MID


def draw_2d(image_bgr: np.ndarray, kp: np.ndarray, conf: Optional[np.ndarray] = None,
            min_conf: float = 0.2) -> np.ndarray:
    """H36M-17 pixel keypoints drawn on a copy of the image."""
    out = image_bgr.copy()
    s = max(2, int(round(out.shape[1] / 250)))
    ok = np.all(np.isfinite(kp), axis=1) & (conf >= min_conf if conf is not None else True)
    for a, b in H36M17.bones:
        if ok[a] and ok[b]:
            cv2.line(out, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b]),
                     _colour(b), s, cv2.LINE_AA)
    for j in np.nonzero(ok)[0]:
        cv2.circle(out, tuple(int(v) for v in kp[j]), s + 2, _colour(int(j)), -1, cv2.LINE_AA)
    return out


# How each frame's coordinates map onto a panel: (screen right, screen down, away from the
# viewer) as rows of a matrix. Camera optical frame: x right, y down, z forward. A world frame
# is z up (vp3d_ros.geometry.world): seen from -y, so x right, z up, y away.
FRAMES = {'camera': np.eye(3), 'world': np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])}
GRID_M = 0.5   # grid spacing
SPAN_M = 2.4   # panel width in metres
AXES = {('camera', False): ('x right', 'y down'),
        ('camera', True): ('z away from camera', 'y down'),
        ('world', False): ('x', 'z up'), ('world', True): ('y', 'z up')}


def render_3d(pose: np.ndarray, size: int = 400, yaw_deg: float = 0.0, title: str = '',
              pose_frame: str = 'camera') -> np.ndarray:
    """(17, 3) metres -> a size x size panel, orthographic, root at the centre, a grid of
    GRID_M squares with its spacing and the axes written on it.

    pose_frame 'camera' (root-relative camera optical frame, as skeleton_3d): yaw 0 is the view of
    the camera, yaw 90 the side view from the camera's right (the camera is at the panel's
    left). pose_frame 'world' (z up): upright, yaw 0 seen from -y, yaw 90 from +x."""
    panel = np.full((size, size, 3), 30, np.uint8)
    scale = size / SPAN_M
    c = size / 2
    step = GRID_M * scale
    for k in range(-int(c // step), int(c // step) + 1):
        g = int(round(c + k * step))
        cv2.line(panel, (g, 0), (g, size), (55, 55, 55), 1)
        cv2.line(panel, (0, g), (size, g), (55, 55, 55), 1)
    small = max(0.3, min(0.45, size / 600))
    horiz, vert = AXES[(pose_frame, abs(yaw_deg % 180) == 90)]
    _label(panel, f'grid {GRID_M:g} m', (6, size - 8), small)
    _label(panel, f'-> {horiz}', (6, size - 8 - int(22 * small / 0.45)), small)
    _label(panel, f'v {vert}', (6, size - 8 - int(44 * small / 0.45)), small)
    if title:
        _label(panel, title, (6, 18), small + 0.05)
    if pose is None or not np.all(np.isfinite(pose)):
        cv2.putText(panel, 'no pose', (10, size // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.7, MID, 2)
        return panel
    xy, p = panel_points(pose, size, yaw_deg, pose_frame)
    order = sorted(H36M17.bones, key=lambda ab: -p[ab[1], 2])  # far bones first
    for a, b in order:
        cv2.line(panel, tuple(int(v) for v in xy[a]), tuple(int(v) for v in xy[b]), _colour(b),
                 3, cv2.LINE_AA)
    for j in range(17):
        cv2.circle(panel, tuple(int(v) for v in xy[j]), 4, _colour(j), -1, cv2.LINE_AA)
    return panel


def panel_points(pose: np.ndarray, size: int, yaw_deg: float = 0.0,
                 pose_frame: str = 'camera'):
    """(J, 3) metres -> ((J, 2) panel pixels, (J, 3) view coordinates: right, down, away)."""
    p = (np.asarray(pose, dtype=np.float64) - pose[0]) @ FRAMES[pose_frame].T
    yaw = np.deg2rad(yaw_deg)
    rot = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    p = p @ rot.T
    return p[:, :2] * (size / SPAN_M) + size / 2, p


def _label(panel, text: str, org, scale: float):
    cv2.putText(panel, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (200, 200, 200), 1,
                cv2.LINE_AA)


def video_frames(path) -> List[np.ndarray]:
    """Every frame of a (short) video, BGR: what the demos pick their pictures from."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def strip(frames_bgr: Sequence[np.ndarray], kps: Sequence[np.ndarray], confs, poses,
          height: int = 400, captions: Sequence[str] = (),
          pose_frame: str = 'camera') -> np.ndarray:
    """One column per frame: the frame with its 2D skeleton above front and side 3D views
    (poses in the camera frame, or z-up world poses with pose_frame='world': shown upright)."""
    cols = []
    for i, (frame, kp, conf, pose) in enumerate(zip(frames_bgr, kps, confs, poses)):
        img = draw_2d(frame, kp, conf) if kp is not None else frame
        w = int(round(img.shape[1] * height / img.shape[0]))
        img = cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)
        cap = captions[i] if i < len(captions) else ''
        if cap:
            cv2.putText(img, cap, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2,
                        cv2.LINE_AA)
        if pose_frame == 'camera':
            front = render_3d(pose, w, 0.0, '3D, seen from the camera')
            side = render_3d(pose, w, 90.0, "3D, from the camera's right")
        else:
            front = render_3d(pose, w, 0.0, '3D world, from -y', pose_frame)
            side = render_3d(pose, w, 90.0, '3D world, from +x', pose_frame)
        cols.append(np.vstack([img, front, side]))
    h = max(c.shape[0] for c in cols)
    cols = [np.pad(c, ((0, h - c.shape[0]), (0, 4), (0, 0))) for c in cols]
    return np.hstack(cols)
