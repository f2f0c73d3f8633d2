"""The offline run's LandmarkRecord bag: the live recorder's topics and clouds, written
under a hidden sibling and renamed into place when complete."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ...io import bag_io
from .frames import CameraResult, OfflineError

CLOUD_TYPE = 'sensor_msgs/msg/PointCloud2'


def check_out(out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise OfflineError(f'{out} already exists; bags are never overwritten (choose --out)')
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise OfflineError(f'cannot create {out}: {parent} is not a directory')


def _cloud_bytes(points, confidence, ids, stamp_ns: int, frame_id: str) -> bytes:
    from ...io.records import make_cloud
    msg = make_cloud(points, confidence, ids, stamp_ns, frame_id)
    return bytes(bag_io.typestore().serialize_cdr(msg, CLOUD_TYPE))


def _messages(cameras: Sequence[CameraResult], layout_joints: int, world_frame: str = 'world',
              fused=None):
    """(stamp, topic, payload builder) for every output message, in stamp order."""
    entries = []
    for ci, cam in enumerate(cameras):
        prefix = f'/{cam.name}/' if cam.name else '/'
        frame_ids = {}
        for k, fr in enumerate(cam.frames):
            frame_ids[fr.stamp_ns] = fr.frame_id
            ids = sorted(fr.people)
            pts = np.array([fr.people[i][0] for i in ids]).reshape(len(ids), layout_joints, 2)
            conf = np.array([fr.people[i][1] for i in ids]).reshape(len(ids), layout_joints)
            entries.append((fr.stamp_ns, ci, 0, k, prefix + 'keypoints_2d',
                            (pts, conf, ids, fr.stamp_ns, fr.frame_id)))
        for stamp, by_id in cam.poses.items():
            ids = sorted(by_id)
            pts = np.array([by_id[i].pose for i in ids]).reshape(len(ids), 17, 3)
            conf = np.array([by_id[i].confidence for i in ids]).reshape(len(ids), 17)
            entries.append((stamp, ci, 1, 0, prefix + 'skeleton_3d',
                            (pts, conf, ids, stamp, frame_ids.get(stamp, ''))))
        for stamp, by_id in cam.world.items():
            ids = sorted(by_id)
            pts = np.array([by_id[i][0] for i in ids]).reshape(len(ids), 17, 3)
            conf = np.array([by_id[i][1] for i in ids]).reshape(len(ids), 17)
            entries.append((stamp, ci, 2, 0, prefix + 'skeleton_3d/world',
                            (pts, conf, ids, stamp, cam.world_frame or world_frame)))
    for stamp, by_id in (fused or {}).items():
        ids = sorted(by_id)
        pts = np.array([by_id[i][0] for i in ids]).reshape(len(ids), 17, 3)
        conf = np.array([by_id[i][1] for i in ids]).reshape(len(ids), 17)
        entries.append((stamp, len(cameras), 3, 0, '/skeleton_3d/fused',
                        (pts, conf, ids, stamp, world_frame)))
    entries.sort(key=lambda e: e[:4])
    for stamp, _, _, _, topic, args in entries:
        yield stamp, topic, args


def write_bag(out: Path, storage: str, metadata: dict, cameras: Sequence[CameraResult],
              layout_joints: int, world_frame: str = 'world', fused=None) -> None:
    """Write under a hidden sibling, rename into place when complete; remove on failure."""
    check_out(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.partial-', dir=out.parent))
    except OSError as e:
        raise OfflineError(f'cannot write under {out.parent}: {e}') from None
    try:
        with bag_io.BagWriter(tmp / out.name, storage=storage, metadata=metadata,
                              flush_interval_s=3600.0) as writer:
            for cam in cameras:
                prefix = f'/{cam.name}/' if cam.name else '/'
                writer.add_topic(prefix + 'keypoints_2d', CLOUD_TYPE)
                writer.add_topic(prefix + 'skeleton_3d', CLOUD_TYPE)
                if cam.world:
                    writer.add_topic(prefix + 'skeleton_3d/world', CLOUD_TYPE)
            if fused:
                writer.add_topic('/skeleton_3d/fused', CLOUD_TYPE)
            for stamp, topic, args in _messages(cameras, layout_joints, world_frame, fused):
                writer.write(topic, stamp, _cloud_bytes(*args))
        os.rename(tmp / out.name, out)
        tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
