"""Markers (TRC, or a LandmarkRecord bag's world track) -> scaled model -> IK -> files.

Outputs in ``out_dir`` for an input named ``<name>``: ``<name>.mot`` (IK, degrees),
``<name>_scaled.osim``, ``<name>_scale_setup.xml`` (+ ``<name>_scaled_generic.osim`` it
starts from, so the ScaleTool run can be repeated in OpenSim), ``<name>_angles.csv``,
``<name>_angles.png`` and ``<name>_summary.json`` / ``.txt``; from a bag or .npy also ``<name>.trc``
(the markers IK used).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Dict, NamedTuple, Optional

import numpy as np

from . import require_opensim
from .markers import (H36M_MARKERS, Markers, bend_short_legs, check_y_up, drop_implausible,
                      heading_deg, neutral_frames, read_trc, rotate_about_vertical, static_window,
                      window_speed, write_trc, zup_to_yup)

WORLD_HINTS = ('fused', 'world')


class Outputs(NamedTuple):
    mot: Path
    scaled_model: Path
    csv: Path
    png: Path
    summary: Path
    summary_data: dict


def input_name(path) -> str:
    p = Path(path)
    return p.stem if p.is_file() else p.name


def load_markers(path, topic: Optional[str] = None, fps: Optional[float] = None,
                 up: str = 'y', person: Optional[int] = None) -> tuple:
    """(Markers with Y up, description of the source). TRC: as is (Y up, its units), or
    turned from Z up with ``up='z'`` (X, Y, Z -> X, Z, -Y, as from REP-103);
    a ``.npy`` (T, 17, 3) of world joints, REP-103 z up (``vp3d-lift --frame world``), at
    ``fps``; a bag: the fused (``/skeleton_3d/fused``) or else a world
    (``/<cam>/skeleton_3d/world``)
    H36M-17 track, the person seen in most frames (or ``person``), REP-103 z up turned to
    Y up. A subject that never stands along +Y is refused (:func:`markers.check_y_up`)."""
    p = Path(path)
    m, source = _load(p, topic, fps, up, person)
    if p.suffix.lower() == '.trc':
        hints = {'+Z': 'pass --up z to turn a Z-up file to Y up'}
    else:   # turned from REP-103: a Y-up input now stands along -Z
        hints = {'-Z': 'this input looks Y up: a .npy or a bag world track is REP-103 z up, '
                       'as vp3d-lift --frame world and vp3d-offline write them'}
    check_y_up(m, source, hints)
    return m, source


def _load(p: Path, topic, fps, up, person) -> tuple:
    if p.is_file() and p.suffix.lower() not in ('.trc', '.npy', '.mcap', '.db3'):
        raise ValueError(f'{p}: not a TRC (.trc), a .npy of world joints or a bag '
                         '(directory, .mcap, .db3)')
    if person is not None and (p.is_file() and p.suffix.lower() in ('.npy', '.trc')):
        raise ValueError(f'{p}: --person picks a person of a bag; a {p.suffix} holds one')
    if p.is_file() and p.suffix.lower() == '.npy':
        x = np.load(p)
        if x.ndim != 3 or x.shape[1:] != (17, 3):
            raise ValueError(f'{p}: a .npy input is (T, 17, 3) H36M-17 world joints '
                             f'(vp3d-lift --frame world), got shape {x.shape}')
        if not fps or fps <= 0:
            raise ValueError(f'{p}: a .npy has no time stamps: give --fps')
        m = Markers(np.arange(len(x)) / float(fps), H36M_MARKERS, zup_to_yup(x))
        return m, f'npy {p.name} (REP-103 z up, {fps:g} fps)'
    if p.is_file() and p.suffix.lower() == '.trc':
        m = read_trc(p)
        if up == 'z':
            m = m._replace(xyz=zup_to_yup(m.xyz))
        elif up != 'y':
            raise ValueError(f"up axis {up!r}: 'y' or 'z'")
        keep = [n for n in H36M_MARKERS if n in m.names]
        if len(keep) < len(H36M_MARKERS):
            missing = sorted(set(H36M_MARKERS) - set(keep))
            raise ValueError(f'{p}: TRC lacks markers {missing} (needs the 17 H36M joints, '
                             f'named as vp3d-export writes them: {list(H36M_MARKERS)})')
        return m.subset(keep), f'TRC {p.name}' + (' (Z up, turned to Y up)' if up == 'z' else '')
    from ..io.records import read_landmark_tracks, trc_marker_name
    tracks = [t for t in read_landmark_tracks(p, [topic] if topic else None) if t.dims == 3]
    if topic is None:
        tracks = [t for t in tracks if any(h in t.topic for h in WORLD_HINTS)]
    tracks = [t for t in tracks if set(H36M_MARKERS) <= {trc_marker_name(j) for j in t.joint_names}]
    if not tracks:
        raise ValueError(f'{p}: no world-frame H36M-17 track (a 3D keypoint topic with '
                         f'{"/".join(WORLD_HINTS)} in its name; camera-frame skeleton_3d '
                         'tracks are root-relative and cannot drive IK); name one with --topic')
    if person is not None:
        seen = sorted({t.person for t in tracks})
        tracks = [t for t in tracks if t.person == person]
        if not tracks:
            raise ValueError(f'{p}: no person {person} in its world tracks (persons: {seen})')
    # fused (multi-camera) before one camera's world track, then the most complete person
    track = max(tracks, key=lambda t: ('fused' in t.topic,
                                       int(np.isfinite(t.positions).all(-1).all(-1).sum())))
    names = tuple(trc_marker_name(j) for j in track.joint_names)
    m = Markers(track.stamps_s - track.stamps_s[0], names, zup_to_yup(track.positions))
    return m.subset(H36M_MARKERS), f'bag {p.name} topic {track.topic} person {track.person}'


def face_forward(markers: Markers):
    """(markers turned about the vertical so that the subject faces +X on average, the turn
    in degrees). The pelvis angles are Euler angles in the ground frame (tilt about Z, then
    list about X, then rotation about Y): they read as anatomical tilt and obliquity only
    for a subject facing +X. Facing -X, a forward lean came out as 'list' and ran into the
    sequence's singularity (tilt jumping to 160 degrees when the trunk was horizontal)."""
    turn = heading_deg(markers)
    return rotate_about_vertical(markers, turn), turn


def lowpass(markers: Markers, cutoff_hz: Optional[float]) -> Markers:
    """Zero-phase Butterworth low-pass of every marker coordinate (the fusion's filter,
    :func:`vp3d_ros.geometry.fusion.smooth_zero_phase`, per continuous run of a marker);
    None or 0: as is. Offline only: it looks ahead."""
    if not cutoff_hz:
        return markers
    if not 0 < cutoff_hz < markers.rate / 2:
        raise ValueError(f'low-pass cutoff {cutoff_hz:g} Hz: must lie between 0 and half the '
                         f'marker rate ({markers.rate:g} Hz)')
    from ..geometry.fusion import smooth_zero_phase
    return markers._replace(xyz=smooth_zero_phase(markers.xyz, markers.rate, cutoff_hz))


class Prepared(NamedTuple):
    """What IK is given, and what was done to get it."""
    markers: Markers          # facing +X, knees bent back, implausible markers dropped, low-passed
    turn_deg: float           # turned about the vertical by this
    dropped: Dict[str, int]   # marker -> frames dropped as implausible
    bent: Dict[str, int]      # knee marker -> frames whose knee was bent back


def prepare_markers(markers: Markers, bone_tolerance: float = 0.35,
                    lowpass_hz: Optional[float] = None, bend_legs: bool = True) -> Prepared:
    """Markers facing +X, short legs' knees bent back (``bend_legs``, :func:`~.markers.
    bend_short_legs`), implausible limb markers dropped, then low-passed at ``lowpass_hz``
    if given."""
    markers, turn = face_forward(markers)
    markers, bent = bend_short_legs(markers) if bend_legs else (markers, {})
    markers, dropped = drop_implausible(markers, bone_tolerance)
    return Prepared(lowpass(markers, lowpass_hz), turn, dropped, bent)


def run(input_path, out_dir, height: Optional[float] = None, mass: Optional[float] = None,
        model_file=None, topic: Optional[str] = None, static_search_s: float = 3.0,
        fps: Optional[float] = None, bone_tolerance: float = 0.35,
        lowpass_hz: Optional[float] = None, up: str = 'y',
        person: Optional[int] = None, bend_legs: bool = True) -> Outputs:
    require_opensim()
    from . import ik, report, scaling
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = input_name(input_path)
    markers, source = load_markers(input_path, topic, fps, up, person)
    markers, turn, dropped, bent = prepare_markers(markers, bone_tolerance, lowpass_hz,
                                                   bend_legs)
    frames = static_window(markers, static_search_s)
    with tempfile.TemporaryDirectory(prefix='vp3d_kin_') as tmp:
        if Path(input_path).suffix.lower() == '.trc':
            trc = write_trc(markers, Path(tmp) / f'{name}.trc')   # metres, our markers only
        else:
            trc = write_trc(markers, out_dir / f'{name}.trc')
        scaled = out_dir / f'{name}_scaled.osim'
        sc = scaling.scale(markers, trc, frames, scaled, out_dir / f'{name}_scale_setup.xml',
                           model_file=model_file, height=height, mass=mass, work_dir=out_dir)
    result = ik.solve(scaled, markers)
    mot = report.write_mot(result, out_dir / f'{name}.mot', name)
    csv = report.write_csv(result, out_dir / f'{name}_angles.csv')
    png = report.plot(result, out_dir / f'{name}_angles.png', f'{name}: OpenSim IK ({source})')
    extra = {
        'input': str(input_path), 'source': source,
        'model': str(model_file or 'vp3d_h36m17.osim (Pose2Sim simple model, BSD-3-Clause)'),
        'scaled_model': str(scaled), 'scaling': sc.method, 'scale_factors': sc.factors,
        'static_window_s': list(sc.window),
        'static_window_neutral_posture': bool(neutral_frames(markers)[frames[0]:frames[1]].all()),
        'turned_about_vertical_deg': turn,
        'markers_dropped_frames': dropped,
        'short_legs_bent': bend_legs, 'knees_bent_frames': bent,
        'bone_length_tolerance': bone_tolerance,
        'lowpass_hz': lowpass_hz or None,
        'static_window_marker_speed_m_s': window_speed(markers, *frames),
        'height_m': height, 'mass_kg': mass,
        'opensim_version': require_opensim().GetVersion(),
    }
    s = report.summary(result, extra)
    summ = report.write_summary(s, out_dir / f'{name}_summary.json')
    return Outputs(mot, scaled, csv, png, summ, s)
