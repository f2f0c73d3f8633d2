"""Live fusion cost: four cameras' keypoints_2d at 30 fps into the fusion node over real DDS.

Four publishers (one per camera, as four pose2d would) send clouds of one moving person,
generated through a 4-camera calibration, at the rate given, each camera's stamp jittered by
a few ms as unsynchronised cameras are. Reported: latency added by fusion (arrival of
``/skeleton_3d/fused`` at the client minus the send time of the instant's last camera frame,
p50/p99; includes one DDS hop each way), the node's own processing time per instant
(/diagnostics), and its CPU share of one core.

    .venv/bin/python benchmarks/fusion_live.py [--seconds 20] [--fps 30]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import REPO, Session, pct  # noqa: F401  (sets sys.path)

SEC = 1_000_000_000


def cpu_seconds(pid: int) -> float:
    import os
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=20.0)
    ap.add_argument('--fps', type=float, default=30.0)
    a = ap.parse_args(argv)
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header
    from test_fusion import _look_at
    from vp3d_ros.geometry.calibration import Camera, save_calibration_toml
    from vp3d_ros.ros_conversions import keypoints_to_cloud
    names = ['cam01', 'cam02', 'cam03', 'cam04']
    cams = []
    for i, deg in enumerate((20, 110, 200, 290)):
        c = np.array([4 * np.cos(np.deg2rad(deg)), 4 * np.sin(np.deg2rad(deg)), 1.6 + 0.2 * i])
        R, t = _look_at(c, np.array([0, 0, 1.0]))
        cams.append(Camera(f'cam_0{i + 1}', [[900, 0, 480], [0, 900, 540], [0, 0, 1]],
                           [-0.1, 0.02, 0, 0, 0], R, t, (960, 1080)))
    rng = np.random.default_rng(0)
    body = rng.normal(0, 0.2, (17, 3)) * [1, 1, 2.5] + [0, 0, 1.0]
    n = int(a.seconds * a.fps)
    period = 1.0 / a.fps
    with Session() as s:
        calib = save_calibration_toml({c.name: c for c in cams}, f'{s.tmp}/calib.toml')
        node = s.start('fusion_node', '-p', f'cameras:=[{",".join(names)}]',
                       '-p', f'calibration:={calib}', '-p', 'use_lifted:=false')
        cl = s.client
        arrivals = {}

        def on_fused(msg):
            arrivals[msg.header.stamp.sec * SEC + msg.header.stamp.nanosec] = time.perf_counter()
        cl.node.create_subscription(PointCloud2, '/skeleton_3d/fused', on_fused,
                                    QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        cl.collect(DiagnosticArray, '/diagnostics')
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        pubs = [cl.node.create_publisher(PointCloud2, f'/{c}/keypoints_2d', qos) for c in names]
        for p in pubs:
            assert cl.wait_for_subscribers(p, 1, 60), node.log()
        time.sleep(1.0)
        sent_last = {}
        cpu0, t0 = cpu_seconds(node.proc.pid), time.perf_counter()
        for i in range(n):
            tick = t0 + i * period
            while time.perf_counter() < tick:
                time.sleep(0.0005)
            X = body + [0.3 * np.sin(i / 40), 0.2 * np.cos(i / 50), 0]
            base = 10 * SEC + int(i * period * SEC)
            order = rng.permutation(4)
            for c in order:
                ns = base + int(rng.integers(-4, 5)) * 1_000_000
                msg = keypoints_to_cloud(Header(frame_id=names[c]), cams[c].project(X)[None]
                                         + rng.normal(0, 1, (1, 17, 2)), np.ones((1, 17)), [0])
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, SEC)
                pubs[c].publish(msg)
            sent_last[i] = time.perf_counter()
        time.sleep(1.0)
        elapsed = time.perf_counter() - t0
        cpu = 100 * (cpu_seconds(node.proc.pid) - cpu0) / elapsed
        # fused stamps are the mean of the camera stamps: match instants by order
        got = sorted(arrivals.items())
        lat = [1e3 * (t - sent_last[i]) for i, (_, t) in enumerate(got) if i in sent_last]
        diag = {}
        for m in cl.messages('/diagnostics'):
            for st in m.status:
                if st.name == 'fusion':
                    diag = {kv.key: kv.value for kv in st.values}
    print(f'4 cameras x {a.fps:g} fps for {a.seconds:g} s: {len(got)} of {n} instants fused')
    print(f'latency added by fusion (last camera frame sent -> fused skeleton received, one DDS '
          f'hop each way): p50 {pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms')
    print(f'node processing per instant (diagnostics): mean {diag.get("processing_ms_mean")} ms, '
          f'p99 {diag.get("processing_ms_p99")} ms; CPU {cpu:.1f}% of one core; '
          f'late frames {diag.get("frames_late")}, incomplete instants '
          f'{diag.get("instants_incomplete")}')


if __name__ == '__main__':
    main()
