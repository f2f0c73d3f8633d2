"""pose2d node vs a bare MediaPipe loop on the same real frames, measured in one run.

- Throughput: output frames per second of the pose2d node fed the frames over DDS at 1.25x
  the bare rate (it works on the newest frame: decoding, MediaPipe, mapping, publishing and
  DDS transport all included) / frames per second of a bare MediaPipe loop over the same
  frames (goal >= 0.9).
- End-to-end latency, image stamp -> skeleton_3d (causal lifter), p50/p99, against the bare
  MediaPipe time per frame: overhead = latency - MediaPipe time (goal p99 <= 10 ms).
- The ROS transport floor in the same run: the round trip of the same images through a
  do-nothing rclpy node (``echo_node.py``: image in, empty cloud out), which every Python
  node on camera images pays before doing any work; the overhead is also given net of it.

Frames: the bundled clip played forwards then backwards (continuous motion) up to
``--frames``. Latency is measured in blocks that alternate with bare MediaPipe blocks over
the same frames while the nodes stay up, so drift of this shared VM hits both sides.
"""
from __future__ import annotations

import argparse
import os
import time

from common import REPO, Session, clip_frames, pct


def bare_loop(frames):
    from vp3d_ros.vision.pose_estimation import create_estimator
    est = create_estimator('legacy', video_mode=True)
    times = []
    for i, f in enumerate(frames):
        t = time.perf_counter()
        est.process(f, i * 33)
        times.append(time.perf_counter() - t)
    est.close()
    return times


def node_run(frames, with_lifter: bool, bare_fps: float = 30.0):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from vp3d_ros.nodes.ros_conversions import numpy_to_image
    h, w = frames[0].shape[:2]
    with Session() as s:
        params = os.path.join(REPO, 'config', 'vp3d.yaml')
        pose = s.start('pose2d_node', '--params-file', params, '-r', '__ns:=/cam01')
        lifter = (s.start('lifter_node', '--params-file', params, '-p', 'mode:=causal')
                  if with_lifter else None)
        c = s.client
        arrivals = {'/cam01/keypoints_2d': {}, '/cam01/skeleton_3d': {}}
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for topic, seen in arrivals.items():
            c.node.create_subscription(
                PointCloud2, topic, lambda m, seen=seen: seen.__setitem__(
                    m.header.stamp.sec * 10 ** 9 + m.header.stamp.nanosec, time.time_ns()), qos)
        out = arrivals['/cam01/skeleton_3d' if with_lifter else '/cam01/keypoints_2d']
        kp = arrivals['/cam01/keypoints_2d']
        pub = c.node.create_publisher(Image, '/cam01/image', qos)
        info = c.node.create_publisher(CameraInfo, '/cam01/camera_info', qos)
        assert pose.wait_for_log('pose2d ready', 120), pose.log()
        if lifter:
            assert lifter.wait_for_log('lifter ready', 120), lifter.log()
        c.wait_for_subscribers(pub, 1, 60)
        c.wait_for_subscribers(info, 2 if with_lifter else 1, 60)
        msgs = [numpy_to_image(f, 'rgb8') for f in frames]
        latencies = []
        # Latency, frame by frame; warm-up frames (MediaPipe graph start) are not timed.
        warm = 5
        for i, msg in enumerate(msgs):
            now = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 10 ** 9)
            info.publish(CameraInfo(header=msg.header, width=w, height=h))
            pub.publish(msg)
            if not c.wait_for(lambda: now in kp, 30, poll=0.0005):
                raise RuntimeError(f'frame {i} got no keypoints_2d')
            if with_lifter:  # frames where MediaPipe saw nobody yield no skeleton
                c.wait_for(lambda: now in out, 0.5, poll=0.0005)
            if i >= warm and now in out:
                latencies.append((out[now] - now) / 1e9)
        # Throughput: the same frames streamed at 1.25x the bare MediaPipe rate; the node
        # works on the newest frame, so its output rate is its throughput.
        n_before = len(kp)
        period = 1.0 / (1.25 * bare_fps)
        t0_wall = time.time_ns()
        t0 = time.perf_counter()
        for i, msg in enumerate(msgs * 2):
            while time.perf_counter() < t0 + i * period:
                time.sleep(0.0002)
            now = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 10 ** 9)
            pub.publish(msg)
        c.wait_for(lambda: False, 0.3)
        got = len(kp) - n_before
        fps = got / ((max(kp.values()) - t0_wall) / 1e9)
    return fps, latencies


class Arrivals(dict):
    """stamp -> arrival time (ns), filled by a subscription callback; ``wait`` blocks on a
    condition instead of polling, so the measuring client does not wake 2000 times a
    second beside MediaPipe on a 2-core machine."""

    def __init__(self):
        super().__init__()
        import threading
        self._cv = threading.Condition()

    def record(self, msg):
        with self._cv:
            self[msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec] = time.time_ns()
            self._cv.notify_all()

    def wait(self, stamp: int, timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: stamp in self, timeout)


def latency_interleaved(frames, blocks: int = 5, skip: int = 3):
    """Image stamp -> skeleton_3d (causal) in lockstep, in blocks alternating with the bare
    MediaPipe loop over the same frames, while the nodes stay up: drift of the shared VM
    (MediaPipe's own time per frame moves by a third between minutes here) hits both sides.
    Returns (bare times, skeleton latencies, keypoint latencies), seconds, the first
    ``skip`` frames of each block (tracker (re)start) left out on both sides."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from vp3d_ros.nodes.ros_conversions import numpy_to_image
    h, w = frames[0].shape[:2]
    bare, sk_lat, kp_lat = [], [], []
    with Session() as s:
        params = os.path.join(REPO, 'config', 'vp3d.yaml')
        pose = s.start('pose2d_node', '--params-file', params, '-r', '__ns:=/cam01')
        lifter = s.start('lifter_node', '--params-file', params, '-p', 'mode:=causal')
        c = s.client
        arrivals = {'/cam01/keypoints_2d': Arrivals(), '/cam01/skeleton_3d': Arrivals()}
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for topic, seen in arrivals.items():
            c.node.create_subscription(PointCloud2, topic, seen.record, qos)
        kp, sk = arrivals['/cam01/keypoints_2d'], arrivals['/cam01/skeleton_3d']
        pub = c.node.create_publisher(Image, '/cam01/image', qos)
        info = c.node.create_publisher(CameraInfo, '/cam01/camera_info', qos)
        assert pose.wait_for_log('pose2d ready', 120), pose.log()
        assert lifter.wait_for_log('lifter ready', 120), lifter.log()
        c.wait_for_subscribers(pub, 1, 60)
        c.wait_for_subscribers(info, 2, 60)
        msgs = [numpy_to_image(f, 'rgb8') for f in frames]
        size = -(-len(frames) // blocks)
        for b in range(0, len(frames), size):
            bare += bare_loop(frames[b:b + size])[skip:]
            for i, msg in enumerate(msgs[b:b + size]):
                now = time.time_ns()
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 10 ** 9)
                info.publish(CameraInfo(header=msg.header, width=w, height=h))
                pub.publish(msg)
                if not kp.wait(now, 30):
                    raise RuntimeError(f'frame {b + i} got no keypoints_2d')
                sk.wait(now, 0.5)  # nobody seen: no skeleton
                if i >= skip and now in sk:
                    sk_lat.append((sk[now] - now) / 1e9)
                    kp_lat.append((kp[now] - now) / 1e9)
    return bare, sk_lat, kp_lat


def echo_run(frames):
    """Image stamp -> echo arrival through a do-nothing node: the transport floor."""
    import subprocess
    import sys
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, PointCloud2
    from vp3d_ros.nodes.ros_conversions import numpy_to_image
    with Session() as s:
        log = open(os.path.join(s.tmp, 'echo.log'), 'w')
        proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'benchmarks', 'echo_node.py')],
                                env=s.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            c = s.client
            seen = Arrivals()
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            c.node.create_subscription(PointCloud2, '/echo', seen.record, qos)
            pub = c.node.create_publisher(Image, '/image', qos)
            c.wait_for_subscribers(pub, 1, 60)
            c.wait_for(lambda: c.node.count_publishers('/echo') > 0, 60)
            msgs = [numpy_to_image(f, 'rgb8') for f in frames]
            latencies = []
            for i, msg in enumerate(msgs):
                now = time.time_ns()
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 10 ** 9)
                pub.publish(msg)
                if seen.wait(now, 5) and i >= 5:
                    latencies.append((seen[now] - now) / 1e9)
                time.sleep(0.03)  # about a frame of MediaPipe: the node sleeps between frames
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
    return latencies


def main(argv=None):
    from vp3d_ros.core.allocator import keep_large_buffers
    keep_large_buffers()  # as the nodes and vp3d-offline do: the baselines get it too
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=300)
    ap.add_argument('--width', type=int, default=540, help='frame size (the clip is 1080x1920)')
    ap.add_argument('--height', type=int, default=960)
    a = ap.parse_args(argv)
    clip = clip_frames(None, (a.width, a.height))
    frames = []
    while len(frames) < a.frames:
        frames += clip if len(frames) // len(clip) % 2 == 0 else clip[::-1]
    frames = frames[:a.frames]
    bare_first = bare_loop(frames)[5:]
    bare_fps = len(bare_first) / sum(bare_first)
    node_fps, _ = node_run(frames, with_lifter=False, bare_fps=bare_fps)
    bare, lat_sk, lat_kp = latency_interleaved(frames)
    floor = echo_run(frames)
    mp50, mp99 = 1e3 * pct(bare, 50), 1e3 * pct(bare, 99)
    print(f'frames {len(frames)} at {a.width}x{a.height}')
    print(f'bare MediaPipe loop      {bare_fps:7.1f} frames/s')
    print(f'pose2d node (streamed)   {node_fps:7.1f} frames/s  ratio {node_fps / bare_fps:.2f} (goal >= 0.9)')
    l50, l99 = 1e3 * pct(lat_sk, 50), 1e3 * pct(lat_sk, 99)
    print(f'latency, {len(lat_sk)} frames in blocks interleaved with {len(bare)} bare MediaPipe '
          f'frames (bare p50 {mp50:.1f} ms, p99 {mp99:.1f} ms):')
    print(f'image stamp -> skeleton_3d (causal): p50 {l50:.1f} ms, p99 {l99:.1f} ms; '
          f'overhead over bare MediaPipe p50 {l50 - mp50:.1f} ms, p99 {l99 - mp99:.1f} ms '
          '(goal p99 overhead <= 10 ms)')
    print(f'image stamp -> keypoints_2d (same frames): p50 {1e3 * pct(lat_kp, 50):.1f} ms, '
          f'p99 {1e3 * pct(lat_kp, 99):.1f} ms')
    f50, f99 = 1e3 * pct(floor, 50), 1e3 * pct(floor, 99)
    print(f'ROS transport floor (same images through a do-nothing rclpy node): p50 {f50:.1f} ms, '
          f'p99 {f99:.1f} ms; overhead net of it p50 {l50 - mp50 - f50:.1f} ms, '
          f'p99 {l99 - mp99 - f99:.1f} ms')
    return {'ratio': node_fps / bare_fps, 'overhead_p99_ms': l99 - mp99, 'floor_p99_ms': f99}


if __name__ == '__main__':
    main()
