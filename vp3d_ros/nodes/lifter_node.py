"""lifter node: per camera ``keypoints_2d`` -> ``skeleton_3d`` (H36M-17, metres, camera
optical frame, root-relative) with a VideoPose3D-architecture temporal model.

One node serves every camera in ``cameras`` (namespaces). Each (camera, person) track has its
own streaming window (:mod:`vp3d_ros.windowing`). Causal models publish each frame at once;
symmetric models publish a frame when its future context has arrived, with its own stamp,
and optionally an immediate estimate from a causal model on ``skeleton_3d/immediate``.
Image size for normalisation: ``camera_info`` when present, else ``image_width``/
``image_height``; when both exist they must agree (a wrong scale is refused, not guessed).
"""
from __future__ import annotations

import time
from collections import deque
from typing import Dict, Optional, Tuple

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ..checkpoint import CheckpointError
from ..lifter import StreamingLifter
from ..lifter_config import resolve_lifter
from .markers import skeleton_markers
from ..ros_conversions import cloud_to_keypoints, keypoints_to_cloud
from ..windowing import TrackWindow
from .common import ConfigError, Throttle, declare, run_node
from .diagnostics import NodeDiagnostics


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _stamp(ns: int):
    from builtin_interfaces.msg import Time
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class _Camera:
    def __init__(self, node: 'LifterNode', name: str):
        self.name = name
        prefix = f'/{name}/' if name else ''
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = node.create_publisher(PointCloud2, prefix + 'skeleton_3d', reliable)
        self.pub_markers = node.create_publisher(MarkerArray, prefix + 'skeleton_3d/markers', 10)
        self.pub_fast = (node.create_publisher(PointCloud2, prefix + 'skeleton_3d/immediate', reliable)
                         if node.fast_ckpt else None)
        node.create_subscription(PointCloud2, prefix + 'keypoints_2d',
                                 lambda m: node.on_keypoints(self, m), reliable)
        node.create_subscription(CameraInfo, prefix + 'camera_info',
                                 lambda m: node.on_camera_info(self, m), qos_profile_sensor_data)
        self.info_size: Optional[Tuple[int, int]] = None
        self.tracks: Dict[int, TrackWindow] = {}
        self.fast_tracks: Dict[int, TrackWindow] = {}
        self.frame_id = ''
        self.last_rx = time.monotonic()
        # 2D frames that arrived before the first camera_info (discovery races at start-up).
        self.waiting = deque(maxlen=120)


class LifterNode(Node):
    def __init__(self, **kwargs):
        super().__init__('lifter', **kwargs)
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        cameras = p('cameras', [''], "camera namespaces to serve, e.g. ['cam01', 'cam02'] "
                    "(topics /<cam>/keypoints_2d -> /<cam>/skeleton_3d); [''] = this node's namespace")
        checkpoint = p('checkpoint', '', "VideoPose3D checkpoint (.bin); '' = the shipped "
                       "default for 'mode'")
        self.mode = p('mode', 'causal', "which shipped default when checkpoint is '': "
                      "'causal' (live) or 'symmetric' (best accuracy, (RF-1)/2 frames latency)")
        fw = p('filter_widths', [0], 'architecture, e.g. [3,3,3,3,3]; [0] = from the file/sidecar')
        channels = p('channels', 0, 'architecture channels; 0 = from the file')
        causal = p('causal', 'auto', "true/false, or 'auto' = from the sidecar (else false)",
                   dynamic=True)
        layout = p('input_layout', 'auto', "'coco', 'h36m' or 'auto' (sidecar, else h36m); must "
                   "match pose2d's keypoint_layout")
        self.flip = p('flip', True, 'test-time flip augmentation (upstream default: on)')
        self.device = p('device', 'cpu', "torch device, e.g. 'cpu' or 'cuda'")
        self.width = p('image_width', 0, 'image width in pixels when no camera_info is published')
        self.height = p('image_height', 0, 'image height in pixels when no camera_info is published')
        self.max_gap_frames = p('max_gap_frames', 10, 'missing-person frames bridged by interpolation')
        self.max_gap_s = p('max_gap_s', 0.5, 'a longer gap in stamps restarts the window')
        self.min_conf = p('min_confidence', 0.2, 'joints below this hold their last position')
        self.idle_flush_s = p('idle_flush_s', 1.0, 'flush owed poses when a camera goes quiet (s)')
        fast = p('low_latency_checkpoint', '', "symmetric mode: also publish an immediate causal "
                 "estimate on skeleton_3d/immediate from this checkpoint ('default' = shipped causal)")

        causal_v = {'auto': None, 'true': True, 'false': False}.get(str(causal).lower(), causal)
        if causal_v not in (None, True, False):
            raise ConfigError(f"causal must be true, false or 'auto', got {causal!r}")
        try:
            self.ckpt, self.layout = resolve_lifter(
                checkpoint or None, [w for w in fw if w] or None, channels or None, causal_v,
                None if layout == 'auto' else layout, default_kind=self.mode)
            self.model = self.ckpt.build(self.device)
            self.fast_ckpt = None
            if fast:
                self.fast_ckpt, _ = resolve_lifter(None if fast == 'default' else fast,
                                                   default_kind='causal', layout=self.layout)
                if not self.fast_ckpt.arch.causal:
                    raise CheckpointError(f'{fast}: low_latency_checkpoint must be causal')
                self.fast_model = self.fast_ckpt.build(self.device)
        except CheckpointError as e:
            raise ConfigError(f'lifter: {e}') from e
        self.throttle = Throttle()
        self.cameras = [_Camera(self, c.strip('/')) for c in cameras]
        self.diag = NodeDiagnostics(self, 'lifter', extra=self._diag_extra)
        self.create_timer(0.2, self._flush_idle)
        self.get_logger().info(
            f'lifter ready: {self.ckpt.path} ({self.ckpt.arch.describe()}), layout={self.layout}, '
            f'flip={self.flip}, cameras={[c.name or "." for c in self.cameras]}')

    def _diag_extra(self):
        fills = {f'window_fill/{c.name or "."}/{pid}': t.fill
                 for c in self.cameras for pid, t in c.tracks.items()}
        resets = sum(t.stats.resets for c in self.cameras for t in c.tracks.values())
        return {'tracks': sum(len(c.tracks) for c in self.cameras), 'resets': resets, **fills}

    def _make_lifter(self, model):
        return lambda w, h: StreamingLifter(model, self.layout, flip=self.flip, device=self.device,
                                            width=w, height=h)

    def on_camera_info(self, cam: _Camera, msg: CameraInfo):
        cam.info_size = (int(msg.width), int(msg.height))
        while cam.waiting:
            self.on_keypoints(cam, cam.waiting.popleft())

    def _image_size(self, cam: _Camera, msg) -> Optional[Tuple[int, int]]:
        param = (int(self.width), int(self.height)) if self.width and self.height else None
        if cam.info_size and param and cam.info_size != param:
            if self.throttle(f'size-{cam.name}'):
                self.get_logger().error(
                    f'{cam.name}: camera_info is {cam.info_size[0]}x{cam.info_size[1]} but '
                    f'image_width/image_height are {param[0]}x{param[1]}; fix one of them '
                    '(frames refused rather than lifted at a wrong scale)')
            return None
        size = cam.info_size or param
        if size is None:
            if len(cam.waiting) == cam.waiting.maxlen:
                self.diag.dropped()
            cam.waiting.append(msg)
            if self.throttle(f'nosize-{cam.name}'):
                self.get_logger().error(f'{cam.name}: no camera_info and image_width/image_height '
                                        'unset; cannot normalise keypoints (holding the newest '
                                        f'{cam.waiting.maxlen} frames until camera_info arrives)')
        return size

    def on_keypoints(self, cam: _Camera, msg: PointCloud2):
        t0 = time.perf_counter()
        self.diag.received()
        cam.last_rx = time.monotonic()
        try:
            people = cloud_to_keypoints(msg, num_joints=17)
        except ValueError as e:
            self.diag.error()
            if self.throttle(f'cloud-{cam.name}'):
                self.get_logger().warning(f'{cam.name}: bad keypoints_2d skipped: {e}')
            return
        size = self._image_size(cam, msg)
        if size is None:
            return
        stamp = _ns(msg.header.stamp)
        cam.frame_id = msg.header.frame_id
        if stamp == 0 and self.throttle(f'zero-{cam.name}'):
            self.get_logger().warning(f'{cam.name}: keypoints with zero stamp (is the camera '
                                      'driver stamping frames? use_sim_time without /clock?)')
        self._lift(cam, cam.tracks, self.model, people, stamp, size, cam.pub, markers=True)
        if cam.pub_fast is not None:
            self._lift(cam, cam.fast_tracks, self.fast_model, people, stamp, size, cam.pub_fast)
        self.diag.processed(time.perf_counter() - t0, persons=len(people))

    def _lift(self, cam, tracks, model, people, stamp, size, pub, markers=False):
        results = {}
        for pid in set(tracks) | set(people):
            track = tracks.get(pid)
            if track is None:
                track = tracks[pid] = TrackWindow(self._make_lifter(model), self.max_gap_frames,
                                                  self.max_gap_s, self.min_conf)
            kp, conf = people.get(pid, (None, None))
            results[pid] = track.add(stamp, kp, conf, size)
        self._publish(cam, results, pub, markers)

    def _publish(self, cam, results, pub, markers):
        # Group by stamp so one message carries every person of one frame.
        by_stamp: Dict[int, Dict[int, object]] = {}
        for pid, poses in results.items():
            for lp in poses:
                by_stamp.setdefault(lp.stamp_ns, {})[pid] = lp
        for stamp in sorted(by_stamp):
            frame = by_stamp[stamp]
            pids = sorted(frame)
            header = Header(stamp=_stamp(stamp), frame_id=cam.frame_id)
            pos = np.array([frame[i].pose for i in pids]).reshape(len(pids), 17, 3)
            conf = np.array([frame[i].confidence for i in pids]).reshape(len(pids), 17)
            pub.publish(keypoints_to_cloud(header, pos, conf, pids))
            if markers:
                cam.pub_markers.publish(skeleton_markers(header, pos, pids))

    def _flush_idle(self):
        now = time.monotonic()
        for cam in self.cameras:
            if now - cam.last_rx < self.idle_flush_s:
                continue
            for tracks, pub, mk in ((cam.tracks, cam.pub, True), (cam.fast_tracks, cam.pub_fast, False)):
                owed = {pid: t.finish() for pid, t in tracks.items() if t.fill or t._missing}
                if any(owed.values()):
                    self._publish(cam, owed, pub, mk)

    def close(self):
        for cam in self.cameras:  # publish what is owed before going away
            self._publish(cam, {pid: t.finish() for pid, t in cam.tracks.items()}, cam.pub, True)


def main(args=None):
    raise SystemExit(run_node(LifterNode, args))


if __name__ == '__main__':
    main()
