"""Offline inputs: a video file or the image topics of a camera bag, one
:class:`~.frames.CameraSource` per camera, named as the live rig names it."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import List, Optional, Sequence

from ...io import bag_io
from .frames import CameraSource, OfflineError

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
VIDEO_FRAME_ID = 'camera_optical_frame'  # video_source's default, for comparable bags
_NAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$')


def is_bag(path: Path) -> bool:
    return path.is_dir() or path.suffix in bag_io.SUFFIXES


def camera_name_from_file(path) -> str:
    """'balancing_cam01.mp4' -> 'cam01'; otherwise the file stem as a valid ROS name."""
    stem = Path(path).stem
    found = re.findall(r'(?i)cam(?:era)?[_-]?\d+', stem)
    name = found[-1] if found else stem
    name = re.sub(r'[^A-Za-z0-9_]+', '_', name).strip('_').lower() or 'cam'
    return name if name[0].isalpha() else f'cam_{name}'


def _check_name(name: str) -> str:
    name = name.strip('/')
    if name and not _NAME_RE.match(name):
        raise OfflineError(f'camera name {name!r} is not a valid ROS namespace (letters, digits, '
                           "'_', segments separated by '/', not starting with a digit)")
    return name


def _stamp_of(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def video_source(path: Path, camera_name: Optional[str], frame_id: Optional[str],
                 max_frames: Optional[int]) -> CameraSource:
    """A video file: stamps ``frame_index / fps`` (fps from the container)."""
    import cv2
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OfflineError(f'{path}: cannot open as a video (not a video file, or a codec '
                           'OpenCV lacks), and it is not a rosbag2 bag (.mcap/.db3 or a bag '
                           'directory)')
    ok, first = cap.read()
    if not ok or first is None:
        cap.release()
        raise OfflineError(f'{path}: the video has no decodable frames (empty video?)')
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not (math.isfinite(fps) and fps > 0):
        cap.release()
        raise OfflineError(f'{path}: the container states no frame rate; cannot stamp frames')
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    total = min(total, max_frames) if max_frames else total
    frame_id = VIDEO_FRAME_ID if frame_id is None else frame_id

    def frames():
        try:
            i, bgr = 0, first
            while bgr is not None and (not max_frames or i < max_frames):
                # Same rounding as video_source's stamp_source:=video.
                ns = int(round(i / fps * 1e9))
                yield ns, frame_id, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None
                i += 1
                ok, bgr = cap.read()
                bgr = bgr if ok else None
        finally:
            cap.release()

    name = _check_name(camera_name) if camera_name is not None else camera_name_from_file(path)
    return CameraSource(name, str(path), total, frames)


def _namespace(topic: str, msgtype: str) -> str:
    """'/cam01/image' -> 'cam01'; '/cam02/image/compressed' -> 'cam02' (image_transport)."""
    parts = [p for p in topic.split('/') if p]
    if msgtype.endswith('CompressedImage') and len(parts) > 1 and parts[-1] == 'compressed':
        parts = parts[:-1]
    return '/'.join(parts[:-1])


def bag_sources(bag, topics: Optional[Sequence[str]], camera_name: Optional[str],
                max_frames: Optional[int]) -> List[CameraSource]:
    """One source per image topic of an open BagReader (camera = the topic's namespace)."""
    available = bag.topics
    images = {t: i for t, i in available.items() if i.msgtype in IMAGE_TYPES}
    if topics:
        bad = [t for t in topics if t not in images]
        if bad:
            raise OfflineError(f'{bag.path}: {bad} are not image topics of the bag (its image '
                               f'topics: {sorted(images) or "none"})')
        images = {t: images[t] for t in topics}
    if not images:
        has = ', '.join(f'{t} [{i.msgtype}]' for t, i in available.items()) or 'no topics'
        raise OfflineError(f'{bag.path}: no sensor_msgs/Image or CompressedImage topics '
                           f'(it has {has})')
    if camera_name is not None and len(images) > 1:
        raise OfflineError(f'--camera-name names one camera but {len(images)} image topics are '
                           'selected; pick one with --topics (bag cameras are named after their '
                           'topic namespaces)')
    sources, seen = [], {}
    for topic, info in images.items():
        ns = _namespace(topic, info.msgtype)
        name = _check_name(camera_name) if camera_name is not None else ns
        if name in seen:
            raise OfflineError(f'{topic} and {seen[name]} are both camera {name!r}; choose one '
                               'with --topics')
        seen[name] = topic
        if info.count == 0:
            raise OfflineError(f'{bag.path}: image topic {topic} has no messages')
        info_topic = f'/{ns}/camera_info' if ns else '/camera_info'
        if available.get(info_topic, bag_io.TopicInfo('', 0)).msgtype != INFO_TYPE:
            info_topic = None
        total = min(info.count, max_frames) if max_frames else info.count
        sources.append(CameraSource(name, topic, total,
                                    _bag_frames(bag, topic, info_topic, max_frames)))
    return sources


def _bag_frames(bag, topic: str, info_topic: Optional[str], max_frames: Optional[int]):
    def first_info_size():
        for _, msgtype, _, raw in bag.messages([info_topic]):
            msg = bag.deserialize(raw, msgtype)
            if msg.width and msg.height:
                return int(msg.width), int(msg.height)
        return None

    def frames():
        from ...nodes.ros_conversions import (ImageConversionError, compressed_to_numpy,
                                              image_to_numpy)
        size = first_info_size() if info_topic else None
        n = 0
        wanted = [topic] + ([info_topic] if info_topic else [])
        for tpc, msgtype, log_ns, raw in bag.messages(wanted):
            msg = bag.deserialize(raw, msgtype)
            if tpc == info_topic:
                if msg.width and msg.height:
                    size = (int(msg.width), int(msg.height))
                continue
            if max_frames and n >= max_frames:
                return
            stamp = _stamp_of(msg.header) or int(log_ns)  # unstamped driver: bag time
            try:
                rgb = (compressed_to_numpy(msg) if msgtype.endswith('CompressedImage')
                       else image_to_numpy(msg))
            except ImageConversionError as e:
                raise OfflineError(f'{topic}: image {n} (stamp {stamp} ns) cannot be decoded: '
                                   f'{e}') from None
            h, w = rgb.shape[:2]
            if size is not None and size != (w, h):
                raise OfflineError(f'{topic}: image {n} is {w}x{h} but {info_topic} says '
                                   f'{size[0]}x{size[1]}; keypoints would be normalised at a '
                                   'wrong scale (the live lifter refuses such frames too)')
            yield stamp, msg.header.frame_id, rgb, size
            n += 1
    return frames
