"""Pictures a person would rather look at than read: 2D skeletons drawn on frames and the
3D skeleton rendered beside them (OpenCV only)."""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from .skeletons import H36M17

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


def render_3d(pose: np.ndarray, size: int = 400, yaw_deg: float = 0.0, title: str = '') -> np.ndarray:
    """(17, 3) camera-frame metres -> a size x size panel, orthographic, viewed from the
    camera (yaw 0) or rotated about the vertical axis, with a floor-less grid for scale."""
    panel = np.full((size, size, 3), 30, np.uint8)
    for g in range(0, size, size // 8):
        cv2.line(panel, (g, 0), (g, size), (55, 55, 55), 1)
        cv2.line(panel, (0, g), (size, g), (55, 55, 55), 1)
    if pose is None or not np.all(np.isfinite(pose)):
        cv2.putText(panel, 'no pose', (10, size // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.7, MID, 2)
        return panel
    p = pose - pose[0]
    yaw = np.deg2rad(yaw_deg)
    rot = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    p = p @ rot.T
    scale = size / 2.4  # 2.4 m across the panel
    xy = p[:, :2] * scale + np.array([size / 2, size / 2])
    order = sorted(H36M17.bones, key=lambda ab: -p[ab[1], 2])  # far bones first
    for a, b in order:
        cv2.line(panel, tuple(int(v) for v in xy[a]), tuple(int(v) for v in xy[b]), _colour(b),
                 3, cv2.LINE_AA)
    for j in range(17):
        cv2.circle(panel, tuple(int(v) for v in xy[j]), 4, _colour(j), -1, cv2.LINE_AA)
    if title:
        cv2.putText(panel, title, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (220, 220, 220), 1,
                    cv2.LINE_AA)
    return panel


def strip(frames_bgr: Sequence[np.ndarray], kps: Sequence[np.ndarray], confs, poses,
          height: int = 400, captions: Sequence[str] = ()) -> np.ndarray:
    """One column per frame: the frame with its 2D skeleton above front and side 3D views."""
    cols = []
    for i, (frame, kp, conf, pose) in enumerate(zip(frames_bgr, kps, confs, poses)):
        img = draw_2d(frame, kp, conf) if kp is not None else frame
        w = int(round(img.shape[1] * height / img.shape[0]))
        img = cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)
        cap = captions[i] if i < len(captions) else ''
        if cap:
            cv2.putText(img, cap, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2,
                        cv2.LINE_AA)
        front = render_3d(pose, w, 0.0, '3D front')
        side = render_3d(pose, w, 90.0, '3D side')
        cols.append(np.vstack([img, front, side]))
    h = max(c.shape[0] for c in cols)
    cols = [np.pad(c, ((0, h - c.shape[0]), (0, 4), (0, 0))) for c in cols]
    return np.hstack(cols)
