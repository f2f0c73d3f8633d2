"""What the kinematics pipeline writes: the IK .mot, a CSV of joint angles, a plot, a summary."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import numpy as np

from ..io import joint_states
from . import model as kmodel
from .ik import IKResult
from .markers import MIN_MARKERS
from .shoulder import DESCRIPTIONS


def write_mot(result: IKResult, path, name: str = 'ik') -> Path:
    """OpenSim motion file (what the InverseKinematicsTool writes): degrees, all coordinates."""
    return joint_states.write_mot(path, name, result.times, result.coordinates, result.values)


def read_mot(path) -> Dict[str, np.ndarray]:
    """Columns of a .mot/.sto by name (enough for ours and OpenSim's)."""
    lines = Path(path).read_text().splitlines()
    end = next(i for i, l in enumerate(lines) if l.strip().lower() == 'endheader')
    cols = lines[end + 1].split('\t')
    data = np.array([[float(v) for v in l.split('\t')] for l in lines[end + 2:] if l.strip()])
    return {c.strip(): data[:, i] for i, c in enumerate(cols)}


def write_csv(result: IKResult, path) -> Path:
    """time_s + every coordinate (``_deg`` for rotations, ``_m`` for translations), then the
    derived angles (:data:`shoulder.SHOULDER_ANGLES`, degrees); empty cells in frames not
    solved."""
    columns = list(result.coordinates) + list(result.derived)
    rotational = list(result.rotational) + [True] * len(result.derived)
    table = result.values if not result.derived else np.hstack([result.values,
                                                                  result.derived_values])
    return joint_states.write_angle_csv(path, result.times, columns, rotational, table)


def plot(result: IKResult, path, title: str = '') -> Path:
    """The main angles over time: hip, knee, ankle flexion both sides, pelvis tilt, trunk,
    shoulder and elbow. Held (not measured) coordinates are drawn dashed and say so. The
    shoulder is its humerothoracic elevation where the model has it
    (:class:`shoulder.Humerothoracic`: arm_flex is an Euler angle that jumps with the arm
    held sideways)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = [('Hip flexion', ('hip_flexion_r', 'hip_flexion_l')),
              ('Knee flexion', ('knee_angle_r', 'knee_angle_l')),
              ('Ankle dorsiflexion', ('ankle_angle_r', 'ankle_angle_l')),
              ('Pelvis tilt / trunk (lumbar flexion)', ('pelvis_tilt', 'L5_S1_Flex_Ext')),
              ('Shoulder elevation (humerus on thorax)', ('shoulder_elevation_r',
                                                          'shoulder_elevation_l'))
              if 'shoulder_elevation_r' in result.derived
              else ('Shoulder flexion', ('arm_flex_r', 'arm_flex_l')),
              ('Elbow flexion', ('elbow_flex_r', 'elbow_flex_l'))]
    fig, axes = plt.subplots(3, 2, figsize=(11, 9), sharex=True)
    unseen = False
    for ax, (label, names) in zip(axes.ravel(), panels):
        held = []
        for name, colour in zip(names, ('tab:red', 'tab:blue')):
            if name not in result.coordinates and name not in result.derived:
                continue
            side = {'pelvis_tilt': 'pelvis tilt',
                    'L5_S1_Flex_Ext': 'lumbar flexion (trunk on pelvis)'}.get(name) \
                or {'_r': 'right', '_l': 'left'}.get(name[-2:], name)
            style = '--' if name in result.locked else '-'
            y = result.column(name)
            gone = _unobserved(result, name)
            if gone.any():   # the distal marker was dropped: the angle was held, not seen
                ax.plot(result.times, y, ':', color=colour, lw=1.0)
                y = np.where(gone, np.nan, y)
                unseen = True
            ax.plot(result.times, y, style, color=colour, lw=1.2, label=side)
            if name in result.locked:
                held.append(name)
        ax.set_title(label + (' (held at 0: not measured)' if held else ''), fontsize=10)
        ax.set_ylabel('deg')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc='upper right')
    for ax in axes[-1]:
        ax.set_xlabel('time (s)')
    fig.suptitle((title or 'OpenSim inverse kinematics') + (
        '\ndotted: the marker that shows the angle was dropped (implausible bone length '
        'or missing); the value is held, not measured' if unseen else ''), fontsize=11)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# the marker an angle is seen through: without it (dropped frames) the angle is held
DISTAL = {'hip_flexion': 'Knee', 'knee_angle': 'Foot', 'arm_flex': 'Elbow',
          'shoulder_elevation': 'Elbow', 'elbow_flex': 'Wrist'}


def _unobserved(result: IKResult, name: str) -> np.ndarray:
    """(T,) frames where ``name``'s distal marker (:data:`DISTAL`) was missing."""
    side = {'_r': 'R', '_l': 'L'}.get(name[-2:])
    marker = DISTAL.get(name[:-2]) if side else None
    if marker is None or side + marker not in result.marker_names:
        return np.zeros(len(result.times), bool)
    return ~np.isfinite(result.marker_errors[:, result.marker_names.index(side + marker)])


def marker_error_table(result: IKResult) -> Dict[str, Dict[str, float]]:
    """Per marker: RMS and max IK error over the frames it was present (metres)."""
    out = {}
    for i, name in enumerate(result.marker_names):
        e = result.marker_errors[:, i]
        e = e[np.isfinite(e)]
        out[name] = {'rms_m': float(np.sqrt(np.mean(e ** 2))) if len(e) else float('nan'),
                     'max_m': float(e.max()) if len(e) else float('nan'), 'frames': int(len(e))}
    return out


# the angles a range of motion is reported for (the plot's; shoulder: humerothoracic)
MAIN_ANGLES = ('hip_flexion_r', 'hip_flexion_l', 'knee_angle_r', 'knee_angle_l', 'pelvis_tilt',
               'L5_S1_Flex_Ext', 'shoulder_elevation_r', 'shoulder_elevation_l',
               'elbow_flex_r', 'elbow_flex_l')


def range_of_motion(result: IKResult) -> Dict[str, Dict[str, float]]:
    """Per main angle (:data:`MAIN_ANGLES` the result has): min, max and range in degrees
    over the frames its distal marker was seen (held values are not motion)."""
    out = {}
    for name in MAIN_ANGLES:
        if name not in result.coordinates and name not in result.derived:
            continue
        y = result.column(name)
        y = y[np.isfinite(y) & ~_unobserved(result, name)]
        if len(y):
            out[name] = {'min_deg': float(y.min()), 'max_deg': float(y.max()),
                         'range_deg': float(y.max() - y.min()), 'frames': int(len(y))}
    return out


def summary(result: IKResult, extra: dict) -> dict:
    per = marker_error_table(result)
    e = result.marker_errors[np.isfinite(result.marker_errors)]
    legs = [n for n in result.marker_names
            if n in ('RHip', 'LHip', 'RKnee', 'LKnee', 'RFoot', 'LFoot')]
    le = result.marker_errors[:, [result.marker_names.index(n) for n in legs]]
    le = le[np.isfinite(le)]
    return {
        **extra,
        'frames': int(len(result.times)),
        'frames_not_solved': int(np.isnan(result.values).all(axis=1).sum()),
        'ik_seconds_per_frame': result.seconds_per_frame,
        'ik_cpu_seconds_per_frame': result.cpu_seconds_per_frame,
        'marker_rms_m': float(np.sqrt(np.mean(e ** 2))) if len(e) else None,
        'marker_max_m': float(e.max()) if len(e) else None,
        'leg_marker_rms_m': float(np.sqrt(np.mean(le ** 2))) if len(le) else None,
        'markers': per,
        'range_of_motion_deg': range_of_motion(result),
        'not_measured': {n: 'held at its default: no marker observes it' for n in result.locked},
        'inferred': {n: why for n, why in kmodel.INFERRED.items() if n in result.coordinates},
        'derived': {n: DESCRIPTIONS[n.rsplit('_', 1)[0]] for n in result.derived},
    }


def summary_text(s: dict) -> str:
    lines = [f"{s.get('input', '')}: {s['frames']} frames, "
             f"IK {1e3 * s['ik_seconds_per_frame']:.1f} ms/frame "
             f"({1e3 * s['ik_cpu_seconds_per_frame']:.1f} ms CPU)",
             f"marker error RMS {100 * (s['marker_rms_m'] or float('nan')):.2f} cm "
             f"(legs {100 * (s['leg_marker_rms_m'] or float('nan')):.2f} cm), "
             f"max {100 * (s['marker_max_m'] or float('nan')):.2f} cm",
             'per marker (RMS / max, cm):']
    for name, m in s['markers'].items():
        lines.append(f"  {name:10s} {100 * m['rms_m']:6.2f} {100 * m['max_m']:6.2f}")
    if s.get('range_of_motion_deg'):
        lines.append('range of motion (deg, min / max / range):')
        for name, r in s['range_of_motion_deg'].items():
            lines.append(f"  {name:22s} {r['min_deg']:7.1f} {r['max_deg']:7.1f} "
                         f"{r['range_deg']:7.1f}")
    if s.get('frames_not_solved'):
        lines.append(f"frames not solved (no pelvis markers or under {MIN_MARKERS} markers; "
                     f"NaN in the .mot, empty in the CSV): {s['frames_not_solved']}")
    if s.get('markers_dropped_frames'):
        lines.append('dropped (segment length off its median by more than '
                     f"{100 * s.get('bone_length_tolerance', 0):.0f}%), frames: " +
                     ', '.join(f'{k} {v}' for k, v in s['markers_dropped_frames'].items()))
    lines.append('not measured (held): ' + ', '.join(s['not_measured']))
    lines.append('inferred through priors: ' + ', '.join(s['inferred']))
    return '\n'.join(lines)


def _json_safe(v):
    """NaN and infinity as null: json.dumps writes them as bare NaN, which strict JSON
    readers (jq, JavaScript) refuse (a marker missing in every frame has no RMS)."""
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v


def write_summary(s: dict, path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(_json_safe(s), indent=2, default=float, allow_nan=False) + '\n')
    path.with_suffix('.txt').write_text(summary_text(s) + '\n')
    return path
