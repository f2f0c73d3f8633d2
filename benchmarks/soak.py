"""Soak: N cameras at R fps of real frames for M minutes through pose2d, lifter, recorder.

Real frames of the 4-camera lab clip (../shared/data/video/pose2sim_balancing, looped with
increasing stamps; the bundled clip when that folder is absent). Reports fps per camera at
each stage, pose2d input drops (counted by the nodes, from /diagnostics), lifter->recorder
loss (skeletons the recorder's bag holds vs the ones a second subscriber saw), image-stamp ->
skeleton_3d latency percentiles, and each node's RSS over time. Writes a JSON report.

    python benchmarks/soak.py --minutes 10 --cameras 4 --fps 30 --out docs/soak.json
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import time
from collections import defaultdict

import numpy as np

from common import CLIP, REPO, Session, clip_frames, pct

SHARED = os.path.join(os.path.dirname(REPO), 'shared', 'data', 'video', 'pose2sim_balancing')


def rss_mb(pid: int) -> float:
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float('nan')


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (/proc/<pid>/stat, fields 14 and 15)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, IndexError, ValueError):
        return float('nan')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--minutes', type=float, default=10.0)
    ap.add_argument('--cameras', type=int, default=4)
    ap.add_argument('--fps', type=float, default=30.0)
    ap.add_argument('--width', type=int, default=540)
    ap.add_argument('--height', type=int, default=960)
    ap.add_argument('--out', default=None)
    a = ap.parse_args(argv)
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from vp3d_ros.io.bag_io import open_bag
    from vp3d_ros.nodes.ros_conversions import numpy_to_image

    cams = [f'cam{i + 1:02d}' for i in range(a.cameras)]
    clips = [os.path.join(SHARED, f'{c}.mp4') for c in cams]
    clips = [p if os.path.isfile(p) else CLIP for p in clips]
    frames = {c: [numpy_to_image(f, 'rgb8') for f in clip_frames(None, (a.width, a.height), p)]
              for c, p in zip(cams, clips)}
    params = os.path.join(REPO, 'config', 'vp3d.yaml')
    report = {'config': vars(a), 'clips': clips}
    with Session() as s:
        c = s.client
        rec = s.start('recorder_node', '--params-file', params, '-p', f'bag_dir:={s.tmp}',
                      '-p', 'bag_name:=soak', name='recorder')
        lifter = s.start('lifter_node', '--params-file', params, '-p',
                         f'cameras:=[{", ".join(cams)}]', name='lifter')
        poses = [s.start('pose2d_node', '--params-file', params, '-r', f'__ns:=/{cam}',
                         '-r', 'image:=image_raw',
                         name=f'pose2d_{cam}') for cam in cams]
        procs = {'recorder': rec, 'lifter': lifter, **{f'pose2d_{cam}': p for cam, p in zip(cams, poses)}}
        seen = defaultdict(list)
        latency = []
        reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        for cam in cams:
            c.node.create_subscription(PointCloud2, f'/{cam}/keypoints_2d',
                                       lambda m, cam=cam: seen[f'{cam}/kp'].append(1), reliable)

            def on_sk(m, cam=cam):
                seen[f'{cam}/sk'].append(1)
                latency.append(time.time_ns() - (m.header.stamp.sec * 10 ** 9 + m.header.stamp.nanosec))
            c.node.create_subscription(PointCloud2, f'/{cam}/skeleton_3d', on_sk, reliable)
        diags = {}
        c.node.create_subscription(DiagnosticArray, '/diagnostics', lambda m: diags.update(
            {st.name: {kv.key: kv.value for kv in st.values} for st in m.status}), 50)
        pubs = {cam: c.node.create_publisher(Image, f'/{cam}/image_raw', qos_profile_sensor_data)
                for cam in cams}
        infos = {cam: c.node.create_publisher(CameraInfo, f'/{cam}/camera_info', qos_profile_sensor_data)
                 for cam in cams}
        for p in poses:
            assert p.wait_for_log('pose2d ready', 180), p.log()
        assert lifter.wait_for_log('lifter ready', 180), lifter.log()
        for cam in cams:
            assert rec.wait_for_log(f'recording /{cam}/skeleton_3d', 120), rec.log()
        time.sleep(1.0)
        duration = a.minutes * 60
        cpu0 = {name: cpu_seconds(p.proc.pid) for name, p in procs.items()}
        t0 = time.monotonic()
        next_rss = t0
        rss = defaultdict(list)
        sent = 0
        i = 0
        while time.monotonic() - t0 < duration:
            target = t0 + i / a.fps
            while time.monotonic() < target:
                time.sleep(0.0005)
            now = time.time_ns()
            for cam in cams:
                msg = frames[cam][i % len(frames[cam])]
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 10 ** 9)
                msg.header.frame_id = f'{cam}_optical'
                infos[cam].publish(CameraInfo(header=msg.header, width=a.width, height=a.height))
                pubs[cam].publish(msg)
                sent += 1
            i += 1
            if time.monotonic() >= next_rss:
                t = round(time.monotonic() - t0, 1)
                for name, p in procs.items():
                    rss[name].append((t, round(rss_mb(p.proc.pid), 1)))
                next_rss += max(5.0, duration / 60)
        elapsed = time.monotonic() - t0
        # Share of one core each process used while the cameras streamed (2 cores in all).
        cpu = {name: round(100 * (cpu_seconds(p.proc.pid) - cpu0[name]) / elapsed, 1)
               for name, p in procs.items()}
        time.sleep(3.0)  # let the pipeline drain
        final_diags = dict(diags)
        rec.stop(signal.SIGTERM)
        with open_bag(os.path.join(s.tmp, 'soak')) as bag:
            counts = {t: info.count for t, info in bag.topics.items()}
    per_cam = {}
    for cam in cams:
        d = final_diags.get(f'{cam}/pose2d', {})
        per_cam[cam] = {
            'published_fps': round(i / elapsed, 2),
            'keypoints_fps': round(len(seen[f'{cam}/kp']) / elapsed, 2),
            'skeleton_fps': round(len(seen[f'{cam}/sk']) / elapsed, 2),
            'pose2d_received': d.get('received'), 'pose2d_dropped': d.get('dropped'),
            'bag_keypoints_2d': counts.get(f'/{cam}/keypoints_2d', 0),
            'bag_skeleton_3d': counts.get(f'/{cam}/skeleton_3d', 0),
            'skeletons_seen_by_subscriber': len(seen[f'{cam}/sk']),
        }
    lat_ms = np.array(latency) / 1e6
    report.update({
        'elapsed_s': round(elapsed, 1), 'frames_published': sent, 'per_camera': per_cam,
        'latency_ms': {q: round(pct(lat_ms, int(q[1:])), 1) for q in ('p50', 'p90', 'p99')},
        'rss_mb': dict(rss),
        'cpu_percent_of_one_core': cpu,
        # The lifter's own account: rate, processing time, window fill, streams per pass.
        'lifter_diagnostics': {name: values for name, values in final_diags.items()
                               if name.split('/')[-1] == 'lifter'},
        'lifter_to_recorder_lost': int(sum(max(0, v['skeletons_seen_by_subscriber'] - v['bag_skeleton_3d'])
                                           for v in per_cam.values())),
    })
    print(json.dumps(report, indent=1))
    if a.out:
        with open(a.out, 'w') as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == '__main__':
    main()
