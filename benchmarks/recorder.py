"""Recorder: sustained messages per second with zero loss.

Publishes skeleton_3d-sized PointCloud2 messages (reliable, like the lifter) at increasing
rates for a few seconds each into a real recorder_node process, stops it with SIGTERM,
re-reads the bag from disk and counts. Reports each rate's loss and the highest rate with
none, against the rate the publisher actually achieved (the baseline in the same run).
"""
from __future__ import annotations

import argparse
import os
import signal
import time

import numpy as np

from common import Session


def run_rate(rate: float, seconds: float, storage: str):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header
    from vp3d_ros.io.bag_io import open_bag
    from vp3d_ros.nodes.ros_conversions import keypoints_to_cloud
    with Session() as s:
        rec = s.start('recorder_node', '-p', f'bag_dir:={s.tmp}', '-p', 'bag_name:=bench',
                      '-p', f'storage:={storage}', '-p', 'topics:=[/cam01/skeleton_3d]')
        pub = s.client.node.create_publisher(
            PointCloud2, '/cam01/skeleton_3d', QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        assert rec.wait_for_log('recording /cam01/skeleton_3d', 60), rec.log()
        s.client.wait_for_subscribers(pub, 1, 30)
        time.sleep(0.5)
        pose = np.random.default_rng(0).normal(size=(1, 17, 3))
        n = int(rate * seconds)
        t0 = time.perf_counter()
        for i in range(n):
            target = t0 + i / rate
            while time.perf_counter() < target:
                pass
            h = Header(frame_id='cam01')
            h.stamp.sec, h.stamp.nanosec = divmod(i * 1_000_000, 10 ** 9)
            pub.publish(keypoints_to_cloud(h, pose, np.ones((1, 17))))
        achieved = n / (time.perf_counter() - t0)
        time.sleep(1.0)
        rec.stop(signal.SIGTERM)
        with open_bag(os.path.join(s.tmp, 'bench')) as bag:
            got = bag.topics['/cam01/skeleton_3d'].count
    return n, got, achieved


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rates', default='200,500,1000,2000')
    ap.add_argument('--seconds', type=float, default=3.0)
    ap.add_argument('--storage', default='mcap')
    a = ap.parse_args(argv)
    best = 0.0
    for rate in [float(r) for r in a.rates.split(',')]:
        sent, got, achieved = run_rate(rate, a.seconds, a.storage)
        lost = sent - got
        print(f'target {rate:7.0f} msg/s  achieved {achieved:7.0f} msg/s  sent {sent:6d}  '
              f'recorded {got:6d}  lost {lost}')
        if lost == 0:
            best = max(best, achieved)
    print(f'recorder ({a.storage}): highest sustained rate with zero loss {best:.0f} msg/s '
          f'(a 4-camera 60 fps rig needs 480 msg/s: {best / 480:.1f}x headroom)')
    return best


if __name__ == '__main__':
    main()
