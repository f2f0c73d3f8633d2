"""world node: each calibrated camera's lifted ``skeleton_3d`` -> ``/<cam>/skeleton_3d/world``
(PointCloud2 in the skeleton_3d layout, metres, absolute positions in the calibration's world
frame, REP-103 z up for lab rigs; ``frame_id`` = ``world_frame``), one camera at a time.

Per frame and person, one :class:`~vp3d_ros.geometry.world.CausalPlacement` per (camera,
person) track places the root-relative skeleton: the
root translation that makes it project onto the same frame's ``keypoints_2d`` (matched by
header stamp and person id) through the calibrated camera (distortion included,
confidence-weighted, Gauss-Newton), scaled to ``subject_height_m`` when given (the
track's size measured over its frames so far, :class:`~vp3d_ros.geometry.world.RunningHeight`,
not each frame's pose: a sitting frame is not stretched to the standing height), smoothed
causally per (camera, person) track (level + trend filters: no look-ahead), then moved into
the world (``X_world = R^T (X_cam - t)``). Pixels are read in the images pose2d saw
(``keypoints_2d/image_info``): the calibration is scaled to a downscaled stream. A skeleton
whose 2D frame has not arrived yet waits for it up to ``max_wait_s``. Markers on
``/<cam>/skeleton_3d/world/markers``. With ``use_floor`` the feet standing on the world's
floor (``floor_z``) also tell the depth, as offline but from the past only
(:class:`~vp3d_ros.geometry.world.CausalFloorScale`: the low quantile of the last 2 s);
skipped by itself while the world's z is not the body's up or the floor disagrees with the
skeleton's size. With ``refit_limbs`` knees, ankles, elbows and wrists are then refit to
the 2D with one length per bone (:class:`~vp3d_ros.geometry.limbs.CausalLimbs`: lengths
from the track's frames so far, smooth from the two before).

Without a calibration, ``estimate_ground`` places each camera's skeletons in a ground frame
of its own that its subject tells (:class:`~vp3d_ros.geometry.ground.SubjectGround`, as
``vp3d-offline --estimate-ground``): intrinsics guessed from the image size pose2d reports
(focal = the long side), gravity and the floor from the first ``ground_standing_frames``
upright frames (or, after ``ground_max_frames`` frames, from the subject's balance,
:func:`~vp3d_ros.geometry.ground.estimate_up`); nothing is published until then
(``/diagnostics`` ``ground``), then
``/<cam>/skeleton_3d/world`` in frame ``<cam>_ground`` (REP-103: x along the optical axis
on the floor, y left, z up, floor z = 0 under the camera), the floor cue off.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Dict, Tuple

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ..geometry import world as W
from ..geometry.ground import SubjectGround
from .ros_conversions import cloud_to_keypoints, keypoints_to_cloud
from .common import (ConfigError, Throttle, camera_names, declare, rig_cameras, run_node,
                     steady_timer)
from .diagnostics import NodeDiagnostics
from .markers import skeleton_markers

J = 17
KEEP_FRAMES = 600        # 2D frames kept per camera while their skeleton is on its way


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class _Track:
    def __init__(self, placement: W.CausalPlacement):
        self.placement = placement
        self.last_ns = 0


class WorldNode(Node):
    def __init__(self, **kwargs):
        super().__init__('world', **kwargs)
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        cameras = p('cameras', [''], "camera namespaces, e.g. ['cam01', 'cam02'] (topics "
                    '/<cam>/keypoints_2d and /<cam>/skeleton_3d)')
        calibration = p('calibration', '', 'calibration file (Pose2Sim/Anipose TOML, JSON, '
                        'YAML, OpenCV); camera names match the namespaces (cam01 = cam_01)')
        self.world_frame = p('world_frame', 'world', 'frame_id of the world skeletons')
        self.height = p('subject_height_m', 0.0, "subject height (m) to scale the skeleton "
                        "to; 0 = the lifter's scale")
        self.fps = p('fps', 30.0, 'camera frame rate, for the time constants of the root filter')
        self.track_timeout_s = p('track_timeout_s', 1.0, 'a person unseen this long starts a '
                                 'fresh root filter')
        self.use_floor = p('use_floor', True, "also take the depth from the feet standing on "
                           "the world's floor (skipped by itself when it does not fit)")
        self.floor_z = p('floor_z', 0.0, "height of the floor in the calibration's world "
                         '(Pose2Sim, Qualisys, Human3.6M: 0)')
        self.refit_limbs = p('refit_limbs', True, 'refit knees, ankles, elbows and wrists to '
                             'the 2D with one length per bone, from the frames so far '
                             '(geometry.limbs.CausalLimbs, as vp3d-offline offline)')
        self.max_wait_s = p('max_wait_s', 0.5, 'a skeleton_3d frame whose keypoints_2d has not '
                            'arrived yet waits this long for it (the topics are not ordered)')
        estimate = p('estimate_ground', False, 'without a calibration: each camera in a ground '
                     'frame of its own, gravity and floor from its subject\'s first upright '
                     'frames (frame_id <cam>_ground)')
        self.ground_frames = p('ground_standing_frames', 30, 'estimate_ground: upright frames '
                               'the ground is estimated from')
        self.ground_max = p('ground_max_frames', 300, 'estimate_ground: frames after which the '
                            'ground is estimated all the same (from the subject\'s balance)')
        if self.height < 0 or 0 < self.height <= W.HEIGHT_OFFSET_M:
            raise ConfigError(f'world: subject_height_m must be 0 (the lifter\'s scale) or a '
                              f'standing height in metres, got {self.height}')
        if estimate and calibration:
            raise ConfigError('world: estimate_ground is for cameras without a calibration; '
                              f'{calibration} gives the world')
        self.grounds = None   # estimate_ground: camera -> SubjectGround (once its size is known)
        if estimate:
            names = camera_names('world', cameras)
            self.cameras, self.grounds = None, {n: None for n in names}
            self.use_floor = False    # the ground came from the feet: no second floor cue
        else:
            names, self.cameras = rig_cameras('world', cameras, calibration)
        self.names = names
        self.throttle = Throttle(5.0)
        self.frames_2d: Dict[str, OrderedDict] = {n: OrderedDict() for n in names}
        self.pending: Dict[str, OrderedDict] = {n: OrderedDict() for n in names}  # ns -> (msg, t)
        self.tracks: Dict[Tuple[str, int], _Track] = {}
        self.unmatched = 0
        self.placed = 0
        latched = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        one = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pubs, self.pub_markers = {}, {}
        for n in names:
            self.pubs[n] = self.create_publisher(PointCloud2, f'/{n}/skeleton_3d/world', latched)
            self.pub_markers[n] = self.create_publisher(
                MarkerArray, f'/{n}/skeleton_3d/world/markers', 10)
            self.create_subscription(CameraInfo, f'/{n}/keypoints_2d/image_info',
                                     lambda m, n=n: self.on_image_info(n, m), one)
            self.create_subscription(PointCloud2, f'/{n}/keypoints_2d',
                                     lambda m, n=n: self.on_keypoints(n, m), latched)
            self.create_subscription(PointCloud2, f'/{n}/skeleton_3d',
                                     lambda m, n=n: self.on_skeleton(n, m), latched)
        self.diag = NodeDiagnostics(self, 'world', extra=self._diag_extra)
        steady_timer(self, 1.0, self._forget)
        steady_timer(self, 0.05, self._expire)
        self.get_logger().info(
            f'world skeletons of {", ".join(names)}: ground from the subject (after '
            f'{self.ground_frames} upright frames) on /<cam>/skeleton_3d/world (frame '
            "'<cam>_ground')" if estimate else
            f'world skeletons of {self.cameras.describe()} '
            f'from {calibration} on /<cam>/skeleton_3d/world (frame {self.world_frame!r})')

    def on_image_info(self, cam: str, msg: CameraInfo):
        if not msg.width or not msg.height:
            return
        if self.grounds is not None:   # a new size: the ground is estimated afresh
            g = self.grounds[cam]
            if g is None or tuple(g.guess.size) != (msg.width, msg.height):
                from ..geometry.calibration import guessed_camera
                self.grounds[cam] = SubjectGround(
                    guessed_camera(msg.width, msg.height, name=cam), int(self.ground_frames),
                    int(self.ground_max))
            return
        why = self.cameras.image_size(cam, msg.width, msg.height)
        if why:
            self.get_logger().error(f'{cam}: {why}; no world skeletons from it')

    def _usable(self, cam: str) -> bool:
        if self.grounds is not None:
            return self.grounds[cam] is not None
        return self.cameras.usable(cam)

    def on_keypoints(self, cam: str, msg: PointCloud2):
        try:
            people = cloud_to_keypoints(msg, J)
        except ValueError as e:
            self.throttle.log(self.get_logger().warning, f'bad2d/{cam}',
                              f'{cam}: keypoints_2d skipped: {e}')
            return
        frames = self.frames_2d[cam]
        frames[_ns(msg.header.stamp)] = {pid: (kp[:, :2], conf) for pid, (kp, conf)
                                         in people.items() if kp.shape[1] == 2}
        while len(frames) > KEEP_FRAMES:
            frames.popitem(last=False)
        waiting = self.pending[cam].pop(_ns(msg.header.stamp), None)
        if waiting is not None:
            self.on_skeleton(cam, waiting[0])

    def _expire(self):
        """Skeletons whose keypoints_2d did not come within max_wait_s are given up."""
        now = time.monotonic()
        for cam, waiting in self.pending.items():
            while waiting and now - next(iter(waiting.values()))[1] > self.max_wait_s:
                waiting.popitem(last=False)
                self.unmatched += 1
                self.diag.dropped()
                self.throttle.log(self.get_logger().warning, f'nomatch/{cam}',
                                  f'{cam}: no keypoints_2d with the stamp of a skeleton_3d '
                                  f'frame within {self.max_wait_s} s; not placed')

    def on_skeleton(self, cam: str, msg: PointCloud2):
        ns = _ns(msg.header.stamp)
        if ns not in self.frames_2d[cam] and self._usable(cam):
            self.pending[cam][ns] = (msg, time.monotonic())   # its 2D is still on its way
            while len(self.pending[cam]) > KEEP_FRAMES:
                self.pending[cam].popitem(last=False)
            return
        self.diag.received()
        t0 = time.perf_counter()
        try:
            people = cloud_to_keypoints(msg, J)
        except ValueError as e:
            self.diag.dropped()
            self.throttle.log(self.get_logger().warning, f'bad3d/{cam}',
                              f'{cam}: skeleton_3d skipped: {e}')
            return
        frame = self.frames_2d[cam].get(ns)
        if frame is None or not self._usable(cam):
            self.unmatched += 1
            self.diag.dropped()
            return
        ground = self.grounds[cam] if self.grounds is not None else None
        if ground is not None and ground.estimate is None:
            self._observe_ground(cam, ground, people, frame)
            self.diag.processed(time.perf_counter() - t0, 0)
            return
        camera = ground.estimate.camera if ground is not None else self.cameras[cam]
        pts, confs, ids = [], [], []
        for pid, (pose, conf3) in people.items():
            if pose.shape[1] != 3 or pid not in frame or not np.isfinite(pose).all():
                continue
            kp, conf = frame[pid]
            track = self.tracks.get((cam, pid))
            if track is None:
                track = self.tracks[(cam, pid)] = _Track(W.CausalPlacement(
                    camera, float(self.fps), float(self.floor_z) if self.use_floor else None,
                    float(self.height), bool(self.refit_limbs)))
            track.last_ns = ns
            placed = track.placement.step(pose, kp, conf, camera)
            if placed is None:
                continue
            pts.append(camera.to_world(placed))
            confs.append(conf3)
            ids.append(pid)
        header = Header(stamp=msg.header.stamp, frame_id=f'{cam}_ground' if ground is not None
                        else self.world_frame)
        if pts:
            P, C = np.stack(pts), np.stack(confs)
        else:
            P, C = np.zeros((0, J, 3)), np.zeros((0, J))
        self.pubs[cam].publish(keypoints_to_cloud(header, P, C, ids))
        if pts:
            self.pub_markers[cam].publish(skeleton_markers(header, P, ids))
        self.placed += 1
        self.diag.processed(time.perf_counter() - t0, len(ids))

    def _observe_ground(self, cam: str, ground, people: dict, frame: dict) -> None:
        """Until the ground is known: each person placed through the intrinsics-only camera
        (camera frame) feeds the estimate; nothing is published."""
        for pid, (pose, _) in people.items():
            if pose.shape[1] != 3 or pid not in frame or not np.isfinite(pose).all():
                continue
            kp, conf = frame[pid]
            rel = pose - pose[:1]
            t = W.solve_root(rel[None], kp[None], ground.guess, conf[None])[0]
            if np.isfinite(t).all() and ground.observe(rel + t) is not None:
                g = ground.estimate
                self.get_logger().info(
                    f'{cam}: ground from the subject: {g.said()}; world skeletons in '
                    f'frame {cam}_ground')
                return

    def _forget(self):
        """Root filters of persons unseen for track_timeout_s restart afresh."""
        latest = {}
        for (cam, _), tr in self.tracks.items():
            latest[cam] = max(latest.get(cam, 0), tr.last_ns)
        limit = int(self.track_timeout_s * 1e9)
        for key in [k for k, tr in self.tracks.items() if latest[k[0]] - tr.last_ns > limit]:
            del self.tracks[key]

    def _diag_extra(self):
        extra = {}
        if self.grounds is not None:
            extra['ground'] = ', '.join(
                f'{c}: ' + ('no image size yet' if g is None else
                            f'estimating ({g.standing} of {g.min_standing} upright)'
                            if g.estimate is None else
                            f'pitch {g.estimate.pitch_deg:.1f}, roll {g.estimate.roll_deg:.1f}, '
                            f'height {g.estimate.height_m:.2f} m')
                for c, g in self.grounds.items())
        return {**extra, 'frames_placed': self.placed, 'frames_unmatched': self.unmatched,
                'tracks': len(self.tracks),
                'tracks_on_floor': sum(1 for t in self.tracks.values()
                                       if t.placement.floor is not None
                                       and t.placement.floor.active)}


def main(args=None):
    raise SystemExit(run_node(WorldNode, args))


if __name__ == '__main__':
    main()
