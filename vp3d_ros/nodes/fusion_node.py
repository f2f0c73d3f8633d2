"""fusion node: every calibrated camera's ``keypoints_2d`` -> one world skeleton per person on
``/skeleton_3d/fused`` (PointCloud2 in the skeleton_3d layout, ``frame_id`` = the world frame,
absolute positions in metres, stamped with the instant).

Pixels are read in the images pose2d saw (``keypoints_2d/image_info``): the calibration is
scaled to a downscaled stream. Frames of one instant are grouped by stamp
(:mod:`vp3d_ros.core.instants`: ``sync_tolerance_s``, late cameras waited for up to ``max_wait_s``,
then fused without them); :class:`vp3d_ros.geometry.people.FusedPeople` does the rest: persons
are matched across cameras (:func:`~vp3d_ros.geometry.fusion.associate`) and followed across
instants (nearest root within ``person_gate_m``, the rule vp3d-offline follows), each person is
triangulated with outlier-view rejection and filtered causally
(:class:`~vp3d_ros.geometry.fusion.CausalFuser`); joints fewer
than two cameras see are filled from that camera's lifted ``skeleton_3d`` (rotated into the
world) when the lifter runs, else held briefly. Joints that cannot be recovered are left out of
the cloud. Markers on ``/skeleton_3d/fused/markers``; /diagnostics adds cameras used per joint,
reprojection error, late and incomplete instants.
"""
from __future__ import annotations

import array
import time
from collections import deque
from typing import Dict

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ..geometry import fusion as F
from ..geometry.people import FusedPeople
from ..core.instants import InstantGrouper
from .ros_conversions import cloud_to_keypoints, keypoints_to_cloud
from .common import FollowingSubscription, Throttle, declare, rig_cameras, run_node, steady_timer
from .diagnostics import NodeDiagnostics
from .markers import skeleton_markers

J = 17
SEC_NS = 1_000_000_000


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _stamp(ns: int):
    from builtin_interfaces.msg import Time
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class FusionNode(Node):
    def __init__(self, **kwargs):
        super().__init__('fusion', **kwargs)
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        cameras = p('cameras', [''], "camera namespaces, at least two, e.g. ['cam01', 'cam02'] "
                    '(topics /<cam>/keypoints_2d and /<cam>/skeleton_3d)')
        calibration = p('calibration', '', 'calibration file (Pose2Sim/Anipose TOML, JSON, '
                        'YAML, OpenCV); camera names match the namespaces (cam01 = cam_01)')
        self.world_frame = p('world_frame', 'world', 'frame_id of the fused skeletons')
        tol = p('sync_tolerance_s', 0.0, 'frames of one instant differ by at most this (under '
                'half a frame period); 0 = auto: 0.4 x the cameras\' median frame period')
        wait = p('max_wait_s', 0.1, 'how long an instant waits for late cameras before it is '
                 'fused without them')
        self.threshold_px = p('threshold_px', 15.0, 'reprojection error above which a view '
                              'is dropped')
        self.gate_px = p('association_gate_px', 40.0, 'detections of two cameras are one '
                         'person when their joints agree within this (px)')
        self.use_lifted = p('use_lifted', True, "fill joints fewer than two cameras see from "
                            "each camera's lifted skeleton_3d")
        self.person_gate_m = p('person_gate_m', 0.5, 'a fused person keeps its id while its '
                               'root moves less than this between instants')
        self.person_timeout_s = p('person_timeout_s', 1.0, 'a person unseen this long is '
                                  'forgotten')
        names, self.cameras = rig_cameras('fusion', cameras, calibration, min_cameras=2)
        self.names = names
        self.people = FusedPeople(F.FusionConfig(threshold_px=float(self.threshold_px)),
                                  self.gate_px, self.person_gate_m, self.person_timeout_s)
        self.auto_tol = not tol > 0
        self.grouper = InstantGrouper(names, float(tol) if tol > 0 else 0.008, float(wait))
        self.periods = deque(maxlen=200)
        self.last_ns: Dict[str, int] = {}
        self.throttle = Throttle(5.0)
        self.lifted: Dict[str, Dict[int, tuple]] = {n: {} for n in names}  # pid -> (ns, pose)
        self.incomplete = 0
        self.fused = 0
        self.last_views = np.zeros(J, int)
        self.last_error = float('nan')
        # latency added by fusion per complete instant: its last camera frame's callback
        # entry -> the fused cloud handed to DDS (perf_counter seconds)
        self.latencies = deque(maxlen=1800)   # a minute at 30 fps
        latched = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub = self.create_publisher(PointCloud2, '/skeleton_3d/fused', latched)
        self.pub_markers = self.create_publisher(MarkerArray, '/skeleton_3d/fused/markers', 10)
        self.diag = NodeDiagnostics(self, 'fusion', extra=self._diag_extra)
        self.keypoint_subs = {   # keypoints_2d with the QoS its publishers offer
            n: FollowingSubscription(self, PointCloud2,
                                     self.resolve_topic_name(f'/{n}/keypoints_2d'),
                                     lambda m, n=n: self.on_keypoints(n, m)) for n in names}
        one = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        for n in names:   # the size of the images pose2d's keypoints are in
            self.create_subscription(CameraInfo, f'/{n}/keypoints_2d/image_info',
                                     lambda m, n=n: self.on_image_info(n, m), one)
        if self.use_lifted:
            for n in names:
                self.create_subscription(PointCloud2, f'/{n}/skeleton_3d',
                                         lambda m, n=n: self.on_lifted(n, m), latched)
        self._connect()
        steady_timer(self, 0.5, self._connect)
        steady_timer(self, 0.02, self._poll)
        self.get_logger().info(
            f'fusing {len(names)} cameras '
            f'({self.cameras.describe()})'
            f' from {calibration} into /skeleton_3d/fused (frame {self.world_frame!r})')

    # -------------------------------------------------------------- subscriptions
    def _connect(self):
        """keypoints_2d with the QoS its publishers offer (transient-local against pose2d,
        so frames sent while DDS matching completes come from its history)."""
        for sub in self.keypoint_subs.values():
            sub.update()

    def on_image_info(self, cam: str, msg: CameraInfo):
        """pose2d's image size: the calibration scaled to it (a downscaled stream), or the
        camera refused (another aspect ratio) until a size that fits arrives."""
        if not msg.width or not msg.height:
            return
        why = self.cameras.image_size(cam, msg.width, msg.height)
        if why:
            self.get_logger().error(f'{cam}: {why}; its keypoints are not fused')

    def on_lifted(self, cam: str, msg: PointCloud2):
        try:
            people = cloud_to_keypoints(msg, J)
        except ValueError:
            return
        ns = _ns(msg.header.stamp)
        for pid, (pose, _) in people.items():
            if pose.shape[1] == 3:
                self.lifted[cam][pid] = (ns, pose)

    def on_keypoints(self, cam: str, msg: PointCloud2):
        rx = time.perf_counter()
        self.diag.received()
        ns = _ns(msg.header.stamp)
        try:
            people = cloud_to_keypoints(msg, J)
        except ValueError as e:
            self.diag.dropped()
            self.throttle.log(self.get_logger().warning, f'bad/{cam}',
                              f'{cam}: keypoints_2d skipped: {e}')
            return
        people = {pid: np.concatenate([kp[:, :2], conf[:, None]], -1)
                  for pid, (kp, conf) in people.items() if kp.shape[1] == 2}
        if not self.cameras.usable(cam):
            people = {}
        if self.auto_tol:
            prev = self.last_ns.get(cam)
            if prev is not None and 0 < ns - prev < SEC_NS:
                self.periods.append(ns - prev)
                if len(self.periods) >= 3 and (len(self.periods) < 16
                                               or self.diag.counts['received'] % 16 == 0):
                    period = float(np.median(self.periods))
                    self.grouper.tol_ns = int(min(max(0.4 * period, 2e6), 5e7))
            self.last_ns[cam] = ns
        late = self.grouper.late
        ready = self.grouper.add(cam, ns, people, time.monotonic())
        if self.grouper.late > late:
            self.diag.dropped()
        for inst in ready:
            self._fuse(inst)
            if len(inst.frames) == len(self.names):   # completed by this frame
                self.latencies.append(time.perf_counter() - rx)

    def _poll(self):
        for inst in self.grouper.poll(time.monotonic()):
            self._fuse(inst)

    # -------------------------------------------------------------- fusion
    def _fuse(self, inst):
        t0 = time.perf_counter()
        if len(inst.frames) < len(self.names):
            self.incomplete += 1
        lifted = [{pid: pose for pid, (ns, pose) in self.lifted[n].items()
                   if abs(ns - inst.stamp_ns) < 0.25e9} for n in self.names]
        fused = self.people.step([self.cameras[n] for n in self.names],
                                 [inst.frames.get(n, {}) for n in self.names],
                                 inst.stamp_ns * 1e-9, lifted)
        for person in fused:
            self.last_views = person.frame.views
            if np.isfinite(person.frame.error_px).any():
                self.last_error = float(np.nanmean(person.frame.error_px))
        self._publish(inst.stamp_ns, [p.frame.points for p in fused],
                      [p.confidence for p in fused], [p.pid for p in fused])
        self.fused += 1
        self.diag.processed(time.perf_counter() - t0, len(fused))

    def _publish(self, stamp_ns, pts, conf, ids):
        header = Header(stamp=_stamp(stamp_ns), frame_id=self.world_frame)
        if pts:
            P = np.stack(pts)
            C = np.stack(conf)
            msg = keypoints_to_cloud(header, np.nan_to_num(P), C, ids)
            keep = np.all(np.isfinite(P), -1).reshape(-1)
            if not keep.all():   # lost joints are left out (the cloud stays dense)
                step = msg.point_step
                raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(-1, step)[keep]
                msg.data = array.array('B', raw.tobytes())
                msg.width = int(keep.sum())
                msg.row_step = step * msg.width
        else:
            msg = keypoints_to_cloud(header, np.zeros((0, J, 3)), np.zeros((0, J)), [])
        self.pub.publish(msg)
        if pts and self.pub_markers.get_subscription_count():
            self.pub_markers.publish(skeleton_markers(header, np.stack(pts), ids))

    def _diag_extra(self):
        return {'instants_fused': self.fused, 'instants_incomplete': self.incomplete,
                'frames_late': self.grouper.late, 'persons_tracked': len(self.people),
                'sync_tolerance_ms': f'{self.grouper.tol_ns / 1e6:.1f}',
                'views_per_joint': ' '.join(str(int(v)) for v in self.last_views),
                'reprojection_px_mean': f'{self.last_error:.2f}',
                **self._latency_values()}

    def _latency_values(self):
        lat = sorted(self.latencies)
        if not lat:
            return {'latency_ms_p50': 'n/a', 'latency_ms_p99': 'n/a'}
        at = lambda q: f'{1e3 * lat[min(len(lat) - 1, int(q * len(lat)))]:.2f}'  # noqa: E731
        return {'latency_ms_p50': at(0.5), 'latency_ms_p99': at(0.99)}

    def close(self):
        for inst in self.grouper.flush():
            self._fuse(inst)


def main(args=None):
    raise SystemExit(run_node(FusionNode, args))


if __name__ == '__main__':
    main()
