"""lifter node: per camera ``keypoints_2d`` -> ``skeleton_3d`` (H36M-17, metres, camera
optical frame, root-relative) with a VideoPose3D-architecture temporal model. With
``trajectory`` (off by default) the checkpoint's trajectory model places each skeleton at its
predicted root position in the camera frame instead; the pose itself is unchanged.

One node serves every camera in ``cameras`` (namespaces). The rules live in the ROS-free
:class:`~vp3d_ros.core.engine.LiftingEngine` (each (camera, person) track has its own
streaming window, :mod:`vp3d_ros.core.windowing`); this node parses messages, hands the
engine their contents, logs its notices and publishes what it returns. Causal models publish each frame at once;
symmetric models publish a frame when its future context has arrived, with its own stamp,
and optionally an immediate estimate from a causal model on ``skeleton_3d/immediate``.
Image size for normalisation: the size pose2d saw (``keypoints_2d/image_info``, a latched
CameraInfo holding only width/height), so a camera without camera_info works with no
parameter; else ``camera_info``; else ``image_width``/``image_height``. Every size given must
agree with the others: a frame whose camera_info (or parameters) disagrees with the images is
refused with a rate-limited error, never lifted at a wrong scale. While pose2d's size is on
its way (its publisher is up but its latched message has not arrived) frames wait for it.

With ``calibration`` (and ``level_view``, the default), each calibrated camera's keypoints
are lifted in its level view (:mod:`vp3d_ros.geometry.view`: re-drawn as a level camera aimed
at the person sees them) and each pose is turned back, so ``skeleton_3d`` keeps its frame; a
calibration that lacks a camera ends the node before it subscribes.

Provenance: what was actually loaded (path, sha256, architecture, input layout, causal, flip,
mode; see ``lifter_config.model_provenance``) is announced once as JSON on ``~/model``
(std_msgs/String, reliable + transient-local, so a recorder started later still gets it);
the recorder writes it into the bag's ``vp3d.checkpoint``.

Robustness rules (a rig sends everything): a cloud that is not a 2D keypoint cloud (missing
or non-FLOAT32 or duplicated fields, a payload that does not fit its point count, 3D points,
more than ``MAX_CLOUD_FACTOR`` x max_persons persons' points) is skipped with a rate-limited
warning; non-finite joints and joints more than one image size outside the image are held
or treated as a missing person (``joints_out_of_image``); frames with an implausible stamp
(negative or zero; see ``windowing.stamp_problem``) or a stamp
already seen are dropped (counted in /diagnostics), stamps a day ahead of the clock warned;
frames missing from a camera's stamp sequence (DDS drops what overflows the queue without
an event) are counted as ``keypoints_missing`` and logged;
stamps going backwards, long stamp gaps and a camera gone quiet for ``idle_flush_s`` end
the windows (owed poses are published first), so a restarted pose2d or a looping bag starts
clean. Tracks of persons that are gone are dropped, so a flood of person ids cannot grow
memory; at most ``max_persons`` persons per frame are lifted. ``keypoints_2d`` is subscribed
with the durability its publishers offer (transient-local for pose2d), so frames sent while
DDS matching is still under way come from the publisher's history instead of being lost.
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from typing import Dict, Optional, Tuple

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, PointCloud2
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from ..core.checkpoint import CheckpointError, read_sidecar
from ..core.engine import LiftingEngine
from ..core.lifter import StreamingLifter
from ..core.lifter_config import model_provenance
from ..core.model import MAX_BLOCK
from ..core.options import LifterOptions
from ..core.track_rules import TrackRules
from .ros_conversions import cloud_to_keypoints, keypoints_to_cloud
from .common import (ConfigError, FollowingSubscription, Throttle, declare, declare_options,
                     exit_process, problem_kind, rig_cameras, run_node, steady_timer)
from .diagnostics import NodeDiagnostics
from .markers import skeleton_markers

# A keypoints_2d cloud with more points than this many times max_persons whole persons is
# refused before it is read: one such message (150,000 one-joint persons) stalled every
# camera of the node for 8 s.
MAX_CLOUD_FACTOR = 4

# One latched message a topic: pose2d's image size, this node's model announcement.
LATCHED_ONE = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _stamp(ns: int):
    from builtin_interfaces.msg import Time
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class _Camera:
    def __init__(self, node: 'LifterNode', name: str):
        self.name = name
        prefix = f'/{name}/' if name else ''
        # Transient-local output: a recorder matched a moment late still gets the first poses.
        latched = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub = node.create_publisher(PointCloud2, prefix + 'skeleton_3d', latched)
        self.pub_markers = node.create_publisher(MarkerArray, prefix + 'skeleton_3d/markers', 10)
        self.pub_immediate = (node.create_publisher(PointCloud2, prefix + 'skeleton_3d/immediate',
                                                    latched) if node.immediate_ckpt else None)
        # Subscribed once a publisher is seen, with the durability it offers (see _connect).
        self.kp_topic = node.resolve_topic_name(prefix + 'keypoints_2d')
        self.keypoints = FollowingSubscription(node, PointCloud2, self.kp_topic,
                                               lambda m: node.on_keypoints(self, m))
        node.create_subscription(CameraInfo, prefix + 'camera_info',
                                 lambda m: node.on_camera_info(self, m), qos_profile_sensor_data)
        self.info_size: Optional[Tuple[int, int]] = None
        # The size of the images pose2d saw (published latched when it changes).
        self.seen_topic = node.resolve_topic_name(prefix + 'keypoints_2d/image_info')
        node.create_subscription(CameraInfo, self.seen_topic,
                                 lambda m: node.on_image_info(self, m), LATCHED_ONE)
        self.seen_size: Optional[Tuple[int, int]] = None
        self.frame_id = ''
        # 2D frames that arrived before an image size was known (discovery races at start-up).
        self.waiting = deque(maxlen=120)
        # (publisher, with markers) per engine output: the main model, the immediate one.
        self.outputs = [(self.pub, True)] + ([(self.pub_immediate, False)]
                                             if self.pub_immediate else [])


class LifterNode(Node):
    def __init__(self, **kwargs):
        super().__init__('lifter', **kwargs)
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        cameras = p('cameras', [''], "camera namespaces to serve, e.g. ['cam01', 'cam02'] "
                    "(topics /<cam>/keypoints_2d -> /<cam>/skeleton_3d); [''] = this node's namespace")
        # Which model and how it lifts, and the gap rules: declared once (core.options),
        # as vp3d-lift and vp3d-offline declare them as flags.
        opts = declare_options(self, LifterOptions)
        self.mode, self.flip, self.device = opts.mode, opts.flip, opts.device
        self.trajectory = opts.trajectory
        rules = declare_options(self, TrackRules)
        threads = p('torch_threads', 1, 'CPU threads for torch: one frame per push is too small '
                    'to split, and spare threads spin against pose2d for the cores')
        if threads > 0:
            import torch
            torch.set_num_threads(int(threads))
        self.block_frames = p('block_frames', 1, 'lift this many frames per pass: the same poses, '
                              'up to block_frames-1 frames later, for much less CPU per frame with '
                              'large (1024-channel) models, whose weights are read once per pass')
        if not 1 <= int(self.block_frames) <= MAX_BLOCK:
            raise ConfigError(f'lifter: block_frames must be 1..{MAX_BLOCK}, got '
                              f'{self.block_frames} (1 = lift every frame as it arrives)')
        self.width = p('image_width', 0, 'image width in pixels when no camera_info is published')
        self.height = p('image_height', 0, 'image height in pixels when no camera_info is published')
        self.idle_flush_s = p('idle_flush_s', 1.0, 'flush owed poses when a camera goes quiet (s)')
        self.max_persons = p('max_persons', 20, 'persons lifted per frame at most (the most '
                             'confident); protects memory and latency from a flood of ids')
        calibration = p('calibration', '', 'calibration file of the cameras (Pose2Sim/Anipose '
                        "TOML, JSON, YAML): with level_view, each camera's keypoints are lifted "
                        'as a level camera aimed at the person sees them (geometry.view); '
                        "'' = the pixels as they are")
        immediate = p('low_latency_checkpoint', '', 'symmetric mode: also publish an immediate '
                      'causal estimate on skeleton_3d/immediate from this checkpoint '
                      "('default' = shipped causal)")
        self.trajectories = {}  # pose model -> its trajectory model, when trajectory is on

        try:
            self.ckpt, self.layout = opts.resolve()
            self.model = self.ckpt.build(self.device)
            self.immediate_ckpt = None
            if immediate:
                # A low-latency model is causal by definition; only a sidecar saying
                # otherwise is an error.
                immediate_path = None if immediate == 'default' else immediate
                declared = (read_sidecar(immediate_path).get('architecture') or {}).get('causal') \
                    if immediate_path and os.path.isfile(immediate_path) else None
                if declared is False:
                    raise CheckpointError(f'{immediate}: low_latency_checkpoint must be causal '
                                          '(its sidecar says causal: false)')
                self.immediate_ckpt, _ = LifterOptions(checkpoint=immediate_path or '', causal='true',
                                                  mode='causal').resolve(layout=self.layout)
                self.immediate_model = self.immediate_ckpt.build(self.device)
            if self.trajectory:  # the immediate estimate too: both outputs in one frame
                self.trajectories[self.model] = self.ckpt.build_trajectory(self.device)
                if self.immediate_ckpt is not None:
                    self.trajectories[self.immediate_model] = self.immediate_ckpt.build_trajectory(
                        self.device)
        except CheckpointError as e:
            raise ConfigError(f'lifter: {e}') from e
        except (RuntimeError, AssertionError, ValueError) as e:  # torch: unusable device
            raise ConfigError(f"lifter: cannot put the model on device {self.device!r} "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                              "set the 'device' parameter to 'cpu' or an available GPU") from e
        if int(self.max_persons) < 1:
            raise ConfigError(f'lifter: max_persons must be >= 1, got {self.max_persons}')
        self.throttle = Throttle()
        # the calibration is checked before anything subscribes: a refused one ends the node
        views = self._views(calibration, opts.level_view, [c.strip('/') for c in cameras])
        self.level_cameras = sorted(views)
        self.cameras = [_Camera(self, c.strip('/')) for c in cameras]
        self.by_name = {cam.name: cam for cam in self.cameras}
        models = [self.model] + ([self.immediate_model] if self.immediate_ckpt is not None else [])
        try:
            self.engine = LiftingEngine(
                [self._make_lifter(m) for m in models], [cam.name for cam in self.cameras],
                rules, idle_flush_s=float(self.idle_flush_s), views=views)
        except ValueError as e:
            raise ConfigError(f'lifter: {e}') from e
        self.diag = NodeDiagnostics(self, 'lifter', extra=self._diag_extra)
        self._due: list = []  # (receive time, persons) of frames queued, not lifted
        self._due_timer = steady_timer(self, 0.0, self._lift_due)  # armed when frames queue
        self._due_timer.cancel()
        steady_timer(self, 0.2, self._flush_idle)
        self.provenance = self._announce_model()
        self._connect()
        steady_timer(self, 0.5, self._connect)
        self.get_logger().info(
            f'lifter ready: {self.ckpt.path} ({self.ckpt.arch.describe()}), layout={self.layout}, '
            f'flip={self.flip}, cameras={[c.name or "." for c in self.cameras]}')

    def _announce_model(self) -> dict:
        """Say on ~/model (latched JSON) what this node loaded: bags record this, not what
        another node was told."""
        immediate = (model_provenance(self.immediate_ckpt, self.layout, self.flip)
                if self.immediate_ckpt is not None else None)
        info = model_provenance(self.ckpt, self.layout, self.flip,
                                node=self.get_fully_qualified_name(),
                                cameras=[c.name for c in self.cameras], device=str(self.device),
                                block_frames=int(self.block_frames), low_latency=immediate,
                                trajectory=bool(self.trajectory),
                                level_view=self.level_cameras)
        self.pub_model = self.create_publisher(String, '~/model', LATCHED_ONE)
        self.pub_model.publish(String(data=json.dumps(info, sort_keys=True)))
        return info

    def _connect(self):
        """Subscribe to each camera's keypoints_2d with the QoS its publishers offer.

        Against transient-local publishers (pose2d) the subscription is transient-local too:
        DDS matching between processes can lag the stream by a second or more, and the frames
        sent meanwhile then arrive from the publisher's history instead of being lost (a lifter
        started with or after pose2d lifts the first frames). A volatile or best-effort
        publisher appearing later downgrades the subscription so it still matches."""
        for cam in self.cameras:
            said = cam.keypoints.update()
            if said:
                self.get_logger().info(f'{cam.name or "."}: {said}')

    def _diag_extra(self):
        e = self.engine
        fills = {f'window_fill/{c or "."}/{pid}': fill
                 for c, tracks in e.window_fills().items() for pid, fill in tracks.items()}
        return {'tracks': len(fills), 'resets': e.resets, 'joints_out_of_image': e.out_of_image,
                'swaps_repaired': e.swaps_repaired,
                'keypoints_missing': e.frames_missing,
                **{f'keypoints_missing/{c.label}': c.gaps.missing for c in e.cameras.values()},
                'window_fill': max(fills.values(), default=0),
                'receptive_field': self.ckpt.arch.receptive_field,
                'waiting_for_camera_info': sum(len(c.waiting) for c in self.cameras),
                'streams_per_pass': e.streams_per_pass, **fills}

    def _sim_time(self) -> bool:
        try:
            return bool(self.get_parameter('use_sim_time').value)
        except Exception:  # noqa: BLE001 - not declared: wall clock
            return False

    def _views(self, calibration: str, level: bool, names) -> dict:
        """Per camera: (width, height) -> its level view (None: the pixels as they are)."""
        if not calibration or not level:
            return {}
        from ..geometry.view import level_view_factory
        _, rig = rig_cameras('lifter', names, calibration)
        views = {}
        for name in names:
            base = rig.base[name]
            make = level_view_factory(base, self.layout)
            if make is None:
                self.get_logger().warning(
                    f"{name}: level view not used: the calibration's world z is not up "
                    f'for camera {base.name!r} (its image up is more than 60 degrees from it)')
                continue
            views[name] = self._said_once(name, make)
        self.get_logger().info(f'level view from {calibration} for '
                               f'{[c or "." for c in views] or "no camera"}')
        return views

    def _said_once(self, name: str, make):
        """A view factory whose refusals (an image size the calibration does not fit) are
        logged, rate-limited: that camera's frames are then lifted as they are."""
        from ..geometry.calibration import CalibrationError

        def view(w, h):
            try:
                return make(w, h)
            except CalibrationError as e:
                self.throttle.log(self.get_logger().error, f'view-size-{name}',
                                  f'{name}: level view not used: {e}')
                return None
        return view

    def _make_lifter(self, model):
        return lambda w, h: StreamingLifter(model, self.layout, flip=self.flip, device=self.device,
                                            width=w, height=h, block=self.block_frames,
                                            trajectory=self.trajectories.get(model),
                                            deferred=True)

    def on_camera_info(self, cam: _Camera, msg: CameraInfo):
        if not msg.width or not msg.height:
            self.throttle.log(self.get_logger().warning, f'info-empty-{cam.name}',
                              f'{cam.name}: camera_info with an empty image size '
                              f'({msg.width}x{msg.height}) ignored; fix the camera calibration')
            return
        cam.info_size = (int(msg.width), int(msg.height))
        self._release_waiting(cam)

    def on_image_info(self, cam: _Camera, msg: CameraInfo):
        """pose2d's keypoints_2d/image_info: the size of the images its keypoints are in."""
        if not msg.width or not msg.height:
            return
        cam.seen_size = (int(msg.width), int(msg.height))
        self._release_waiting(cam)

    def _release_waiting(self, cam: _Camera):
        """Retry the frames parked for want of an image size (a frame still without one
        parks again, so take them out first)."""
        held = list(cam.waiting)
        cam.waiting.clear()
        for msg in held:
            self.on_keypoints(cam, msg, held=True)

    def _image_size(self, cam: _Camera, msg) -> Optional[Tuple[int, int]]:
        """The size to normalise this frame's keypoints by; None: refused or parked.

        The size pose2d saw is the truth about the images; camera_info and the parameters
        are claims about them. Any two that disagree refuse the frame (a wrong scale is
        refused, not guessed): a camera_info for another resolution is a calibration that
        does not belong to these images."""
        param = (int(self.width), int(self.height)) if self.width and self.height else None
        sizes = [(what, size) for what, size in (
            ("the images (pose2d's keypoints_2d/image_info) are", cam.seen_size),
            ('camera_info says', cam.info_size), ('image_width/image_height are', param))
            if size]
        if any(size != sizes[0][1] for _, size in sizes[1:]):
            self.diag.error()
            said = ' but '.join(f'{what} {size[0]}x{size[1]}' for what, size in sizes
                                if what == sizes[0][0] or size != sizes[0][1])
            self._warn(f'size-{cam.name}', f'{cam.name or "."}: {said}; frames refused rather '
                       'than lifted at a wrong scale until they agree (fix the camera '
                       'calibration or the parameters)', 'error')
            return None
        # pose2d's size is on its way (its latched message comes at matching): wait for it,
        # so that a disagreeing camera_info is caught from the first frame.
        expecting = cam.seen_size is None and self.count_publishers(cam.seen_topic) > 0
        if sizes and not expecting:
            return sizes[0][1]
        full = len(cam.waiting) == cam.waiting.maxlen
        if full:
            self.diag.dropped()
        cam.waiting.append(msg)
        if expecting and full:
            self._warn(f'nosize-{cam.name}', f'{cam.name}: {cam.seen_topic} has a publisher but '
                       'its latched image size never arrived (a publisher that is not reliable '
                       'and transient-local?); holding the newest '
                       f'{cam.waiting.maxlen} frames until it does', 'error')
        elif not expecting and self.throttle(f'nosize-{cam.name}'):
            self.get_logger().error(
                f'{cam.name}: no image size: no keypoints_2d/image_info (pose2d publishes it), '
                'no camera_info and image_width/image_height unset; cannot normalise keypoints '
                f'(holding the newest {cam.waiting.maxlen} frames until a size arrives)')
        return None

    def on_keypoints(self, cam: _Camera, msg: PointCloud2, held: bool = False):
        """Subscription callback: nothing a publisher sends may take the node down.
        ``held``: a frame parked until camera_info came (already counted as received).

        The frame's persons are queued in their tracks and lifted by :meth:`_lift_due`: at
        once with one camera; with several, right after the executor has delivered the
        keypoints already waiting, so frames of cameras (and persons) that are due together
        share one pass through the network (the weights are read once for all of them)."""
        t0 = time.perf_counter()
        if not held:
            self.diag.received()
            self.engine.received(cam.name, _ns(msg.header.stamp), time.monotonic_ns())
        try:
            persons = self._accept(cam, msg)
        except Exception as e:  # noqa: BLE001 - one bad frame, not a dead lifter
            self._failed(cam, e)
            persons = None
        self._say()
        if persons is None:
            return
        self._due.append((t0, persons))
        if len(self.cameras) == 1:
            self._lift_due()
        elif self._due_timer.is_canceled():
            self._due_timer.reset()

    def _say(self):
        """Log the engine's notices (rate-limited per kind) and count them."""
        for n in self.engine.take_notices():
            if n.count == 'dropped':
                self.diag.dropped()
            elif n.count == 'error':
                self.diag.error()
            self._warn(n.key, n.text, n.level)

    def _failed(self, cam: _Camera, e: Exception):
        self.diag.error()
        self.throttle.log(self.get_logger().error, f'lift-{cam.name}-{type(e).__name__}',
                          f'{cam.name}: frame skipped: {type(e).__name__}: {e}')

    def _lift_due(self):
        """Lift every queued frame in shared passes, then publish what each camera owes."""
        self._due_timer.cancel()
        due, self._due = self._due, []
        self._publish_ready(self.engine.lift_due())
        self._say()
        now = time.perf_counter()
        for t0, persons in due:
            self.diag.processed(now - t0, persons=persons)

    def _warn(self, key: str, text: str, level: str = 'warning'):
        self.throttle.log(getattr(self.get_logger(), level), key, text)

    def _accept(self, cam: _Camera, msg: PointCloud2) -> Optional[int]:
        """Validate and lift one frame; the number of persons lifted, None if refused."""
        where = cam.name or '.'
        try:
            # Work per message is bounded: more points than MAX_CLOUD_FACTOR x max_persons
            # persons is refused unread, and only the max_persons most confident are unpacked.
            people = cloud_to_keypoints(
                msg, num_joints=17, max_points=MAX_CLOUD_FACTOR * int(self.max_persons) * 17,
                max_persons=int(self.max_persons))
            dims = {kp.shape[1] for kp, _ in people.values()}
            if dims - {2}:
                raise ValueError('cloud carries 3D points (has a z field); keypoints_2d must '
                                 'be a 2D keypoint cloud (is a skeleton_3d topic remapped?)')
        except ValueError as e:
            self.diag.error()
            self._warn(f'cloud-{cam.name}-{problem_kind(e)}',
                       f'{where}: bad keypoints_2d skipped: {e}')
            return None
        stamp = _ns(msg.header.stamp)
        if not self.engine.admit(cam.name, stamp, time.time_ns(), self._sim_time()):
            return None
        size = self._image_size(cam, msg)
        if size is None:
            return None
        cam.frame_id = msg.header.frame_id
        return self.engine.add(cam.name, stamp, people, size,
                               total=getattr(people, 'total', len(people)))

    def _publish_ready(self, ready):
        for r in ready:
            cam = self.by_name[r.camera]
            self._publish(cam, r.poses, *cam.outputs[r.output])

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
            # RViz markers cost about a millisecond a frame to build: only for a listener.
            if markers and cam.pub_markers.get_subscription_count():
                cam.pub_markers.publish(skeleton_markers(header, pos, pids))

    def _flush_idle(self):
        """A camera quiet for idle_flush_s (pose2d stopped or restarting, a paused bag): publish
        what is owed and end its windows, so what comes next is not mixed with stale context."""
        self._lift_due()
        self._publish_ready(self.engine.flush_idle(time.monotonic_ns()))
        self._say()

    def drain_topics(self):
        """On shutdown the node serves until these have no publisher (common._spin): the
        last keypoints of pose2d nodes stopping alongside are lifted, not lost."""
        return [cam.kp_topic for cam in self.cameras]

    def close(self):
        try:  # publish what is owed before going away
            self._lift_due()
            self._publish_ready(self.engine.finish())
        except Exception as e:  # noqa: BLE001 - e.g. the context is already gone
            self.get_logger().warning(f'owed poses not published on exit: {e}')


def main(args=None):
    exit_process(run_node(LifterNode, args))


if __name__ == '__main__':
    main()
