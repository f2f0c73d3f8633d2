"""Inverse kinematics over a marker track with OpenSim's InverseKinematicsSolver.

The solver is driven frame by frame (what the InverseKinematicsTool does inside), each frame
starting from the previous pose, so the per-marker errors of every frame come out directly
and the same code serves live use (:class:`FrameIK`).
"""
from __future__ import annotations

import time
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import require_opensim
from . import model as kmodel
from .markers import Markers, solvable_frames
from .shoulder import SHOULDER_ANGLES, Humerothoracic


class IKResult(NamedTuple):
    times: np.ndarray                 # (T,)
    coordinates: Tuple[str, ...]      # (C,) all model coordinates, model order
    values: np.ndarray                # (T, C) degrees for rotations, metres for translations;
                                      # NaN rows: frames not solved (markers.solvable_frames)
    rotational: np.ndarray            # (C,) bool
    marker_names: Tuple[str, ...]     # (M,)
    marker_errors: np.ndarray         # (T, M) metres, NaN where the marker was missing
    seconds_per_frame: float         # wall clock
    cpu_seconds_per_frame: float     # this process's CPU time (what a busy machine hides)
    locked: Tuple[str, ...]           # coordinates held (not measured)
    derived: Tuple[str, ...] = ()     # angles computed from the solved pose (not coordinates)
    derived_values: Optional[np.ndarray] = None   # (T, D) degrees

    def column(self, name: str) -> np.ndarray:
        if name in self.coordinates:
            return self.values[:, self.coordinates.index(name)]
        return self.derived_values[:, self.derived.index(name)]


def _weights(osim, names: Sequence[str]):
    ws = osim.SetMarkerWeights()
    for n in names:
        ws.cloneAndAppend(osim.MarkerWeight(n, kmodel.MARKER_WEIGHTS.get(n, 1.0)))
    return ws


def _priors(osim, model, weights=None):
    """Coordinate references towards 0: :data:`model.PRIORS`, or ``weights`` (name ->
    weight) where given."""
    refs = osim.SimTKArrayCoordinateReference()
    coords = model.getCoordinateSet()
    for name, w in kmodel.PRIORS.items():
        if coords.contains(name):
            ref = osim.CoordinateReference(name, osim.Constant(0.0))
            ref.setWeight(float(weights[name]) if weights is not None else w)
            refs.push_back(ref)
    return refs


def _frame_weights(weights, k: int) -> dict:
    return {name: float(w[k]) for name, w in weights.items()}


def _table(osim, markers: Markers):
    table = osim.TimeSeriesTableVec3()
    table.setColumnLabels(list(markers.names))
    for t, row in zip(markers.times, markers.xyz):
        table.appendRow(float(t), osim.RowVectorVec3([osim.Vec3(*map(float, p)) for p in row]))
    table.addTableMetaDataString('Units', 'm')
    return table


ARM_RETRY_M = 0.08   # an elbow or wrist this far off: try the arm again from hanging
ARMS = {'l': ('arm_flex_l', 'arm_add_l', 'arm_rot_l', 'elbow_flex_l'),
        'r': ('arm_flex_r', 'arm_add_r', 'arm_rot_r', 'elbow_flex_r')}
ARM_MARKERS = {'l': ('LElbow', 'LWrist'), 'r': ('RElbow', 'RWrist')}


def _weighted_cost(errors: np.ndarray, names) -> float:
    e = np.nan_to_num(errors, nan=0.0)
    return float(sum(kmodel.MARKER_WEIGHTS.get(n, 1.0) * v * v for n, v in zip(names, e)))


def _retry_arms(model, solver, state, coords, errs, mnames, current: np.ndarray) -> np.ndarray:
    """Tracking from the previous pose can keep an arm in a wrong branch: the shoulder's
    Euler angles (flexion, adduction, rotation) are singular with the arm held sideways
    (S8 opens every take in a T-pose), and from there the arm reached its marker by
    flexing to the 180 degree stop (wrist 27 cm off for seconds). When an elbow or wrist
    is more than ARM_RETRY_M off, that arm is solved again from hanging (its coordinates
    at their defaults); the better of the two fits is kept."""
    bad = [side for side, ms in ARM_MARKERS.items()
           if any(m in mnames and np.nan_to_num(current[mnames.index(m)]) > ARM_RETRY_M
                  for m in ms)]
    if not bad:
        return current
    before = _weighted_cost(current, mnames)
    q = state.getQ()
    saved = [q.get(i) for i in range(q.size())]
    for side in bad:
        for c in ARMS[side]:
            if coords.contains(c):
                coords.get(c).setValue(state, coords.get(c).getDefaultValue(), False)
    solver.assemble(state)
    solver.computeCurrentMarkerErrors(errs)
    retried = np.array([errs.getElt(i) for i in range(len(mnames))])
    if _weighted_cost(retried, mnames) < before:
        return retried
    q = state.updQ()
    for i, v in enumerate(saved):
        q.set(i, v)
    model.realizePosition(state)
    return current


def _coordinate_info(osim, model):
    coords = model.getCoordinateSet()
    names, rot = [], []
    for i in range(coords.getSize()):
        c = coords.get(i)
        names.append(c.getName())
        rot.append(c.getMotionType() == osim.Coordinate.Rotational)
    return coords, tuple(names), np.array(rot)


def solve(model_path, markers: Markers, accuracy: float = 1e-5) -> IKResult:
    """IK of the whole track on the (scaled) model at ``model_path``."""
    osim = require_opensim()
    solvable = solvable_frames(markers)
    if not solvable.any():
        raise ValueError('no frame has the three pelvis markers (Hip, RHip, LHip) and '
                         'enough others for IK')
    model = kmodel.load(model_path)
    kmodel.place_pelvis(model, markers, int(np.flatnonzero(solvable)[0]))
    state = model.initSystem()
    coords, cnames, rot = _coordinate_info(osim, model)
    # the solver keeps references to these: they must outlive it (SWIG does not know)
    table, weights = _table(osim, markers), _weights(osim, markers.names)
    prior_w = kmodel.prior_weights(markers)
    varying = [c for c, w in prior_w.items() if coords.contains(c) and np.ptp(w) > 0]
    priors = _priors(osim, model, _frame_weights(prior_w, 0))
    mref = osim.MarkersReference(table, weights)
    solver = osim.InverseKinematicsSolver(model, mref, priors, float('inf'))
    solver.setAccuracy(accuracy)
    n = len(markers.times)
    values = np.full((n, len(cnames)), np.nan)
    errs = osim.SimTKArrayDouble()
    present = np.isfinite(markers.xyz).all(-1)   # (T, M)
    shoulders = Humerothoracic.of(model, state)
    derived = np.full((n, len(SHOULDER_ANGLES)), np.nan)
    applied = _frame_weights(prior_w, 0)
    mnames, errors, tracking = None, None, False
    t0, c0 = time.perf_counter(), time.process_time()
    for k, t in enumerate(markers.times):
        if not solvable[k]:        # left NaN; the next solved frame assembles afresh
            tracking = False
            continue
        state.setTime(float(t))
        changed = False
        for c in varying:
            if prior_w[c][k] != applied[c]:
                solver.updateCoordinateReference(c, 0.0, float(prior_w[c][k]))
                applied[c] = float(prior_w[c][k])
                changed = True
        # a changed weight: assemble() sets the goals up again (track() only updates their
        # values); from the previous pose it costs about as much
        solver.track(state) if tracking and not changed else solver.assemble(state)
        tracking = True
        if mnames is None:
            n_m = solver.getNumMarkersInUse()
            mnames = tuple(solver.getMarkerNameForIndex(i) for i in range(n_m))
            errors = np.full((n, n_m), np.nan)
            col = [markers.names.index(m) for m in mnames]
        solver.computeCurrentMarkerErrors(errs)
        errors[k] = _retry_arms(model, solver, state, coords, errs, mnames,
                                np.array([errs.getElt(i) for i in range(n_m)]))
        values[k] = [coords.get(i).getValue(state) for i in range(len(cnames))]
        if shoulders is not None:
            derived[k] = shoulders(state)
    dt = (time.perf_counter() - t0) / max(int(solvable.sum()), 1)
    dc = (time.process_time() - c0) / max(int(solvable.sum()), 1)
    errors[~present[:, col]] = np.nan
    values[:, rot] = np.degrees(values[:, rot])
    locked = tuple(n for n in cnames if coords.get(n).getDefaultLocked())
    return IKResult(np.asarray(markers.times, float), cnames, values, rot, mnames, errors, dt,
                    dc, locked, SHOULDER_ANGLES if shoulders is not None else (),
                    derived if shoulders is not None else None)


class FrameIK:
    """Live IK: one frame at a time, each solve warm-started from the previous pose.

    ``solve(xyz)`` takes (M, 3) marker positions (metres, Y up, NaN = missing) in
    ``marker_names`` order and returns the coordinate values (radians / metres) in
    ``coordinates`` order. A fresh solver per frame (OpenSim's references are fixed at
    construction) assembled from the carried-over state costs about as much as tracking.
    """

    def __init__(self, model_path, marker_names: Sequence[str], accuracy: float = 1e-5):
        self.osim = require_opensim()
        self.model = kmodel.load(model_path)
        self.marker_names = tuple(marker_names)
        self.accuracy = accuracy
        self.state = self.model.initSystem()
        self._coords, self.coordinates, self.rotational = _coordinate_info(self.osim, self.model)
        self._weights = _weights(self.osim, self.marker_names)
        self._started = False

    def solve(self, xyz: np.ndarray, t: float = 0.0) -> np.ndarray:
        osim = self.osim
        if not self._started:
            ok = np.isfinite(xyz).all(-1)
            if ok[[self.marker_names.index(n) for n in ('Hip', 'RHip', 'LHip')]].all():
                m = Markers(np.array([t]), self.marker_names, np.asarray(xyz, float)[None])
                kmodel.place_pelvis(self.model, m, 0)
                self.state = self.model.initSystem()
        one = Markers(np.array([t]), self.marker_names, np.asarray(xyz, float)[None])
        table = _table(osim, one)
        mref = osim.MarkersReference(table, self._weights)
        priors = _priors(osim, self.model, _frame_weights(kmodel.prior_weights(one), 0))
        solver = osim.InverseKinematicsSolver(self.model, mref, priors, float('inf'))
        solver.setAccuracy(self.accuracy)
        self.state.setTime(float(t))
        solver.assemble(self.state)
        errs = osim.SimTKArrayDouble()
        solver.computeCurrentMarkerErrors(errs)
        mnames = tuple(solver.getMarkerNameForIndex(i) for i in range(solver.getNumMarkersInUse()))
        _retry_arms(self.model, solver, self.state, self._coords, errs, mnames,
                    np.array([errs.getElt(i) for i in range(len(mnames))]))
        self._started = True
        return np.array([self._coords.get(i).getValue(self.state)
                         for i in range(len(self.coordinates))])
