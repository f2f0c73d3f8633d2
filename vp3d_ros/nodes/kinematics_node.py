"""kinematics node: a world-frame H36M-17 skeleton -> OpenSim inverse kinematics per frame ->
``sensor_msgs/JointState`` with the model's coordinate names.

Input: ``input_topic`` (default ``/skeleton_3d/fused``; a camera's ``/<cam>/skeleton_3d/world``
works the same), PointCloud2 in the skeleton_3d layout, REP-103 world (z up), metres,
absolute. Camera-frame ``skeleton_3d`` clouds are root-relative and cannot drive IK.

Each frame is solved from the previous frame's pose
(:class:`vp3d_ros.kinematics.live.WorldSkeletonIK`, warm-started
:class:`~vp3d_ros.kinematics.ik.FrameIK`), for one person (``person``: an id, or -1 for the
lowest id present). Output on ``output_topic`` (default ``/kinematics/joint_states``):
``name`` = every model coordinate (hip_flexion_r, knee_angle_r, ...), ``position`` in
radians (rotations) and metres (pelvis translations), header = the skeleton's header.
Coordinates no joint centre measures (ankle, subtalar, mtp, forearm, wrist) are held at 0.
A frame without the three pelvis joints, or with fewer than 6 joints, is not solved and
publishes nothing (counted as dropped in ``/diagnostics``), as ``vp3d-kinematics`` leaves it NaN.
With ``face_forward`` (default) the world is first turned about the vertical so that the
subject's first seen heading faces +X, as ``vp3d-kinematics`` does with the mean heading.
The model is ``model``: a scaled model from ``vp3d-kinematics`` of the same subject (best),
or the bundled generic one (unscaled: expect larger marker errors). Needs ``opensim``.
"""
from __future__ import annotations

import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState, PointCloud2

from ..kinematics.markers import MIN_MARKERS
from .ros_conversions import cloud_to_keypoints
from .common import ConfigError, Throttle, declare, run_node
from .diagnostics import NodeDiagnostics


class KinematicsNode(Node):
    def __init__(self, **kwargs):
        super().__init__('kinematics', **kwargs)
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        self.input_topic = p('input_topic', '/skeleton_3d/fused', 'world-frame H36M-17 '
                             'skeleton (REP-103, z up, metres)')
        output = p('output_topic', '/kinematics/joint_states', 'JointState topic')
        model = p('model', '', 'OpenSim model with the H36M-17 marker set; a scaled one from '
                  'vp3d-kinematics (default: the bundled generic model)')
        self.person = p('person', -1, 'person id to follow (-1: the lowest id in each frame)')
        self.face_forward = p('face_forward', True, "turn the world about the vertical so the "
                              "subject's first seen heading faces +X (the pelvis angles are "
                              'ground-frame Euler angles: tilt reads as tilt facing +X)')
        latest_only = p('latest_only', True, 'solve the newest skeleton and drop those IK has '
                        'not reached (live: the latency stays one solve, about 35 ms); false: '
                        'every skeleton in order, up to 50 queued (a replay slower than IK)')
        try:
            from ..kinematics import require_opensim
            require_opensim()
            from ..kinematics.live import WorldSkeletonIK
        except ImportError as e:
            raise ConfigError(f'kinematics: {e}') from None
        try:
            self.ik = WorldSkeletonIK(model or None, self.face_forward)
        except Exception as e:  # noqa: BLE001 - OpenSim raises RuntimeError subclasses
            raise ConfigError(f'kinematics: cannot load model {model or "(bundled)"}: '
                              f'{e}') from None
        self.names = self.ik.coordinates
        self.throttle = Throttle(5.0)
        self.last_ms = float('nan')
        # KEEP_LAST 1: a skeleton that arrives while IK runs replaces the one waiting, so a
        # 60 fps rig into a 28 fps solver does not build a queue (1.7 s behind at depth 50)
        latched = QoSProfile(depth=1 if latest_only else 50,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub = self.create_publisher(JointState, output, 10)
        self.diag = NodeDiagnostics(self, 'kinematics',
                                    extra=lambda: {'ik_ms_last': f'{self.last_ms:.1f}'})
        self.create_subscription(PointCloud2, self.input_topic, self.on_skeleton, latched)
        self.get_logger().info(f'IK of {self.input_topic} on {model or "the bundled model"} '
                               f'-> {output} ({len(self.names)} coordinates)')

    def on_skeleton(self, msg: PointCloud2):
        self.diag.received()
        try:
            persons = cloud_to_keypoints(msg)
        except ValueError as e:
            self.diag.error()
            self.throttle.log(self.get_logger().warn, 'bad', f'{self.input_topic}: {e}')
            return
        if not persons:
            return
        pid = min(persons) if self.person < 0 else self.person
        if pid not in persons:
            return
        xyz, _ = persons[pid]
        if xyz.shape != (17, 3):
            self.diag.error()
            self.throttle.log(self.get_logger().warn, 'shape',
                              f'{self.input_topic}: expected 17 3D joints, got {xyz.shape}')
            return
        t0 = time.perf_counter()
        t = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        turned = self.ik.turn is not None
        try:
            q = self.ik.step(xyz, t)
        except Exception as e:  # noqa: BLE001 - one bad frame must not stop the stream
            self.diag.error()
            self.throttle.log(self.get_logger().warn, 'ik', f'IK failed: {e}')
            return
        if not turned and self.ik.turn is not None:
            self.get_logger().info(f'subject turned by {self.ik.turn:.1f} deg about the '
                                   'vertical to face +X')
        if q is None:   # as offline: no pose without the pelvis
            self.diag.dropped()
            self.throttle.log(self.get_logger().info, 'unseen',
                              f'{self.input_topic}: frame without the three pelvis joints or '
                              f'with under {MIN_MARKERS} joints: not solved')
            return
        dt = time.perf_counter() - t0
        self.last_ms = 1e3 * dt
        out = JointState()
        out.header = msg.header
        out.name = self.names
        out.position = [float(v) for v in q]
        self.pub.publish(out)
        self.diag.processed(dt, persons=1)


def main(args=None):
    raise SystemExit(run_node(KinematicsNode, args))


if __name__ == '__main__':
    main()
