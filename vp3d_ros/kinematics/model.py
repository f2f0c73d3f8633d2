"""The OpenSim model for H36M-17 joint centres: which coordinates are measured, weights, priors.

The shipped model (``vp3d_h36m17.osim``, derived by tools/make_kinematics_model.py from
Pose2Sim's simple full-body model, BSD-3-Clause: see LICENSE_pose2sim_BSD-3-Clause.txt) has
one marker per H36M joint at the model's joint centre. What 17 joint centres can and cannot
tell, and what this module does about it:

- ankle, subtalar, mtp, forearm rotation and wrist: no foot or hand markers, so nothing
  measures them. They are locked (held at 0; pro_sup at its default) and reported as not
  measured (:data:`LOCKED`).
- pelvic tilt: Hip, RHip and LHip are collinear, so the pelvis's rotation about the hip axis
  is seen only through the torso (the lumbar joint's offset). A weak prior holding the lumbar
  joint near 0 (as Pose2Sim's IK setups do) settles it; without it hip flexion drifts by
  about 20 degrees. Pelvis tilt and lumbar angles are therefore reported as inferred
  (:data:`INFERRED`).
- shoulder: with a straight elbow the humerus's axial rotation is not seen, and the arm
  twists (arm_rot up to 159 degrees) unless the shoulder coordinates are clamped to their
  ranges and arm_rot is weakly pulled to 0 (:data:`PRIORS`). The same holds for the femur's
  axial rotation with a straight knee (hip_rotation drifted 17 degrees in a synthetic
  standing test without its prior). arm_rot's prior fades out as the elbow bends and the
  rotation becomes visible (:data:`BEND_RELEASED`, :func:`prior_weights`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from . import MODEL_FILE, require_opensim
from .markers import Markers, bend_deg

LOCKED = ('ankle_angle_r', 'ankle_angle_l', 'subtalar_angle_r', 'subtalar_angle_l',
          'mtp_angle_r', 'mtp_angle_l', 'pro_sup_r', 'pro_sup_l',
          'wrist_flex_r', 'wrist_flex_l', 'wrist_dev_r', 'wrist_dev_l')
CLAMPED = ('arm_flex_r', 'arm_add_r', 'arm_rot_r', 'arm_flex_l', 'arm_add_l', 'arm_rot_l')
# ranges (radians) that differ from the source model: Pose2Sim's stops shoulder flexion at
# 90 degrees, so a raised arm (the demo clip's balancing subject) left the wrist 43 cm off
RANGES = {'arm_flex_r': (-1.57, 3.14), 'arm_flex_l': (-1.57, 3.14)}
INFERRED = {
    'pelvis_tilt': 'Hip, RHip, LHip are collinear: set through the torso and the lumbar prior',
    'L5_S1_Flex_Ext': 'weak prior towards 0 (pelvic tilt is otherwise unobservable)',
    'L5_S1_Lat_Bending': 'weak prior towards 0',
    'L5_S1_axial_rotation': 'weak prior towards 0',
    'arm_rot_r': 'weak prior towards 0 while the elbow is nearly straight (unobservable)',
    'arm_rot_l': 'weak prior towards 0 while the elbow is nearly straight (unobservable)',
    'hip_rotation_r': 'weak prior towards 0: unobservable with a straight knee',
    'hip_rotation_l': 'weak prior towards 0: unobservable with a straight knee',
    'neck_bending': 'two head markers (Neck_Nose, Head): weakly determined',
}
# IK coordinate tasks: weight of (coordinate - 0)^2, radians, against sum w (marker error m)^2.
# On S8 (greeting_1, sittingdown_1): arm_rot at 0.02 left elbows and wrists 5.1-7.3 cm off
# (0.02 rad^2 weighs like 14 cm of marker error per radian), at 0.002 4.0-5.7 cm with arm_rot
# within +-22 degrees; the lumbar prior at 0.01 instead of 0.1 moved the lumbar joint by
# 2 degrees at most and let noisy input fall into bad poses (9.4 cm RMS)
PRIORS = {'L5_S1_Flex_Ext': 0.1, 'L5_S1_Lat_Bending': 0.1, 'L5_S1_axial_rotation': 0.1,
          'arm_rot_r': 0.002, 'arm_rot_l': 0.002, 'hip_rotation_r': 0.01, 'hip_rotation_l': 0.01}
# The humerus's axial rotation is unobservable only while the elbow is straight: bent, the
# forearm shows it. Its prior holds in full up to BEND_DEG[0] of elbow flexion measured from
# the markers and fades to BEND_FLOOR at BEND_DEG[1] (missing markers: in full). A constant
# arm_rot prior of 0.002 held S8's arms near 0 while they were internally rotated by ~80
# degrees (forearms across the lap, sittingdown_1): elbows and wrists 8-9 cm off for seconds
# (elbows 3.9, wrists 3.7-4.1 cm RMS over the benchmark's clean joints; faded 1.0-1.8 and
# 0.9-1.5 cm). Fading over 20-45 degrees instead left a synthetic reach's arm_rot 17 degrees
# behind at 30 degrees of elbow flexion. hip_rotation keeps its prior whatever the knee:
# faded the same way, clean leg markers went 1.08 -> 0.85 cm but knee flexion from noisy
# joints moved further from the clean reference (smooth30 6.7 -> 7.5 degrees)
BEND_RELEASED = {'arm_rot_r': ('RShoulder', 'RElbow', 'RWrist'),
                 'arm_rot_l': ('LShoulder', 'LElbow', 'LWrist')}
BEND_DEG = (10.0, 25.0)
BEND_FLOOR = 0.0   # fraction of the prior left with the elbow bent (0.1: a synthetic
# reach's arm_rot 7.7 degrees RMS off against 4.2, S8 clean markers 1.52 vs 1.43 cm on eating_1)
# IK marker weights: legs and hips are the best-defined joint centres; the torso markers
# (Spine, Thorax, head) ride on one rigid torso that cannot follow a bending spine
MARKER_WEIGHTS = {
    'Hip': 2.0, 'RHip': 2.0, 'LHip': 2.0, 'RKnee': 2.0, 'LKnee': 2.0, 'RFoot': 2.0, 'LFoot': 2.0,
    'Spine': 0.5, 'Thorax': 1.0, 'Neck_Nose': 0.3, 'Head': 0.3,
    'RShoulder': 1.0, 'LShoulder': 1.0, 'RElbow': 1.0, 'LElbow': 1.0, 'RWrist': 0.7, 'LWrist': 0.7,
}
MAIN_ANGLES = ('hip_flexion_r', 'hip_flexion_l', 'knee_angle_r', 'knee_angle_l',
               'ankle_angle_r', 'ankle_angle_l', 'pelvis_tilt', 'L5_S1_Flex_Ext',
               'arm_flex_r', 'arm_flex_l', 'elbow_flex_r', 'elbow_flex_l')
MODEL_STATURE_M = 1.70   # the generic model (Rajagopal et al. 2016) with our Head marker at 1.70 m


def prior_weights(markers: Markers) -> Dict[str, np.ndarray]:
    """Coordinate -> (T,) weight of its prior per frame: :data:`PRIORS`, the axial rotations
    in :data:`BEND_RELEASED` faded out as the joint below bends (:data:`BEND_DEG`)."""
    n = len(markers.times)
    out = {name: np.full(n, float(w)) for name, w in PRIORS.items()}
    lo, hi = BEND_DEG
    for name, (a, b, c) in BEND_RELEASED.items():
        if name not in out or not {a, b, c} <= set(markers.names):
            continue
        bend = bend_deg(markers, a, b, c)
        keep = BEND_FLOOR + (1.0 - BEND_FLOOR) * np.clip((hi - bend) / (hi - lo), 0.0, 1.0)
        out[name] *= np.where(np.isfinite(bend), keep, 1.0)
    return out


def default_model_path(path: Optional[str] = None) -> Path:
    return Path(path) if path else MODEL_FILE


def prepare(model) -> None:
    """Lock the unobservable coordinates, clamp the shoulders and let them flex overhead
    (any model with those coordinate names)."""
    coords = model.getCoordinateSet()
    for name in LOCKED:
        if coords.contains(name):
            coords.get(name).setDefaultLocked(True)
    for name in CLAMPED:
        if coords.contains(name):
            coords.get(name).setDefaultClamped(True)
    for name, (lo, hi) in RANGES.items():
        if coords.contains(name):
            coords.get(name).setRangeMin(lo)
            coords.get(name).setRangeMax(hi)


def load(path=None):
    """The model from ``path`` (default: the shipped one), prepared, not yet initialised."""
    osim = require_opensim()
    file = default_model_path(path)
    if not Path(file).is_file():
        raise FileNotFoundError(f'OpenSim model {file} does not exist')
    try:
        model = osim.Model(str(file))
    except RuntimeError as e:   # OpenSim's own words, without its C++ call site
        why = ' '.join(str(e).split('Thrown at')[0].split())
        raise ValueError(f'cannot load OpenSim model {file}: {why}') from None
    prepare(model)
    return model


def missing_markers(model, names) -> list:
    have = {model.getMarkerSet().get(i).getName() for i in range(model.getMarkerSet().getSize())}
    return [n for n in names if n not in have]


def place_pelvis(model, markers: Markers, frame: int) -> None:
    """Default pelvis pose facing the subject's heading at ``frame`` (so IK and marker placement
    start near the right answer instead of facing +X): heading from RHip - LHip, translation
    so the model's Hip marker sits on the measured one."""
    names = markers.names
    p = markers.xyz[frame]
    right = p[names.index('RHip')] - p[names.index('LHip')]
    heading = math.atan2(right[0], right[2])  # pelvis Z (right) rotated about Y by heading
    coords = model.getCoordinateSet()
    coords.get('pelvis_rotation').setDefaultValue(heading)
    state = model.initSystem()
    coords.get('pelvis_rotation').setValue(state, heading)
    model.realizePosition(state)
    hip_model = model.getMarkerSet().get('Hip').getLocationInGround(state).to_numpy()
    delta = p[names.index('Hip')] - hip_model
    for axis, name in enumerate(('pelvis_tx', 'pelvis_ty', 'pelvis_tz')):
        coords.get(name).setDefaultValue(coords.get(name).getDefaultValue() + float(delta[axis]))


def marker_positions(model, names) -> Dict[str, np.ndarray]:
    """Ground positions of the model's markers in its default pose."""
    state = model.initSystem()
    model.realizePosition(state)
    ms = model.getMarkerSet()
    return {n: ms.get(n).getLocationInGround(state).to_numpy().copy() for n in names}
