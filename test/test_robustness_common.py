"""Helpers shared by the test_robustness_* modules (this module holds no tests).

Nodes run as real processes in an isolated ROS domain (ros_harness); the test talks to them
over real DDS through an in-test rclpy Client. Because best-effort subscriptions (pose2d's
image input) can miss a sample published while discovery is still completing, inputs that
must arrive are re-sent until the node answers (``send_until``).
"""
from __future__ import annotations

import re
import subprocess
import time

import cv2
import numpy as np
import pytest

from conftest import CLIP
from ros_harness import Client, NodeProcess, ros_env, stamps_ns, unique_domain_id

W, H = 270, 480  # small frames of the bundled clip: fast MediaPipe on a loaded machine
SEC = 1_000_000_000

# H36M-17 pose in pixels of a 1000x1000 image (hip, r-leg, l-leg, spine..head, l-arm, r-arm)
BASE_POSE = np.array([
    [500, 500], [450, 500], [450, 650], [450, 800], [550, 500], [550, 650], [550, 800],
    [500, 400], [500, 300], [500, 260], [500, 220], [570, 310], [620, 400], [650, 480],
    [430, 310], [380, 400], [350, 480]], dtype=np.float64)


class Proc(NodeProcess):
    """ros_harness.NodeProcess plus /proc reads and exit waits."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kb(self) -> int:
        with open(f'/proc/{self.pid}/status') as f:
            return int(re.search(r'VmRSS:\s+(\d+)', f.read()).group(1))

    def count(self, text: str) -> int:
        return self.log().count(text)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


@pytest.fixture
def rig(tmp_path):
    """(start, client, tmp_path): start(exe, *ros_args, name=..., preexec_fn=...) -> Proc."""
    domain = unique_domain_id()
    env = ros_env(domain, tmp_path / 'ros_log')
    procs = []

    def start(exe, *ros_args, name=None, preexec_fn=None):
        proc = Proc(exe, ros_args, env, tmp_path / f'{name or exe}.log', preexec_fn)
        procs.append(proc)
        return proc

    client = Client(domain)
    client.env = env
    try:
        yield start, client, tmp_path
    finally:
        try:
            client.close()
        finally:
            for p in procs:
                p.stop(timeout=10)


def lifter_args(ckpt, width=W, height=H, camera='cam01'):
    """ros args of a lifter on a test checkpoint (causal, filter widths [3, 3, 3], 32
    channels) for one camera, the image size given as parameters."""
    return ('-p', f'cameras:=[{camera}]', '-p', f'checkpoint:={ckpt}',
            '-p', 'filter_widths:=[3, 3, 3]', '-p', 'channels:=32', '-p', 'causal:=true',
            '-p', f'image_width:={width}', '-p', f'image_height:={height}')


def clip_frames(n: int, size=(W, H)):
    cap = cv2.VideoCapture(CLIP)
    frames = []
    while len(frames) < n:
        ok, bgr = cap.read()
        assert ok, 'bundled clip unreadable'
        frames.append(cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA),
                                   cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def set_stamp(msg, ns: int, frame_id: str = 'cam01_optical'):
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(ns), SEC)
    msg.header.frame_id = frame_id
    return msg


def image(frame, ns: int):
    from vp3d_ros.nodes.ros_conversions import numpy_to_image
    return set_stamp(numpy_to_image(frame, 'rgb8'), ns)


def reliable(depth=10):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def has_stamp(client, topic, ns: int) -> bool:
    return ns in stamps_ns(client.messages(topic))


def send_until(client, pub, msg, done, timeout=60.0, every=2.0) -> bool:
    """Publish ``msg`` until ``done()``: re-sends cover a best-effort reader that matched late
    (a repeated stamp is harmless where it is used)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pub.publish(msg)
        if client.wait_for(done, min(every, max(0.0, end - time.monotonic()))):
            return True
    return False


def handshake(client, pub, make_msg, first_ns: int, topic: str, timeout=60.0, every=2.0):
    """Until ``topic`` answers one of them, publish fresh inputs stamped first_ns,
    first_ns + 1 ms, ...: DDS matching between processes can take seconds on a loaded
    machine, and a node drops a repeated stamp, so each retry needs a new one. Returns the
    stamps used."""
    used = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ns = first_ns + len(used) * 1_000_000
        used.append(ns)
        pub.publish(make_msg(ns))
        if client.wait_for(lambda: set(used) & set(stamps_ns(client.messages(topic))), every):
            return used
    raise AssertionError(f'no answer on {topic} within {timeout} s')


def cloud(ns: int, poses, conf=None, ids=None, frame_id='cam01_optical'):
    """(P, J, D) or (J, D) pixel poses -> keypoints cloud (our schema) stamped ``ns``."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header
    from vp3d_ros.nodes.ros_conversions import keypoints_to_cloud
    poses = np.asarray(poses, dtype=np.float64)
    poses = poses[None] if poses.ndim == 2 else poses
    conf = np.full(poses.shape[:2], 0.9) if conf is None else np.asarray(conf).reshape(poses.shape[:2])
    sec, nsec = divmod(int(ns), SEC)
    header = Header(stamp=Time(sec=sec, nanosec=nsec), frame_id=frame_id)
    return keypoints_to_cloud(header, poses, conf, ids)


def pose_at(i: int, shift=0.0):
    """A moving H36M pose (frame i), so consecutive frames differ like real motion."""
    p = BASE_POSE.copy()
    p[:, 0] += 20 * np.sin(i / 5.0) + shift
    p[12:14, 1] -= 30 * np.sin(i / 3.0)
    return p


def diag_status(client, hardware_id: str):
    """Latest /diagnostics status of one node (by fully qualified name) or None."""
    for arr in reversed(client.messages('/diagnostics')):
        for st in arr.status:
            if st.hardware_id == hardware_id:
                return st
    return None


def diag_values(client, hardware_id: str) -> dict:
    st = diag_status(client, hardware_id)
    return {} if st is None else {kv.key: kv.value for kv in st.values}


COMMON_DIAG_KEYS = {'input_rate_hz', 'received', 'processed', 'dropped', 'errors',
                    'processing_ms_mean', 'processing_ms_p99'}


def assert_alive_and_clean(proc):
    """Still running, and no exception escaped into the log."""
    assert proc.alive(), f'node died (rc={proc.proc.returncode}):\n{proc.log()}'
    assert 'Traceback' not in proc.log(), proc.log()
