"""Live joint angles: world skeletons into the kinematics node over real DDS, at a camera rate.

Held-out Human3.6M S8 ``walking_1`` (REP-103 z up, as the fusion node publishes it) is sent on
``/skeleton_3d/fused`` at ``--fps`` for ``--seconds``, to a ``kinematics_node`` process (the
bundled model), once with ``latest_only:=false`` (every skeleton queued, up to 50) and once
with ``latest_only:=true`` (the default: the newest skeleton is solved, the ones IK has not
reached are dropped). Reported per mode: joint-state messages out of skeletons sent, and the
latency from a skeleton's send time to its joint state's arrival at the client (p50 / p99 /
max), i.e. how far behind the angles run.

    .venv/bin/python benchmarks/kinematics_live.py [--fps 60] [--seconds 10]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from common import REPO, Session, pct

S8 = os.path.join(os.path.dirname(REPO), 'shared', 'data', 'mocap', 'h36m17', 'h36m_S8.npz')
SEC = 1_000_000_000


def run(mode: bool, xyz: np.ndarray, fps: float, seconds: float) -> dict:
    from builtin_interfaces.msg import Time
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState, PointCloud2
    from std_msgs.msg import Header
    from vp3d_ros.nodes.ros_conversions import keypoints_to_cloud
    n = int(fps * seconds)
    with Session() as s:
        node = s.start('kinematics_node', '-p', f'latest_only:={"true" if mode else "false"}')
        assert node.wait_for_log('IK of', 120), node.log()
        arrivals = {}
        s.client.node.create_subscription(
            JointState, '/kinematics/joint_states',
            lambda m: arrivals.setdefault(m.header.stamp.sec * SEC + m.header.stamp.nanosec,
                                          time.perf_counter()), 1000)
        pub = s.client.node.create_publisher(PointCloud2, '/skeleton_3d/fused', QoSProfile(
            depth=50, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        assert s.client.wait_for_subscribers(pub, 1, 60)
        time.sleep(1.0)
        sent = {}
        t0 = time.perf_counter()
        for i in range(n):
            while time.perf_counter() < t0 + i / fps:
                time.sleep(0.0005)
            ns = 10 * SEC + int(i * SEC / fps)
            msg = keypoints_to_cloud(Header(stamp=Time(sec=ns // SEC, nanosec=ns % SEC),
                                            frame_id='world'), xyz[i % len(xyz)][None],
                                     np.ones((1, 17)), [0])
            pub.publish(msg)
            sent[ns] = time.perf_counter()
        s.client.wait_for(lambda: max(arrivals, default=0) >= max(sent), 30)
        time.sleep(0.5)
    lat = [1e3 * (t - sent[k]) for k, t in arrivals.items() if k in sent]
    return {'sent': n, 'solved': len(lat), 'p50': pct(lat, 50), 'p99': pct(lat, 99),
            'max': max(lat, default=float('nan'))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--fps', type=float, default=60.0)
    ap.add_argument('--seconds', type=float, default=10.0)
    a = ap.parse_args(argv)
    if not os.path.exists(S8):
        print(f'needs {S8} (../shared data)', file=sys.stderr)
        return 2
    xyz = np.load(S8)['walking_1'].astype(np.float64)
    xyz[..., :2] -= xyz[:, 0, :2].mean(axis=0)
    print(f'S8 walking_1 at {a.fps:g} fps for {a.seconds:g} s into kinematics_node '
          '(bundled model), latency = skeleton sent -> joint state received')
    for mode in (False, True):
        r = run(mode, xyz, a.fps, a.seconds)
        print(f'latest_only={str(mode).lower():5s}: {r["solved"]} of {r["sent"]} skeletons '
              f'solved ({r["solved"] / a.seconds:.1f} per s); latency p50 {r["p50"]:.0f} ms, '
              f'p99 {r["p99"]:.0f} ms, max {r["max"]:.0f} ms', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
