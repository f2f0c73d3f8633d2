"""LandmarkRecord bags -> per-camera, per-person landmark tracks and CSV / OpenSim TRC / npz.

A ``LandmarkRecord`` is one landmark at one instant, the row format CSV and OpenSim-TRC
pipelines consume. A ``Track`` holds one person on one keypoint topic as arrays: one frame
per PointCloud2 message (stamped with the header stamp, or the bag time when that is zero),
sorted by time; a frame in which the person is absent has NaN positions and 0 confidence.

Joint names come from the bag metadata (``vp3d.topic_layouts``, else ``vp3d.layout_2d`` /
``vp3d.layout_3d``), else H36M-17 for 3D clouds and ``joint_<i>`` for 2D ones.

CSV and TRC are for 3D tracks (metres, camera optical frame, root-relative, as in the
bag: no axis change for OpenSim's Y-up). World tracks (REP-103 z up, absolute) go out in
OpenSim's axes through ``write_world_trc`` / ``write_world_csv`` (mapping below).
``write_csv(..., allow_2d=True)`` writes a 2D track with its own columns,
``CSV_COLUMNS_2D`` (pixels and detector confidence); TRC is 3D only.
A keypoint topic whose frames are all empty (nobody detected) gives no Track;
``keypoint_topic_frames`` tells such topics apart from absent ones.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import bag_io
from ..core import cloud_schema
from ..core.skeletons import H36M17, get_layout

CLOUD_TYPE = 'sensor_msgs/msg/PointCloud2'
CSV_COLUMNS = ('timestamp_s', 'landmark', 'x_m', 'y_m', 'z_m', 'visibility')
CSV_COLUMNS_2D = ('timestamp_s', 'landmark', 'x_px', 'y_px', 'confidence')


class LandmarkRecord(NamedTuple):
    timestamp_s: float
    landmark: str
    x_m: float
    y_m: float
    z_m: float
    visibility: float


class Track(NamedTuple):
    topic: str
    person: int
    joint_names: Tuple[str, ...]
    stamps_s: np.ndarray    # (T,)
    positions: np.ndarray   # (T, J, D), NaN where the person is absent
    confidence: np.ndarray  # (T, J), 0 where the person is absent

    @property
    def dims(self) -> int:
        return int(self.positions.shape[-1])

    @property
    def name(self) -> str:
        """File-name stem: sanitized topic + person, e.g. ``cam01_skeleton_3d_p0``."""
        return f'{sanitize(self.topic)}_p{self.person}'


def sanitize(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9]+', '_', text).strip('_') or 'track'


def make_cloud(points, confidence, person_ids=None, stamp_ns: int = 0, frame_id: str = ''):
    """(P, J, D) keypoints -> rosbags PointCloud2 in the cloud_schema layout."""
    types = bag_io.typestore().types
    field_cls, header_cls = types['sensor_msgs/msg/PointField'], types['std_msgs/msg/Header']
    body = cloud_schema.build(points, confidence, person_ids)
    stamp = types['builtin_interfaces/msg/Time'](sec=int(stamp_ns) // 10**9,
                                                 nanosec=int(stamp_ns) % 10**9)
    return types[CLOUD_TYPE](
        header=header_cls(stamp=stamp, frame_id=frame_id), height=1, width=body.width,
        fields=[field_cls(name=nm, offset=off, datatype=cloud_schema.FLOAT32, count=1)
                for nm, off in body.fields],
        is_bigendian=False, point_step=body.point_step, row_step=body.row_step,
        data=np.frombuffer(body.data, dtype=np.uint8), is_dense=True)


def _joint_names(topic: str, dims: int, num_joints: int, meta: dict) -> Tuple[str, ...]:
    name = (meta.get(bag_io.META_TOPIC_LAYOUTS) or {}).get(topic) or meta.get(
        bag_io.META_LAYOUT_2D if dims == 2 else bag_io.META_LAYOUT_3D) or (
        H36M17.name if dims == 3 else None)
    if name is None:
        return tuple(f'joint_{i}' for i in range(num_joints))
    joints = get_layout(name).joints
    if num_joints > len(joints):
        raise ValueError(f'{topic}: clouds have {num_joints} joints but layout {name!r} has '
                         f'{len(joints)}; fix the bag metadata ({bag_io.META_TOPIC_LAYOUTS})')
    return tuple(joints)


def _is_keypoint_cloud(msg) -> bool:
    names = {f.name for f in msg.fields}
    return {'x', 'y', 'confidence', 'joint', 'person'} <= names and all(
        f.datatype == cloud_schema.FLOAT32 for f in msg.fields)


def read_landmark_tracks(bag_path, topics: Optional[Sequence[str]] = None) -> List[Track]:
    """Every (keypoint topic, person) of the bag as a Track, ordered by topic then person.

    PointCloud2 topics without the cloud_schema fields (not keypoints) are skipped; a
    requested topic that is missing or not a PointCloud2 raises ValueError.
    """
    meta, clouds, frames, skip = _read_frames(bag_path, topics)
    tracks = []
    for topic in clouds:
        if topic in skip or not frames[topic]:
            continue
        tracks.extend(_topic_tracks(topic, frames[topic], meta))
    return tracks


class TopicFrames(NamedTuple):
    topic: str
    dims: int
    frames: int              # keypoint clouds on the topic
    frames_with_person: int  # of which hold at least one person


def keypoint_topic_frames(bag_path, topics: Optional[Sequence[str]] = None) -> List[TopicFrames]:
    """Per keypoint topic of the bag: how many frames, and how many with anybody in them
    (a video with nobody in it gives topics whose frames are all empty, hence no Track)."""
    _, clouds, frames, skip = _read_frames(bag_path, topics)
    return [TopicFrames(t, frames[t][0][2], len(frames[t]), sum(1 for f in frames[t] if f[1]))
            for t in clouds if t not in skip and frames[t]]


def _read_frames(bag_path, topics):
    """(metadata, cloud topics, {topic: [(stamp_s, persons, dims)]}, non-keypoint topics)."""
    with bag_io.open_bag(bag_path) as bag:
        meta = bag.metadata
        clouds = [t for t, info in bag.topics.items() if info.msgtype == CLOUD_TYPE]
        if topics is not None:
            if bad := [t for t in topics if t not in clouds]:
                raise ValueError(f'topics {bad} are not PointCloud2 topics of {bag_path} '
                                 f'(it has {clouds})')
            clouds = [t for t in clouds if t in topics]
        frames: Dict[str, list] = {t: [] for t in clouds}
        skip = set()
        for topic, msgtype, stamp_ns, raw in bag.messages(clouds):
            if topic in skip:
                continue
            msg = bag.deserialize(raw, msgtype)
            if not _is_keypoint_cloud(msg):
                skip.add(topic)
                continue
            header_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            try:
                persons = cloud_schema.unpack(
                    msg.data.tobytes(), [f.name for f in msg.fields],
                    [f.offset for f in msg.fields], msg.point_step, msg.width * msg.height)
            except ValueError as e:
                raise ValueError(f'{topic} at {stamp_ns} ns: {e}') from None
            frames[topic].append(((header_ns or stamp_ns) / 1e9, persons,
                                  3 if 'z' in {f.name for f in msg.fields} else 2))
    return meta, clouds, frames, skip


def _topic_tracks(topic: str, frames: list, meta: dict) -> List[Track]:
    frames = sorted(frames, key=lambda f: f[0])  # stable: equal stamps keep bag order
    dims = frames[0][2]
    if any(f[2] != dims for f in frames):
        raise ValueError(f'{topic} mixes 2D and 3D clouds')
    num_joints = max((len(c) for _, persons, _ in frames for _, c in persons.values()),
                     default=0)
    names = _joint_names(topic, dims, num_joints, meta)
    stamps = np.array([f[0] for f in frames])
    out = []
    for pid in sorted({p for _, persons, _ in frames for p in persons}):
        pos = np.full((len(frames), len(names), dims), np.nan)
        conf = np.zeros((len(frames), len(names)))
        for t, (_, persons, _) in enumerate(frames):
            if pid in persons:
                p, c = persons[pid]
                pos[t, :len(p)], conf[t, :len(c)] = p, c
        out.append(Track(topic, pid, names, stamps.copy(), pos, conf))
    return out


def track_to_records(track: Track, allow_2d: bool = False) -> List[LandmarkRecord]:
    """One record per landmark per frame, by time then layout order (2D: z_m is NaN)."""
    if track.dims != 3 and not allow_2d:
        raise ValueError(f'{track.topic} is a 2D (pixel) track; records are metres, '
                         f'pass allow_2d=True to export pixels anyway')
    out = []
    for t, stamp in enumerate(track.stamps_s):
        for j, name in enumerate(track.joint_names):
            p = track.positions[t, j]
            out.append(LandmarkRecord(float(stamp), name, float(p[0]), float(p[1]),
                                      float(p[2]) if track.dims == 3 else float('nan'),
                                      float(track.confidence[t, j])))
    return out


def _num(v: float) -> str:
    return '' if not np.isfinite(v) else f'{v:.9g}'


def write_csv(track: Track, path, allow_2d: bool = False) -> Path:
    """CSV with exactly CSV_COLUMNS (3D, metres), or with allow_2d and a 2D track
    CSV_COLUMNS_2D (pixels); NaN (absent) coordinates are empty cells."""
    path = Path(path)
    records = track_to_records(track, allow_2d)
    with path.open('w', newline='') as f:
        w = csv.writer(f)
        if track.dims == 3:
            w.writerow(CSV_COLUMNS)
            for r in records:
                w.writerow([f'{r.timestamp_s:.9f}', r.landmark, _num(r.x_m), _num(r.y_m),
                            _num(r.z_m), _num(r.visibility)])
        else:
            w.writerow(CSV_COLUMNS_2D)
            for r in records:
                w.writerow([f'{r.timestamp_s:.9f}', r.landmark, _num(r.x_m), _num(r.y_m),
                            _num(r.visibility)])
    return path


def trc_marker_name(joint: str) -> str:
    """OpenSim component names may not contain '/' or whitespace (H36M 'Neck/Nose')."""
    return re.sub(r'[\s/\\]+', '_', joint)


def data_rate(stamps_s: np.ndarray) -> float:
    """Frames per second from the median stamp interval (0 if it cannot be told), rounded:
    to the nearest integer when within 0.02 % of it (stamps in whole nanoseconds make a
    60 fps clip 59.999999), else to 3 decimals (29.97 stays 29.97)."""
    d = np.diff(np.asarray(stamps_s, dtype=np.float64))
    d = d[d > 0]
    if not len(d):
        return 0.0
    rate = float(1.0 / np.median(d))
    nearest = round(rate)
    return float(nearest) if abs(rate - nearest) <= 2e-4 * rate else round(rate, 3)


def format_rate(rate: float) -> str:
    """A data_rate for a TRC header: ``60``, ``29.97``."""
    return f'{rate:.3f}'.rstrip('0').rstrip('.') or '0'


def write_trc(track: Track, path, note: str = '') -> Path:
    """OpenSim TRC (PathFileType 4, metres); Time is seconds since the first frame.
    ``note`` is appended to the first header line (OpenSim keeps it as ``header``)."""
    if track.dims != 3:
        raise ValueError(f'{track.topic} is a 2D track; TRC needs 3D markers')
    path = Path(path)
    n_frames, n_markers = track.positions.shape[:2]
    rate = format_rate(data_rate(track.stamps_s))
    markers = [trc_marker_name(j) for j in track.joint_names]
    lines = [
        f'PathFileType\t4\t(X/Y/Z)\t{path.name}' + (f'\t{note}' if note else ''),
        'DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\t'
        'OrigDataStartFrame\tOrigNumFrames',
        f'{rate}\t{rate}\t{n_frames}\t{n_markers}\tm\t{rate}\t1\t{n_frames}',
        'Frame#\tTime\t' + '\t\t\t'.join(markers) + '\t\t',
        '\t\t' + '\t'.join(f'X{i}\tY{i}\tZ{i}' for i in range(1, n_markers + 1)),
        '',
    ]
    t0 = track.stamps_s[0] if n_frames else 0.0
    for t in range(n_frames):
        cells = [str(t + 1), f'{track.stamps_s[t] - t0:.6f}']
        for p in track.positions[t]:
            # A missing marker is NaN, not blank: OpenSim's TRC reader drops trailing blank
            # cells and refuses a frame whose last marker is missing.
            cells += ['NaN'] * 3 if not np.all(np.isfinite(p)) else [f'{v:.9g}' for v in p]
        lines.append('\t'.join(cells))
    path.write_text('\n'.join(lines) + '\n')
    return path


# ----------------------------------------------------------------------------- world tracks
# World tracks (``/<cam>/skeleton_3d/world``, ``vp3d-lift --frame world``) are REP-103:
# x forward, y left, z up, metres, absolute. OpenSim is Y up. The exports below rotate
# (right-handed, a rotation of -90 degrees about x, no mirror):
#     OpenSim X = ROS x,  OpenSim Y = ROS z,  OpenSim Z = -ROS y
# so OpenSim's X forward, Y up, Z right match ROS's forward, up and right.
OPENSIM_FROM_ROS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
OPENSIM_AXES_NOTE = ('Axes: OpenSim X = world x, Y = world z (up), Z = -world y '
                     '(world: REP-103 z up); metres, absolute')


def ros_to_opensim(points: np.ndarray) -> np.ndarray:
    """World points (..., 3), REP-103 z up -> OpenSim's Y-up axes (see OPENSIM_FROM_ROS)."""
    return np.asarray(points, dtype=np.float64) @ OPENSIM_FROM_ROS.T


def opensim_to_ros(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) @ OPENSIM_FROM_ROS


WORLD_TOPIC_SUFFIXES = ('skeleton_3d/world', 'skeleton_3d/fused')


def is_world_track(track: Track) -> bool:
    """A 3D track in a world frame (the world node's and the fusion node's topics)."""
    return track.dims == 3 and track.topic.rstrip('/').endswith(WORLD_TOPIC_SUFFIXES)


def write_world_trc(track: Track, path) -> Path:
    """TRC of a world track in OpenSim's convention (Y up, metres, absolute), the axis
    mapping in the first header line."""
    return write_trc(track._replace(positions=ros_to_opensim(track.positions)), path,
                     note=OPENSIM_AXES_NOTE)


def write_world_csv(track: Track, path) -> Path:
    """CSV (CSV_COLUMNS) of a world track in OpenSim's axes, after one ``#`` comment line
    that states the mapping (read with ``comment='#'`` in pandas)."""
    path = Path(path)
    tmp = write_csv(track._replace(positions=ros_to_opensim(track.positions)), path)
    body = tmp.read_text()
    path.write_text(f'# {OPENSIM_AXES_NOTE}\n' + body)
    return path


def _npz_prefixes(tracks: Sequence[Track]) -> List[str]:
    out, seen = [], set()
    for tr in tracks:
        base = name = tr.name
        k = 1
        while name in seen:
            name, k = f'{base}_{k}', k + 1
        seen.add(name)
        out.append(name)
    return out


def write_npz(tracks: Sequence[Track], path) -> Path:
    """Compressed npz: ``<prefix>__{positions,confidence,stamps_s,joint_names,topic,person}``
    per track (prefix = ``Track.name``, de-duplicated) plus ``tracks``, the prefixes in order."""
    path = Path(path)
    prefixes = _npz_prefixes(tracks)
    arrays = {'tracks': np.array(prefixes, dtype=str)}
    for pre, tr in zip(prefixes, tracks):
        arrays.update({f'{pre}__positions': tr.positions, f'{pre}__confidence': tr.confidence,
                       f'{pre}__stamps_s': tr.stamps_s,
                       f'{pre}__joint_names': np.array(tr.joint_names, dtype=str),
                       f'{pre}__topic': np.array(tr.topic), f'{pre}__person': np.array(tr.person)})
    with path.open('wb') as f:
        np.savez_compressed(f, **arrays)
    return path


def read_npz(path) -> List[Track]:
    with np.load(path, allow_pickle=False) as z:
        return [Track(str(z[f'{p}__topic']), int(z[f'{p}__person']),
                      tuple(str(j) for j in z[f'{p}__joint_names']), z[f'{p}__stamps_s'],
                      z[f'{p}__positions'], z[f'{p}__confidence'])
                for p in (str(x) for x in z['tracks'])]
