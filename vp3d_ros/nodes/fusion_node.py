"""fusion node: every calibrated camera's ``keypoints_2d`` -> one world skeleton per person on
``/skeleton_3d/fused`` (PointCloud2 in the skeleton_3d layout, ``frame_id`` = the world frame,
absolute positions in metres, stamped with the instant).

Pixels are read in the images pose2d saw (``keypoints_2d/image_info``): the calibration is
scaled to a downscaled stream. Frames of one instant are grouped by stamp
(:mod:`vp3d_ros.core.instants`: ``sync_tolerance_s``, late cameras waited for up to ``max_wait_s``,
then fused without them), persons are matched across cameras
(:func:`vp3d_ros.geometry.fusion.associate`), each person is triangulated with outlier-view
rejection and filtered causally (:class:`~vp3d_ros.geometry.fusion.CausalFuser`); joints fewer
than two cameras see are filled from that camera's lifted ``skeleton_3d`` (rotated into the
world) when the lifter runs, else held briefly. Joints that cannot be recovered are left out of
the cloud. Markers on ``/skeleton_3d/fused/markers``; /diagnostics adds cameras used per joint,
reprojection error, late and incomplete instants.
"""
from __future__ import annotations

import array
import time
from collections import deque
from typing import Dict, Optional

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ..geometry import fusion as F
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


class _Person:
    def __init__(self, pid: int, fuser: F.CausalFuser):
        self.pid = pid
        self.fuser = fuser
        self.root: Optional[np.ndarray] = None
        self.last_t = 0.0


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
        self.config = F.FusionConfig(threshold_px=float(self.threshold_px))
        self.auto_tol = not tol > 0
        self.grouper = InstantGrouper(names, float(tol) if tol > 0 else 0.008, float(wait))
        self.periods = deque(maxlen=200)
        self.last_ns: Dict[str, int] = {}
        self.throttle = Throttle(5.0)
        self.persons: Dict[int, _Person] = {}
        self.next_pid = 0
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
        cams = [self.cameras[n] for n in self.names]
        if len(inst.frames) < len(self.names):
            self.incomplete += 1
        people = [inst.frames.get(n, {}) for n in self.names]
        groups = F.associate(cams, people, float(self.gate_px))
        t = inst.stamp_ns * 1e-9
        out_pts, out_conf, out_ids = [], [], []
        used_ids = set()
        for g in groups:
            kp = np.full((len(self.names), J, 3), np.nan)
            lifted = {}
            for c, pid in g.items():
                kp[c] = people[c][pid]
                got = self.lifted[self.names[c]].get(pid)
                if got is not None and abs(got[0] - inst.stamp_ns) < 0.25e9:
                    lifted[c] = got[1]
            person = self._person_for(kp, cams, t, used_ids, len(groups))
            if person is None:
                continue
            if any(a is not b for a, b in zip(person.fuser.cameras, cams)):
                person.fuser.cameras = list(cams)   # an image size changed since it began
            fr = person.fuser.step(kp, t, lifted or None)
            ok = np.all(np.isfinite(fr.points), -1)
            if not ok.any():
                continue
            person.root = fr.points[0] if ok[0] else np.nanmean(fr.points[ok], 0)
            person.last_t = t
            used_ids.add(person.pid)
            conf = np.where(fr.filled, 0.3, np.clip(fr.views / max(2, len(cams)), 0, 1) * 0.5
                            + 0.5)
            out_pts.append(fr.points)
            out_conf.append(np.where(ok, conf, 0.0))
            out_ids.append(person.pid)
            self.last_views = fr.views
            if np.isfinite(fr.error_px).any():
                self.last_error = float(np.nanmean(fr.error_px))
        for pid in [p for p, v in self.persons.items() if t - v.last_t > self.person_timeout_s]:
            del self.persons[pid]
        self._publish(inst.stamp_ns, out_pts, out_conf, out_ids)
        self.fused += 1
        self.diag.processed(time.perf_counter() - t0, len(out_ids))

    def _person_for(self, kp, cams, t, used_ids, n_groups) -> Optional[_Person]:
        """The fused person these detections continue (nearest root within the gate), or a
        new one when at least two cameras agree on it."""
        free = [p for p in self.persons.values() if p.pid not in used_ids]
        if n_groups == 1 and len(self.persons) == 1 and free:
            return free[0]     # one person, one track: nothing to match
        views = np.sum(np.isfinite(kp[..., 0]) & (np.nan_to_num(kp[..., 2]) > 0), 0)
        guess = None
        if (views >= 2).any():
            tri = F.triangulate(cams, kp)
            ok = np.all(np.isfinite(tri), -1)
            if ok.any():
                guess = tri[0] if ok[0] else tri[ok].mean(0)
        best, best_d = None, float(self.person_gate_m)
        for p in self.persons.values():
            if p.pid in used_ids or p.root is None or guess is None:
                continue
            d = float(np.linalg.norm(p.root - guess))
            if d < best_d:
                best, best_d = p, d
        if best is None and guess is None and len(self.persons) == 1:
            only = next(iter(self.persons.values()))   # one camera left: keep the one person
            best = only if only.pid not in used_ids else None
        if best is not None:
            return best
        if guess is None:
            return None
        person = _Person(self.next_pid, F.CausalFuser(cams, self.config))
        self.next_pid += 1
        self.persons[person.pid] = person
        return person

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
                'frames_late': self.grouper.late, 'persons_tracked': len(self.persons),
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
