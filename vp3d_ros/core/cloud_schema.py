"""The point layouts of the package's keypoint and skeleton clouds (sensor_msgs/PointCloud2).

One point per joint per person. Every field is FLOAT32 (``sensor_msgs_py.point_cloud2.
read_points_numpy`` requires one datatype for all fields), little-endian, packed with no
padding, ``height = 1``, ``width = persons * joints``, ``is_dense = True``. Points are
ordered by person, then joint (the layout's joint order).

- keypoints_2d: x, y (pixels, image frame), confidence, joint, person
- skeleton_3d:  x, y, z (metres, camera optical frame, root-relative), confidence, joint, person

This module is pure numpy: it turns arrays into the cloud's byte payload and back, so
the nodes (via ``ros_conversions``), the bag tools and the exporters share one layout.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Sequence, Tuple

import numpy as np

FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32
FIELDS_2D: Tuple[str, ...] = ('x', 'y', 'confidence', 'joint', 'person')
FIELDS_3D: Tuple[str, ...] = ('x', 'y', 'z', 'confidence', 'joint', 'person')


class CloudLayout(NamedTuple):
    names: Tuple[str, ...]
    offsets: Tuple[int, ...]
    point_step: int


def layout_for(dims: int) -> CloudLayout:
    names = FIELDS_2D if dims == 2 else FIELDS_3D if dims == 3 else None
    if names is None:
        raise ValueError(f'keypoint clouds are 2D or 3D, not {dims}D')
    return CloudLayout(names, tuple(4 * i for i in range(len(names))), 4 * len(names))


def pack(points: np.ndarray, confidence: np.ndarray, person_ids: Sequence[int] = None) -> bytes:
    """(P, J, D) positions + (P, J) confidences -> cloud payload bytes (D = 2 or 3)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 2:
        points = points[None]
        confidence = np.asarray(confidence)[None]
    p, j, d = points.shape
    confidence = np.asarray(confidence, dtype=np.float64).reshape(p, j)
    if person_ids is None:
        person_ids = range(p)
    person_ids = np.asarray(list(person_ids), dtype=np.float64)
    if len(person_ids) != p:
        raise ValueError(f'{len(person_ids)} person ids for {p} persons')
    layout = layout_for(d)
    table = np.empty((p, j, len(layout.names)), dtype='<f4')
    table[..., :d] = points
    table[..., d] = confidence
    table[..., d + 1] = np.arange(j)[None, :]
    table[..., d + 2] = person_ids[:, None]
    return table.tobytes()


class CloudBody(NamedTuple):
    """A keypoint cloud but its header, for any PointCloud2 class (rclpy's for the nodes,
    rosbags' for the offline writer): the one place clouds are built."""
    width: int
    fields: Tuple[Tuple[str, int], ...]   # (name, offset), all FLOAT32, count 1
    point_step: int
    data: bytes

    @property
    def row_step(self) -> int:
        return self.point_step * self.width


def build(points: np.ndarray, confidence: np.ndarray, person_ids: Sequence[int] = None
          ) -> CloudBody:
    """(P, J, D) or (J, D) keypoints + confidences -> the cloud's layout and payload."""
    points = np.asarray(points, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    if points.ndim == 2:
        points, confidence = points[None], confidence[None]
    if points.ndim != 3:
        raise ValueError(f'points must be (P, J, D), got {points.shape}')
    p, j, d = points.shape
    if confidence.shape != (p, j):
        raise ValueError(f'confidence shape {confidence.shape} does not match points ({p}, {j})')
    layout = layout_for(d)
    return CloudBody(p * j, tuple(zip(layout.names, layout.offsets)), layout.point_step,
                     pack(points, confidence, person_ids))


class Persons(dict):
    """{person_id: (positions, confidence)}; ``total``: persons in the cloud, including
    those left out by ``max_persons``."""
    total = 0


def unpack(data: bytes, field_names: Sequence[str], field_offsets: Sequence[int],
           point_step: int, num_points: int, num_joints: int = None,
           max_persons: int = None) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
    """Cloud payload -> {person_id: (positions (J, D), confidence (J,))}.

    Accepts any FLOAT32 field order/offsets (not only ours), checks that the named fields
    exist once each and that the payload length fits; joints come back in joint-index order.
    Points are grouped by person with one sort (cost linear-logarithmic in the points, not
    points x persons: 150,000 one-joint persons took 8 s with a scan per person).
    ``max_persons``: keep only the most confident that many persons (sum of confidences),
    chosen before any per-person work, so a flood of ids costs one sort.
    """
    names = list(field_names)
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:  # which one would be read? refuse rather than guess
        raise ValueError(f'cloud has duplicated fields {dups} (fields {names})')
    dims = 3 if 'z' in names else 2
    needed = list(layout_for(dims).names)
    missing = [n for n in needed if n not in names]
    if missing:
        raise ValueError(f'cloud lacks fields {missing} (has {names})')
    if num_points * point_step > len(data):
        raise ValueError(f'cloud payload has {len(data)} bytes, expected '
                         f'{num_points} x {point_step}')
    if num_points == 0:
        return Persons()
    layout = layout_for(dims)
    if tuple(names) == layout.names and tuple(field_offsets) == layout.offsets and \
            point_step == layout.point_step:   # our own layout: one read, no per-field copy
        table = np.frombuffer(data, dtype='<f4', count=num_points * len(names))
        table = table.reshape(num_points, len(names)).astype(np.float64)
        cols = {n: table[:, i] for i, n in enumerate(names)}
    else:
        raw = np.frombuffer(bytes(data[:num_points * point_step]), dtype=np.uint8)
        raw = raw.reshape(num_points, point_step)
        cols = {}
        for n in needed:
            off = field_offsets[names.index(n)]
            cols[n] = raw[:, off:off + 4].copy().view('<f4').reshape(-1).astype(np.float64)
    pos = np.stack([cols[a] for a in ('x', 'y', 'z')[:dims]], axis=-1)
    joint = cols['joint']
    person = cols['person']
    if not (np.all(np.isfinite(joint)) and np.all(np.isfinite(person))):
        raise ValueError('joint/person indices are not finite')
    conf = cols['confidence']
    if person[0] == person[-1] and np.all(person == person[0]):   # one person: no sort
        order = np.arange(num_points)
        pids, starts, counts = person[:1], np.zeros(1, int), np.array([num_points])
    else:
        order = np.argsort(person, kind='stable')
        pids, starts, counts = np.unique(person[order], return_index=True, return_counts=True)
    total = len(pids)
    if max_persons is not None and len(pids) > max_persons:
        weight = np.add.reduceat(np.nan_to_num(conf[order], nan=0.0, posinf=0.0, neginf=0.0),
                                 starts)
        keep = np.sort(np.argsort(-weight, kind='stable')[:max_persons])
        pids, starts, counts = pids[keep], starts[keep], counts[keep]
    out = Persons()
    out.total = total
    for pid, start, count in zip(pids, starts, counts):
        sel = order[start:start + count]
        jidx = joint[sel].astype(int)
        n = num_joints if num_joints is not None else int(jidx.max()) + 1
        if len(jidx) and (jidx.min() < 0 or jidx.max() >= n or (  # distinct joints:
                np.count_nonzero(np.bincount(jidx)) if n <= 4096 else len(np.unique(jidx))
        ) != len(jidx)):
            shown = sorted(jidx.tolist())
            shown = shown if len(shown) <= 40 else shown[:40] + ['...']
            raise ValueError(f'person {int(pid)}: joint indices {shown} are not '
                             f'a set of distinct joints in [0, {n})')
        p_arr = np.full((n, dims), np.nan)
        c_arr = np.zeros(n)
        p_arr[jidx] = pos[sel]
        c_arr[jidx] = conf[sel]
        out[int(pid)] = (p_arr, c_arr)
    return out
