"""Joint angles in bags (``sensor_msgs/JointState``, the kinematics node's
``/kinematics/joint_states``) -> arrays, OpenSim .mot, CSV and npz.

JointState carries radians for rotations and metres for translations and does not say which
is which: OpenSim's convention names the translational coordinates ``*_tx``, ``*_ty``,
``*_tz`` (the pelvis's in our model), so those stay metres and the rest are written in
degrees. One frame per message, stamped with its header stamp (the skeleton's), else the bag
time; a coordinate a message does not name is NaN in that frame.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import bag_io
from .records import sanitize

JOINT_STATE_TYPE = 'sensor_msgs/msg/JointState'
TRANSLATIONS = ('_tx', '_ty', '_tz')


class JointTrack(NamedTuple):
    topic: str
    names: Tuple[str, ...]
    stamps_s: np.ndarray   # (T,)
    positions: np.ndarray  # (T, C) as published: radians, metres for TRANSLATIONS; NaN absent

    @property
    def name(self) -> str:
        """File-name stem, e.g. ``kinematics_joint_states``."""
        return sanitize(self.topic)

    @property
    def rotational(self) -> np.ndarray:
        return np.array([not n.endswith(TRANSLATIONS) for n in self.names])

    def in_degrees(self) -> np.ndarray:
        """(T, C): rotations in degrees, translations in metres (what .mot files hold)."""
        return np.where(self.rotational, np.degrees(self.positions), self.positions)


def joint_state_topics(bag_path) -> List[str]:
    with bag_io.open_bag(bag_path) as bag:
        return [t for t, info in bag.topics.items() if info.msgtype == JOINT_STATE_TYPE]


def read_joint_states(bag_path, topics: Optional[Sequence[str]] = None) -> List[JointTrack]:
    """Every JointState topic of the bag (or those of ``topics`` that are JointState topics)
    with at least one message, as a JointTrack, in topic order."""
    out = []
    with bag_io.open_bag(bag_path) as bag:
        wanted = [t for t, info in bag.topics.items() if info.msgtype == JOINT_STATE_TYPE
                  and (topics is None or t in topics)]
        for topic in wanted:
            rows, names = [], {}
            for _, msgtype, stamp_ns, raw in bag.messages([topic]):
                msg = bag.deserialize(raw, msgtype)
                header_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                for n in msg.name:
                    names.setdefault(str(n), len(names))
                rows.append(((header_ns or stamp_ns) / 1e9, list(msg.name),
                             np.asarray(msg.position, dtype=np.float64)))
            if not rows:
                continue
            rows.sort(key=lambda r: r[0])
            pos = np.full((len(rows), len(names)), np.nan)
            for k, (_, ns, values) in enumerate(rows):
                for n, v in zip(ns, values):
                    pos[k, names[str(n)]] = v
            out.append(JointTrack(topic, tuple(names), np.array([r[0] for r in rows]), pos))
    return out


def write_mot(path, name: str, times: np.ndarray, columns: Sequence[str],
              values: np.ndarray) -> Path:
    """OpenSim motion file as the InverseKinematicsTool writes it: ``values`` (T, C) in
    degrees for rotations (``inDegrees=yes``), metres for translations; NaN written as nan."""
    path = Path(path)
    n, c = np.shape(values)
    head = [name, 'version=1', f'nRows={n}', f'nColumns={c + 1}', 'inDegrees=yes', '',
            'Units are S.I. units (second, meters, Newtons, ...)',
            'If the header above contains a line with \'inDegrees\', this indicates whether '
            'rotational values are in degrees (yes) or radians (no).', '', 'endheader',
            'time\t' + '\t'.join(columns)]
    rows = ['\t'.join([f'{t:.6f}'] + [f'{v:.8f}' for v in row]) for t, row in zip(times, values)]
    path.write_text('\n'.join(head + rows) + '\n')
    return path


def write_joint_mot(track: JointTrack, path) -> Path:
    return write_mot(path, track.name, track.stamps_s, track.names, track.in_degrees())


def write_angle_csv(path, times: np.ndarray, columns: Sequence[str],
                    rotational: Sequence[bool], values: np.ndarray) -> Path:
    """``time_s`` then one column per coordinate, ``<name>_deg`` (``values`` in degrees) or
    ``<name>_m`` (metres); a cell is empty where the value is NaN (a frame not solved, a
    coordinate not published), which spreadsheets and ``pandas.read_csv`` read as missing.
    The one CSV writer of joint angles (vp3d-kinematics and vp3d-export)."""
    path = Path(path)
    cols = ['time_s'] + [f'{n}_{"deg" if r else "m"}' for n, r in zip(columns, rotational)]
    rows = [','.join([f'{t:.6f}'] + ['' if not np.isfinite(v) else f'{v:.5f}' for v in row])
            for t, row in zip(times, values)]
    path.write_text(','.join(cols) + '\n' + '\n'.join(rows) + '\n')
    return path


def write_joint_csv(track: JointTrack, path) -> Path:
    return write_angle_csv(path, track.stamps_s, track.names, track.rotational,
                           track.in_degrees())


def write_joint_npz(track: JointTrack, path) -> Path:
    """``stamps_s`` (T,), ``names`` (C,), ``positions`` (T, C) as published, ``topic``."""
    path = Path(path)
    with path.open('wb') as f:
        np.savez_compressed(f, stamps_s=track.stamps_s, names=np.array(track.names, dtype=str),
                            positions=track.positions, topic=np.array(track.topic))
    return path
