"""MediaPipe-33 landmarks -> COCO-17 or H36M-17 keypoints, with a confidence per joint.

COCO-17 is a subset of MediaPipe's landmarks (direct copy). H36M-17 needs joints that
MediaPipe does not detect; they are synthesised from neighbours:

- Hip (pelvis)   = midpoint of the hips
- Thorax         = midpoint of the shoulders
- Spine          = midpoint of pelvis and thorax
- Neck/Nose      = the nose landmark
- Head (top)     = eye midpoint + 2 * (eye midpoint - mouth midpoint), i.e. about two
                   eye-to-mouth distances above the eyes, along the face's own up axis
- RFoot / LFoot  = the ankles (H36M's "foot" joint is the ankle)

A synthesised joint's confidence is the minimum of its sources' confidences: it is only
as trustworthy as its weakest input. Works on any trailing coordinate dimension (2D
pixels or 3D world landmarks) and any leading batch/time shape.
"""
from __future__ import annotations

import numpy as np

from .skeletons import COCO17, H36M17, MEDIAPIPE33

_MP = MEDIAPIPE33.index
MEDIAPIPE_TO_COCO = tuple(_MP(name) for name in COCO17.joints)

# H36M joint -> MediaPipe landmark for the joints that exist in both.
_H36M_DIRECT = {
    'RHip': 'right_hip', 'RKnee': 'right_knee', 'RFoot': 'right_ankle',
    'LHip': 'left_hip', 'LKnee': 'left_knee', 'LFoot': 'left_ankle',
    'Neck/Nose': 'nose',
    'LShoulder': 'left_shoulder', 'LElbow': 'left_elbow', 'LWrist': 'left_wrist',
    'RShoulder': 'right_shoulder', 'RElbow': 'right_elbow', 'RWrist': 'right_wrist',
}
HEAD_EXTENSION = 2.0


def _check(landmarks, confidence):
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim < 2 or landmarks.shape[-2] != MEDIAPIPE33.num_joints:
        raise ValueError(f'expected (..., 33, D) MediaPipe landmarks, got {landmarks.shape}')
    if confidence is None:
        confidence = np.ones(landmarks.shape[:-1])
    confidence = np.asarray(confidence, dtype=np.float64)
    if confidence.shape != landmarks.shape[:-1]:
        raise ValueError(f'confidence shape {confidence.shape} does not match landmarks '
                         f'{landmarks.shape[:-1]}')
    return landmarks, confidence


def mediapipe_to_coco(landmarks, confidence=None):
    """(..., 33, D), (..., 33) -> (..., 17, D), (..., 17) in COCO order."""
    landmarks, confidence = _check(landmarks, confidence)
    idx = list(MEDIAPIPE_TO_COCO)
    return landmarks[..., idx, :], confidence[..., idx]


def mediapipe_to_h36m(landmarks, confidence=None):
    """(..., 33, D), (..., 33) -> (..., 17, D), (..., 17) in H36M (VideoPose3D) order."""
    landmarks, confidence = _check(landmarks, confidence)
    out = np.zeros(landmarks.shape[:-2] + (17, landmarks.shape[-1]))
    conf = np.zeros(landmarks.shape[:-1][:-1] + (17,))
    for h36m_name, mp_name in _H36M_DIRECT.items():
        j, m = H36M17.index(h36m_name), _MP(mp_name)
        out[..., j, :] = landmarks[..., m, :]
        conf[..., j] = confidence[..., m]

    def mid(a, b):
        ia, ib = _MP(a), _MP(b)
        return ((landmarks[..., ia, :] + landmarks[..., ib, :]) / 2,
                np.minimum(confidence[..., ia], confidence[..., ib]))

    pelvis, c_pelvis = mid('left_hip', 'right_hip')
    thorax, c_thorax = mid('left_shoulder', 'right_shoulder')
    eyes, c_eyes = mid('left_eye', 'right_eye')
    mouth, c_mouth = mid('mouth_left', 'mouth_right')
    out[..., H36M17.index('Hip'), :] = pelvis
    conf[..., H36M17.index('Hip')] = c_pelvis
    out[..., H36M17.index('Thorax'), :] = thorax
    conf[..., H36M17.index('Thorax')] = c_thorax
    out[..., H36M17.index('Spine'), :] = (pelvis + thorax) / 2
    conf[..., H36M17.index('Spine')] = np.minimum(c_pelvis, c_thorax)
    out[..., H36M17.index('Head'), :] = eyes + HEAD_EXTENSION * (eyes - mouth)
    conf[..., H36M17.index('Head')] = np.minimum(c_eyes, c_mouth)
    return out, conf


def map_mediapipe(landmarks, confidence=None, layout: str = 'h36m'):
    """Map to the named lifter input layout ('coco' or 'h36m')."""
    if layout == 'coco':
        return mediapipe_to_coco(landmarks, confidence)
    if layout == 'h36m':
        return mediapipe_to_h36m(landmarks, confidence)
    raise ValueError(f"unknown keypoint layout {layout!r}; use 'coco' or 'h36m'")
