"""Offline path: a video file or a camera bag -> a LandmarkRecord bag, every frame.

Why it exists: live, pose2d drops the frames it cannot keep up with and the lifter never
sees more future than its window. Offline, MediaPipe runs on every frame (video mode,
timestamps from the stamps) and each (camera, person) track is lifted whole with
:class:`~vp3d_ros.core.lifter.SequenceLifter`, with full past and future context.

Gap rules are the live ones because the live engine is reused
(:class:`~vp3d_ros.core.engine.LiftingEngine`): every track is a
:class:`~vp3d_ros.core.windowing.TrackWindow` driving a
:class:`~vp3d_ros.core.lifter.SegmentLifter` (the streaming interface, but lifting each
segment in one pass when the window ends it).
So bridging, weak joints, splits and stamps are the live lifter's, and its symmetric output
is reproduced to float precision. The 2D keypoints are lifted as float32, exactly as the
lifter node reads them from the ``keypoints_2d`` cloud.

Output is what the live recorder stores: ``/<cam>/keypoints_2d`` (every frame, an empty
cloud when nobody is seen) and ``/<cam>/skeleton_3d`` (one cloud per frame with a pose),
sensor_msgs/PointCloud2 in the ``cloud_schema`` layout, header = the source frame's stamp
and frame_id, bag time = header stamp, ``bag_io.recording_metadata``. Messages are
serialised with rosbags (byte-identical to rclpy's), so this module imports without rclpy;
``ros_conversions`` is imported only to decode bag images. The bag is written under a
hidden sibling directory and renamed into place when complete; on failure it is removed.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..core.engine import LiftingEngine
from ..core.options import OFFLINE_LIFTER, LifterOptions, PoseOptions
from ..core.track_rules import DEFAULT as RULES, TrackRules
from ..core.windowing import LiftedPose
from ..geometry.calibration import CalibrationError
from ..io import bag_io

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
CLOUD_TYPE = 'sensor_msgs/msg/PointCloud2'
VIDEO_FRAME_ID = 'camera_optical_frame'  # video_source's default, for comparable bags
PRODUCER = 'vp3d-offline'
_NAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$')


class OfflineError(ValueError):
    """Input or configuration the offline path cannot use; the message says what to fix."""


@dataclass
class OfflineSummary:
    frames: int
    persons: int
    frames_without_person: int
    seconds: float
    fps: float
    cameras: List[str]
    out: str
    checkpoint: str
    swaps_repaired: Dict[str, int] = field(default_factory=dict)  # camera -> limb-frames
    grounds: Dict[str, str] = field(default_factory=dict)  # camera -> estimated ground, said

    def line(self) -> str:
        swaps = ', '.join(f'{c or "camera"} {n}' for c, n in self.swaps_repaired.items() if n)
        return (f'{self.frames} frames ({len(self.cameras)} camera'
                f'{"s" if len(self.cameras) != 1 else ""}: {", ".join(self.cameras) or "/"}), '
                f'{self.persons} person{"s" if self.persons != 1 else ""} found, '
                f'{self.frames_without_person} frames without a person, '
                + (f'left/right labels traded back in {swaps} limb-frames (repair_swaps), '
                   if swaps else '')
                + ''.join(f'{c or "camera"}: {g}, ' for c, g in self.grounds.items())
                + f'{self.seconds:.1f} s, {self.fps:.1f} frames/s -> {self.out}')


@dataclass
class Frame2D:
    """One processed frame of one camera, as its keypoints_2d cloud carries it."""
    stamp_ns: int
    frame_id: str
    size: Tuple[int, int]  # (width, height) used to normalise keypoints
    people: Dict[int, Tuple[np.ndarray, np.ndarray]]  # id -> (J, 2) px, (J,) confidence


@dataclass
class CameraSource:
    """One camera of the input: its name and an iterator over decoded frames."""
    name: str
    label: str  # file or topic, for messages
    total: int  # expected frame count (progress only; 0 = unknown)
    frames: Callable[[], Iterator[Tuple[int, str, np.ndarray, Optional[Tuple[int, int]]]]]


@dataclass
class CameraResult:
    name: str
    frames: List[Frame2D]
    poses: Dict[int, Dict[int, LiftedPose]] = field(default_factory=dict)  # stamp -> id -> pose
    swaps_2d: int = 0       # limb-frames whose left/right labels the 2D stage traded back
    swaps_lifted: int = 0   # ... and the lifting engine (2D from elsewhere: a bag's keypoints)
    # With a calibration: stamp -> id -> (world positions (17, 3), confidence (17,))
    world: Dict[int, Dict[int, Tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    world_frame: str = ''   # frame_id of ``world`` where it is not the rig's (estimated ground)


# -- progress ------------------------------------------------------------------------------
class Progress:
    """A one-line \\r progress display on a terminal (nothing when the stream is not a tty)."""

    def __init__(self, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.on = bool(enabled) and bool(getattr(self.stream, 'isatty', lambda: False)())
        self._last = 0.0
        self._width = 0

    def update(self, label: str, done: int, total: int, fps: float, force: bool = False):
        if not self.on:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        if total:
            frac = min(1.0, done / total)
            bar = '#' * int(24 * frac) + '-' * (24 - int(24 * frac))
            eta = f' ETA {max(0.0, total - done) / fps:.0f} s' if fps > 0 else ''
            text = f'{label} [{bar}] {done}/{total} frames {fps:.1f} fps{eta}'
        else:
            text = f'{label} {done} frames {fps:.1f} fps'
        self.stream.write('\r' + text.ljust(self._width))
        self._width = len(text)
        self.stream.flush()

    def close(self):
        if self.on and self._width:
            self.stream.write('\r' + ' ' * self._width + '\r')
            self.stream.flush()
            self._width = 0


# -- inputs --------------------------------------------------------------------------------
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
        from ..nodes.ros_conversions import ImageConversionError, compressed_to_numpy, image_to_numpy
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


# -- 2D ------------------------------------------------------------------------------------
def detect_2d(source: CameraSource, make_estimator: Callable[[], object], layout: str,
              on_frame: Callable[[int], None] = lambda n: None,
              make_tracking: Optional[Callable[[], object]] = None,
              repair_swaps: bool = RULES.repair_swaps,
              counts: Optional[dict] = None) -> List[Frame2D]:
    """MediaPipe on every frame through pose2d's own 2D stage
    (:class:`~vp3d_ros.vision.pose_stage.PoseStage`: mapping, person tracking, restarts,
    left/right swaps traded back; ``make_tracking`` builds a
    :class:`~vp3d_ros.core.tracking.PeopleTracking`, default all persons), keypoints rounded
    to the cloud's float32; ``counts``, if given, receives ``swaps_repaired``."""
    from ..vision.pose_stage import PoseStage
    from ..core.tracking import PeopleTracking
    out: List[Frame2D] = []
    stage = PoseStage(make_estimator, layout, (make_tracking or PeopleTracking)(),
                      repair_swaps=repair_swaps)
    try:
        for stamp, frame_id, rgb, info_size in source.frames():
            det = stage.process(rgb, stamp, info_size)
            kp = det.keypoints.astype(np.float32).astype(np.float64)
            conf = det.confidence.astype(np.float32).astype(np.float64)
            out.append(Frame2D(int(stamp), frame_id, info_size or det.size,
                               {i: (kp[k], conf[k]) for k, i in enumerate(det.ids)}))
            on_frame(len(out))
    finally:
        stage.close()
    if counts is not None:
        counts['swaps_repaired'] = stage.swaps.repaired if stage.swaps is not None else 0
    return out


# -- lifting -------------------------------------------------------------------------------
def lift_frames(frames: Sequence[Frame2D], lifter, rules: TrackRules = RULES,
                chunk: int = 8192, make_view=None, counts: Optional[dict] = None
                ) -> Dict[int, Dict[int, LiftedPose]]:
    """Every person track of one camera -> {stamp: {person: pose}}: the live engine's
    tracks and gap rules, each segment lifted in one pass (:class:`SegmentLifter`);
    ``make_view``: (width, height) -> the view to lift through
    (``geometry.view.level_view_factory``); ``counts``, if given, receives
    ``swaps_repaired``."""
    from ..core.lifter import SegmentLifter
    engine = LiftingEngine([lambda w, h: SegmentLifter(lifter, w, h, chunk)], [''], rules,
                           views={'': make_view} if make_view else None)
    out: Dict[int, Dict[int, LiftedPose]] = {}

    def keep(ready):
        for r in ready:
            for pid, poses in r.poses.items():
                for lp in poses:
                    out.setdefault(lp.stamp_ns, {})[pid] = lp

    for fr in frames:  # stamps made increasing by the 2D stage: no stamp rules to apply
        engine.add('', fr.stamp_ns, fr.people, fr.size)
        keep(engine.lift_due())
    keep(engine.finish())
    if counts is not None:
        counts['swaps_repaired'] = engine.swaps_repaired
    return out


def _calibrated(rig, name: str):
    """The calibrated camera of a camera name (the only one of a one-camera calibration)."""
    from ..geometry.calibration import find_camera
    try:
        return find_camera(rig, name) if (name or len(rig) != 1) else next(iter(rig.values()))
    except CalibrationError as e:
        if len(rig) != 1:
            raise OfflineError(f'camera {name!r}: {e}') from None
        return next(iter(rig.values()))


def _subject_poses(cam: CameraResult, layout: str, max_gap_s: float):
    """Without a calibration: (a camera of guessed intrinsics, focal = the long image side;
    the longest-seen person's lifted skeletons placed through it, camera frame) or None
    when the frames have several sizes or nobody was lifted."""
    from ..geometry.calibration import guessed_camera
    sizes = {fr.size for fr in cam.frames}
    if len(sizes) != 1 or not cam.poses:
        return None
    camera = guessed_camera(*next(iter(sizes)), name=cam.name or 'camera')
    placed = place_in_world(cam, camera, layout, floor_z=None, max_gap_s=max_gap_s)
    seen: Dict[int, int] = {}
    for by_id in placed.values():
        for pid in by_id:
            seen[pid] = seen.get(pid, 0) + 1
    pid = max(seen, key=seen.get, default=None)
    if pid is None:
        return None
    return camera, np.stack([placed[s][pid][0] for s in sorted(placed) if pid in placed[s]])


def _subject_view(cam: CameraResult, layout: str, max_gap_s: float):
    """Without a calibration: (width, height) -> the level view with gravity from the
    subject (``geometry.view.subject_level_view`` on :func:`_subject_poses`), or None when
    the skeletons cannot tell."""
    from ..geometry.view import subject_level_view
    got = _subject_poses(cam, layout, max_gap_s)
    view = subject_level_view(got[1], got[0], layout) if got is not None else None
    if view is None:
        return None
    size = got[0].size
    return lambda w, h: view if (int(w), int(h)) == tuple(size) else None


def subject_ground(cam: CameraResult, layout: str, max_gap_s: float = RULES.max_gap_s):
    """Without a calibration: the floor and gravity from the subject
    (:func:`vp3d_ros.geometry.world.estimate_ground` on :func:`_subject_poses`, as
    ``vp3d-lift --frame world`` does), or None when nobody was lifted. Its ``camera`` maps
    a world frame of this camera's own (REP-103: x along the optical axis on the floor,
    y left, z up, origin on the floor under the camera) into the camera."""
    from ..geometry.world import estimate_ground
    got = _subject_poses(cam, layout, max_gap_s)
    if got is None:
        return None
    camera, poses = got
    try:
        return estimate_ground(poses, camera.name, camera.K, camera.size)
    except ValueError:
        return None


def lift_camera(cam: CameraResult, lifter, layout: str, rules: TrackRules = RULES,
                camera=None, level_view: bool = True) -> str:
    """Lift one camera's frames into ``cam.poses`` as vp3d-offline does, and say how its
    view was had: ``'calibration'`` (the calibrated ``camera``'s level view), ``'subject'``
    (no calibration: a plain lift, then again in the level view of the subject's up,
    :func:`_subject_view`) or ``'none'`` (the pixels as they are: ``level_view`` off, or no
    view to be had). Raises ``CalibrationError`` for an image size the calibration does
    not fit."""
    from ..geometry.view import level_view_factory
    view = level_view_factory(camera, layout) if camera is not None and level_view else None
    counts: dict = {}
    cam.poses = lift_frames(cam.frames, lifter, rules, make_view=view, counts=counts)
    how = 'calibration' if view is not None else 'none'
    if camera is None and level_view:   # up from the subject, then lifted again
        view = _subject_view(cam, layout, rules.max_gap_s)
        if view is not None:
            cam.poses = lift_frames(cam.frames, lifter, rules, make_view=view, counts=counts)
            how = 'subject'
    cam.swaps_lifted = counts['swaps_repaired']
    return how


def place_in_world(cam: CameraResult, camera, layout: str,
                   subject_height_m: Optional[float] = None, floor_z: Optional[float] = 0.0,
                   max_gap_s: float = RULES.max_gap_s
                   ) -> Dict[int, Dict[int, Tuple[np.ndarray, np.ndarray]]]:
    """Each person's lifted track of one camera in the calibration's world
    (:mod:`vp3d_ros.geometry.world`, offline: zero-phase smoothing, the floor cue), one
    segment per run of poses without a gap longer than ``max_gap_s``."""
    from ..geometry import world as W
    kp_at = {fr.stamp_ns: fr for fr in cam.frames}
    sizes = {fr.size for fr in cam.frames}
    if len(sizes) == 1:
        camera = camera.with_image_size(*next(iter(sizes)))
    out: Dict[int, Dict[int, Tuple[np.ndarray, np.ndarray]]] = {}
    pids = sorted({pid for by_id in cam.poses.values() for pid in by_id})
    for pid in pids:
        stamps = sorted(s for s, by_id in cam.poses.items() if pid in by_id)
        cuts = [0] + [i for i in range(1, len(stamps))
                      if stamps[i] - stamps[i - 1] > max_gap_s * 1e9] + [len(stamps)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            seg = stamps[a:b]
            rel = np.stack([cam.poses[s][pid].pose for s in seg]).astype(np.float64)
            conf3 = np.stack([cam.poses[s][pid].confidence for s in seg])
            kp = np.full((len(seg), 17, 2), np.nan)
            w = np.zeros((len(seg), 17))
            for i, s in enumerate(seg):
                fr = kp_at.get(s)
                if fr is None or pid not in fr.people:
                    continue
                k, c = fr.people[pid]
                if layout == 'coco':
                    k, c = W.coco_to_h36m_2d(k, c)
                kp[i], w[i] = k, c
            fps = 1e9 / np.median(np.diff(seg)) if len(seg) > 1 else 30.0
            pl = W.place_skeletons(rel, kp, camera, w, subject_height_m, fps,
                                   floor_z=floor_z)
            world = W.to_world(pl.poses_cam, camera)
            for i, s in enumerate(seg):
                if np.isfinite(world[i]).all():
                    out.setdefault(s, {})[pid] = (world[i], conf3[i])
    return out


def fuse_in_world(cameras: Sequence[CameraResult], models, layout: str,
                  max_gap_s: float = RULES.max_gap_s
                  ) -> Dict[int, Dict[int, Tuple[np.ndarray, np.ndarray]]]:
    """One world skeleton per person from all cameras (:mod:`vp3d_ros.geometry.fusion`):
    frames of one instant grouped by stamp (within 0.4 of a frame period), persons matched
    across cameras, each person's track triangulated with outlier-view rejection, its gaps
    filled from the cameras' lifted skeletons, zero-phase smoothed. ``models``: one calibrated
    camera per entry of ``cameras``. -> {instant stamp: {person: (17x3 world, 17 conf)}}."""
    from ..geometry import fusion as F
    from ..geometry import world as W
    from ..core.instants import InstantGrouper
    names = [str(i) for i in range(len(cameras))]
    sizes = [{fr.size for fr in cam.frames} for cam in cameras]
    models = [m.with_image_size(*next(iter(sz))) if len(sz) == 1 else m
              for m, sz in zip(models, sizes)]
    stamps = sorted({fr.stamp_ns for cam in cameras for fr in cam.frames})
    period = float(np.median(np.diff(stamps))) if len(stamps) > 1 else 1e9 / 30
    periods = [np.median(np.diff([fr.stamp_ns for fr in cam.frames]))
               for cam in cameras if len(cam.frames) > 1]
    period = float(min(periods)) if periods else period
    grouper = InstantGrouper(names, 0.4 * period * 1e-9, float('inf'))
    events = sorted((fr.stamp_ns, c, fr) for c, cam in enumerate(cameras) for fr in cam.frames)
    instants = []
    for ns, c, fr in events:
        instants += grouper.add(names[c], ns, fr, 0.0)
    instants += grouper.flush()

    def kp_of(fr, pid):
        k, w = fr.people[pid]
        if layout == 'coco':
            k, w = W.coco_to_h36m_2d(k, w)
        return np.concatenate([k, np.asarray(w)[:, None]], -1)

    # persons across cameras, then across instants (nearest root within 0.5 m)
    tracks: Dict[int, list] = {}   # fused id -> [(instant index, {camera: pid})]
    last_root: Dict[int, Tuple[int, np.ndarray]] = {}
    for i, inst in enumerate(instants):
        people = [{pid: kp_of(inst.frames[n], pid) for pid in inst.frames[n].people}
                  if n in inst.frames else {} for n in names]
        for group in F.associate(models, people):
            kp = np.full((len(names), 17, 3), np.nan)
            for c, pid in group.items():
                kp[c] = people[c][pid]
            X = F.triangulate(models, kp)
            ok = np.all(np.isfinite(X), -1)
            if not ok.any():
                continue
            root = X[0] if ok[0] else X[ok].mean(0)
            near = [(np.linalg.norm(r - root), f) for f, (j, r) in last_root.items()
                    if j < i and (instants[i].stamp_ns - instants[j].stamp_ns) <= max_gap_s * 1e9]
            fid = min(near)[1] if near and min(near)[0] < 0.5 else len(tracks)
            tracks.setdefault(fid, []).append((i, group))
            last_root[fid] = (i, root)
    out: Dict[int, Dict[int, Tuple[np.ndarray, np.ndarray]]] = {}
    for fid, members in tracks.items():
        idx = [i for i, _ in members]
        kp = np.full((len(names), len(idx), 17, 3), np.nan)
        lifted = [np.full((len(idx), 17, 3), np.nan) for _ in names]
        for k, (i, group) in enumerate(members):
            inst = instants[i]
            for c, pid in group.items():
                kp[c, k] = kp_of(inst.frames[names[c]], pid)
                pose = cameras[c].poses.get(inst.stamps[names[c]], {}).get(pid)
                if pose is not None:
                    lifted[c][k] = pose.pose
        lifted = [p if np.isfinite(p).any() else None for p in lifted]
        fps = 1e9 / period
        fused = F.fuse_sequence(models, kp, fps, lifted)
        views = fused.views
        for k, i in enumerate(idx):
            if np.isfinite(fused.points[k]).all():
                conf = np.where(fused.filled[k], 0.3, 0.5 + 0.5 * np.minimum(views[k], 4) / 4)
                out.setdefault(instants[i].stamp_ns, {})[fid] = (fused.points[k], conf)
    return out


# -- output --------------------------------------------------------------------------------
def _cloud_bytes(points, confidence, ids, stamp_ns: int, frame_id: str) -> bytes:
    from ..io.records import make_cloud
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


def _check_out(out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise OfflineError(f'{out} already exists; bags are never overwritten (choose --out)')
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise OfflineError(f'cannot create {out}: {parent} is not a directory')


def write_bag(out: Path, storage: str, metadata: dict, cameras: Sequence[CameraResult],
              layout_joints: int, world_frame: str = 'world', fused=None) -> None:
    """Write under a hidden sibling, rename into place when complete; remove on failure."""
    _check_out(out)
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


# -- API -----------------------------------------------------------------------------------
def _is_bag(path: Path) -> bool:
    return path.is_dir() or path.suffix in bag_io.SUFFIXES


def process(input_path, out_bag, *, lifter: LifterOptions = OFFLINE_LIFTER,
            rules: TrackRules = RULES, pose: PoseOptions = PoseOptions(), storage: str = 'mcap',
            topics: Optional[Sequence[str]] = None,
            camera_name: Optional[str] = None, frame_id: Optional[str] = None,
            max_frames: Optional[int] = None, progress: bool = False,
            calibration: Optional[str] = None, subject_height_m: Optional[float] = None,
            world_frame: str = 'world', floor_z: Optional[float] = 0.0,
            estimate_ground: bool = False) -> OfflineSummary:
    """Video file or camera bag -> LandmarkRecord bag at ``out_bag``; raises OfflineError.

    ``lifter``: which model and how (the lifter node's options; offline the shipped
    symmetric model by default); ``rules``: the gap rules of the live lifter.

    ``calibration``: also ``/<cam>/skeleton_3d/world`` (absolute, the calibration's world
    frame, ``frame_id`` = ``world_frame``), each camera matched by name (the only camera of
    a one-camera calibration otherwise); ``subject_height_m`` scales the skeletons,
    ``floor_z`` is the world's floor height (``None``: no floor cue).

    ``estimate_ground`` (no calibration): also ``/<cam>/skeleton_3d/world``, each camera in
    a ground frame of its own that the subject tells (:func:`subject_ground`, ``frame_id``
    ``<cam>_ground``), as ``vp3d-lift --frame world`` does: what ``vp3d-kinematics`` needs
    from one uncalibrated camera.

    ``pose``: MediaPipe and person tracking, as the pose2d node's parameters."""
    from ..core.checkpoint import CheckpointError
    from ..core.lifter import SequenceLifter
    from ..core.lifter_config import model_provenance

    t0 = time.perf_counter()
    several = isinstance(input_path, (list, tuple))
    inputs = [Path(p) for p in input_path] if several else [Path(input_path)]
    if not inputs:
        raise OfflineError('no input given')
    src, out = inputs[0], Path(out_bag)
    mode, flip, device = lifter.mode, lifter.flip, lifter.device
    if lifter.trajectory:
        raise OfflineError('trajectory: offline skeletons are root-relative in the camera and '
                           'placed in the world with --calibration; the trajectory model is '
                           'for vp3d-lift and the lifter node')
    max_gap_s = rules.max_gap_s
    if storage not in bag_io.STORAGES:
        raise OfflineError(f"storage must be 'mcap' or 'sqlite3', not {storage!r}")
    if max_frames is not None and max_frames < 0:
        raise OfflineError(f'max_frames must be >= 0, got {max_frames}')
    for path in inputs:
        if not path.exists():
            raise OfflineError(f'{path}: no such file or directory')
        if not os.access(path, os.R_OK):
            raise OfflineError(f'{path}: not readable (permissions)')
    if len(inputs) > 1:
        if any(_is_bag(p) for p in inputs):
            raise OfflineError('several inputs must all be video files, one per synchronised '
                               'camera (a multi-camera bag is given on its own)')
        if camera_name:
            raise OfflineError('--camera-name applies to a single input; several videos are '
                               'named from their files (balancing_cam01.mp4 -> cam01)')
    _check_out(out)
    if estimate_ground and calibration:
        raise OfflineError('estimate_ground is for cameras without a calibration: with '
                           '--calibration the world is the calibration\'s')
    if subject_height_m is not None and not 0.5 <= subject_height_m <= 2.8:
        raise OfflineError('subject height is the standing height in metres (0.5 to 2.8), '
                           f'got {subject_height_m:g}')
    rig = None
    if calibration:
        from ..geometry.calibration import load_calibration
        try:
            rig = load_calibration(calibration)
        except CalibrationError as e:
            raise OfflineError(str(e)) from None
    try:
        pose.tracking()  # refuse a bad subject or gate before any work
    except ValueError as e:
        raise OfflineError(str(e)) from None
    try:
        ckpt, layout = lifter.resolve()
        seq = SequenceLifter(ckpt.build(device), input_layout=layout, flip=flip, device=device)
    except (CheckpointError, ValueError) as e:
        raise OfflineError(f'lifter: {e}') from None

    bag = None
    try:
        if len(inputs) > 1:
            sources = [video_source(p, None, frame_id, max_frames or None) for p in inputs]
            names = [s_.name for s_ in sources]
            if len(set(names)) != len(names):
                raise OfflineError(f'the videos give camera names {names}: each camera needs its '
                                   'own (name the files ..._cam01.mp4, ..._cam02.mp4, ...)')
        elif _is_bag(src):
            try:
                bag = bag_io.open_bag(src)
            except bag_io.BagError as e:
                raise OfflineError(str(e)) from None
            sources = bag_sources(bag, topics, camera_name, max_frames or None)
        else:
            if topics:
                raise OfflineError('--topics applies to bags, not to video files')
            sources = [video_source(src, camera_name, frame_id, max_frames or None)]
        cameras = _run_pose(sources, layout, progress, pose.tracking, rules.repair_swaps,
                            **pose.estimator_args())
    except bag_io.BagError as e:
        raise OfflineError(f'{src}: {e}') from None
    finally:
        if bag is not None:
            bag.close()

    models = [_calibrated(rig, cam.name) for cam in cameras] if rig is not None else []
    level = {}   # camera -> how its level view was had
    for i, cam in enumerate(cameras):
        try:
            level[cam.name] = lift_camera(cam, seq, layout, rules,
                                          models[i] if models else None, lifter.level_view)
        except CalibrationError as e:
            raise OfflineError(f'camera {cam.name!r}: {e}') from None
    fused = None
    if rig is not None:
        for cam, model in zip(cameras, models):
            try:
                cam.world = place_in_world(cam, model, layout, subject_height_m, floor_z,
                                           max_gap_s)
            except CalibrationError as e:
                raise OfflineError(f'camera {cam.name!r}: {e}') from None
        if len(cameras) >= 2:   # one fused world skeleton per person from all cameras
            try:
                fused = fuse_in_world(cameras, models, layout, max_gap_s)
            except CalibrationError as e:
                raise OfflineError(f'fusion: {e}') from None
    grounds = {}   # camera -> how its estimated ground is said
    if estimate_ground:
        for cam in cameras:
            g = subject_ground(cam, layout, max_gap_s)
            if g is None:
                grounds[cam.name] = 'no ground estimated (nobody lifted), no world track'
                continue
            cam.world = place_in_world(cam, g.camera, layout, subject_height_m, None, max_gap_s)
            cam.world_frame = f'{cam.name or "camera"}_ground'
            grounds[cam.name] = (f'ground from the subject: pitch {g.pitch_deg:.1f} deg, roll '
                                 f'{g.roll_deg:.1f} deg, camera {g.height_m:.2f} m above the '
                                 f'floor (frame {cam.world_frame})')
    params = {
        'input': (str(src.resolve()) if len(inputs) == 1
                  else [str(p.resolve()) for p in inputs]),
        'mode': mode, 'filter_widths': list(ckpt.arch.filter_widths),
        'channels': ckpt.arch.channels, 'causal': ckpt.arch.causal, 'input_layout': layout,
        'flip': flip, **dataclasses.asdict(pose),
        'topics': [s.label for s in sources], 'max_frames': max_frames or 0,
        'max_gap_frames': rules.max_gap_frames, 'max_gap_s': rules.max_gap_s,
        'min_confidence': rules.min_confidence, 'repair_swaps': rules.repair_swaps,
        'lifting': 'whole sequence (SequenceLifter)',
        'calibration': str(Path(calibration).resolve()) if calibration else '',
        'level_view': level,
        'estimate_ground': grounds if estimate_ground else '',
        'subject_height_m': subject_height_m or 0.0, 'world_frame': world_frame,
        'floor_z': floor_z if floor_z is not None else 'none'}
    meta = bag_io.recording_metadata(layout, model_provenance(ckpt, layout, flip), params, {},
                                     producer=PRODUCER)
    try:
        write_bag(out, storage, meta, cameras, seq.layout.num_joints, world_frame, fused)
    except bag_io.BagError as e:
        raise OfflineError(str(e)) from None

    frames = sum(len(c.frames) for c in cameras)
    seconds = time.perf_counter() - t0
    return OfflineSummary(
        frames=frames,
        persons=sum(len({p for f in c.frames for p in f.people}) for c in cameras),
        frames_without_person=sum(1 for c in cameras for f in c.frames if not f.people),
        seconds=seconds, fps=frames / seconds if seconds > 0 else 0.0,
        cameras=[c.name for c in cameras], out=str(out), checkpoint=ckpt.path,
        swaps_repaired={c.name: c.swaps_2d + c.swaps_lifted for c in cameras},
        grounds=grounds)


def _run_pose(sources: Sequence[CameraSource], layout: str, progress: bool,
              make_tracking=None, repair_swaps: bool = RULES.repair_swaps,
              **estimator_args) -> List[CameraResult]:
    """2D for every camera, one MediaPipe video-mode graph and person tracking per camera."""
    from ..vision.pose_estimation import PoseEstimationError, create_estimator

    def make_estimator():
        try:
            return create_estimator(video_mode=True, **estimator_args)
        except (PoseEstimationError, OSError) as e:
            raise OfflineError(f'pose estimation: {e}') from None

    bar = Progress(progress)
    results = []
    try:
        for src in sources:
            t0 = time.perf_counter()

            def tick(n, label=src.name or '/', total=src.total, t0=t0):
                dt = time.perf_counter() - t0
                bar.update(label, n, total, n / dt if dt > 0 else 0.0)

            counts: dict = {}
            results.append(CameraResult(src.name, detect_2d(src, make_estimator, layout, tick,
                                                            make_tracking, repair_swaps, counts),
                                        swaps_2d=counts['swaps_repaired']))
            if not results[-1].frames:
                raise OfflineError(f'{src.label}: no frames')
    finally:
        bar.close()
    return results
