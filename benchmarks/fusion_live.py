"""Live fusion cost: four cameras' keypoints_2d at 30 fps into the fusion node over real DDS.

Four publishers (one per camera, as four pose2d would) send clouds of one moving person,
generated through a 4-camera calibration, at the rate given, each camera's stamp jittered by
a few ms as unsynchronised cameras are. Reported per node:

- latency added by fusion, node side: the instant's last camera frame entering the node's
  callback -> the fused cloud handed to DDS (the node's /diagnostics ``latency_ms_p50/p99``,
  complete instants);
- end to end, client side: send time of the instant's last camera frame -> arrival of
  ``/skeleton_3d/fused`` at the client (adds one DDS hop each way and the executor);
- the node's processing time per instant (/diagnostics) and its CPU share of one core.

``--baseline DIR`` runs a second fusion node from another source tree (``DIR/vp3d_ros``, e.g.
``git archive`` of an older commit) on remapped topics in the same session, and alternates
blocks of ``--block`` seconds between the two: both see the same machine load (the VM here
shares its two cores with a training job).

    .venv/bin/python benchmarks/fusion_live.py [--seconds 20] [--fps 30] [--lifted] [--baseline DIR]
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
    ap.add_argument('--baseline', default=None,
                    help='source tree whose vp3d_ros runs as a second, compared fusion node')
    ap.add_argument('--lifted', action='store_true',
                    help="also publish each camera's skeleton_3d (use_lifted: true, as in a "
                         'rig with the lifter): fusion fills and places with them')
    ap.add_argument('--block', type=float, default=2.0,
                    help='with --baseline: seconds per block, alternating between the nodes')
    a = ap.parse_args(argv)
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header
    from test_fusion import _look_at
    from vp3d_ros.geometry.calibration import Camera, save_calibration_toml
    from vp3d_ros.nodes.ros_conversions import keypoints_to_cloud
    names = ['cam01', 'cam02', 'cam03', 'cam04']
    cams = []
    for i, deg in enumerate((20, 110, 200, 290)):
        c = np.array([4 * np.cos(np.deg2rad(deg)), 4 * np.sin(np.deg2rad(deg)), 1.6 + 0.2 * i])
        R, t = _look_at(c, np.array([0, 0, 1.0]))
        cams.append(Camera(f'cam_0{i + 1}', [[900, 0, 480], [0, 900, 540], [0, 0, 1]],
                           [-0.1, 0.02, 0, 0, 0], R, t, (960, 1080)))
    rng = np.random.default_rng(0)
    body = rng.normal(0, 0.2, (17, 3)) * [1, 1, 2.5] + [0, 0, 1.0]
    period = 1.0 / a.fps
    variants = [('this', '')] + ([('baseline', '/base')] if a.baseline else [])
    per_block = max(1, int(round(a.block * a.fps))) if a.baseline else int(a.seconds * a.fps)
    n = int(a.seconds * a.fps) * len(variants)
    with Session() as s:
        import os
        from ros_harness import NodeProcess
        calib = save_calibration_toml({c.name: c for c in cams}, f'{s.tmp}/calib.toml')
        params = ['-p', f'cameras:=[{",".join(names)}]', '-p', f'calibration:={calib}',
                  '-p', f'use_lifted:={"true" if a.lifted else "false"}']
        nodes = {}
        for v, prefix in variants:
            if not prefix:
                nodes[v] = s.start('fusion_node', *params)
                continue
            env = dict(s.env, PYTHONPATH=os.path.abspath(a.baseline))
            remaps = ['-r', '__node:=fusion_base', '-r',
                      f'/skeleton_3d/fused:={prefix}/skeleton_3d/fused']
            for c in names:
                remaps += ['-r', f'/{c}/keypoints_2d:={prefix}/{c}/keypoints_2d',
                           '-r', f'/{c}/skeleton_3d:={prefix}/{c}/skeleton_3d']
            nodes[v] = NodeProcess('fusion_node', params + remaps, env, f'{s.tmp}/{v}.log')
            s.procs.append(nodes[v])
        cl = s.client
        arrivals = {v: {} for v, _ in variants}
        for v, prefix in variants:
            def on_fused(msg, v=v):
                arrivals[v][msg.header.stamp.sec * SEC + msg.header.stamp.nanosec] = \
                    time.perf_counter()
            cl.node.create_subscription(PointCloud2, f'{prefix}/skeleton_3d/fused', on_fused,
                                        QoSProfile(depth=100,
                                                   reliability=ReliabilityPolicy.RELIABLE))
        cl.collect(DiagnosticArray, '/diagnostics')
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        pubs = {v: [cl.node.create_publisher(PointCloud2, f'{prefix}/{c}/keypoints_2d', qos)
                    for c in names] for v, prefix in variants}
        lifted = {v: [cl.node.create_publisher(PointCloud2, f'{prefix}/{c}/skeleton_3d', qos)
                      for c in names] for v, prefix in variants} if a.lifted else {}
        for v, _ in variants:
            for p in pubs[v] + lifted.get(v, []):
                assert cl.wait_for_subscribers(p, 1, 60), nodes[v].log()
        time.sleep(1.0)
        sent_last = {v: {} for v, _ in variants}
        busy = {v: 0.0 for v, _ in variants}
        cpu0 = {v: cpu_seconds(nodes[v].proc.pid) for v, _ in variants}
        t0 = time.perf_counter()
        for i in range(n):
            v = variants[(i // per_block) % len(variants)][0]
            tick = t0 + i * period
            while time.perf_counter() < tick:
                time.sleep(0.0005)
            X = body + [0.3 * np.sin(i / 40), 0.2 * np.cos(i / 50), 0]
            base = 10 * SEC + int(i * period * SEC)
            order = rng.permutation(4)
            for c in order:
                ns = base + int(rng.integers(-4, 5)) * 1_000_000
                if a.lifted:   # the lifter's pose of this frame (camera frame, root-relative)
                    pose = keypoints_to_cloud(Header(frame_id=names[c]),
                                              ((X - X[0]) @ cams[c].R.T)[None], np.ones((1, 17)),
                                              [0])
                    pose.header.stamp.sec, pose.header.stamp.nanosec = divmod(ns, SEC)
                    lifted[v][c].publish(pose)
                msg = keypoints_to_cloud(Header(frame_id=names[c]), cams[c].project(X)[None]
                                         + rng.normal(0, 1, (1, 17, 2)), np.ones((1, 17)), [0])
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, SEC)
                pubs[v][c].publish(msg)
            sent_last[v][i] = time.perf_counter()
            busy[v] += period
        time.sleep(1.5)     # the last instants and one more /diagnostics
        cpu = {v: 100 * (cpu_seconds(nodes[v].proc.pid) - cpu0[v]) / busy[v]
               for v, _ in variants}
        diag = {v: {} for v, _ in variants}
        hw = {'this': '/fusion', 'baseline': '/fusion_base'}
        for m in cl.messages('/diagnostics'):
            for st in m.status:
                for v, _ in variants:
                    if st.name == 'fusion' and st.hardware_id == hw[v]:
                        diag[v] = {kv.key: kv.value for kv in st.values}
    print(f'4 cameras x {a.fps:g} fps, {a.seconds:g} s per node'
          + (", with each camera's skeleton_3d" if a.lifted else '')
          + (f' (blocks of {a.block:g} s alternating with the baseline {a.baseline})'
             if a.baseline else ''))
    for v, _ in variants:
        # fused stamps are the mean of the camera stamps (+-4 ms): the nearest instant
        lat = []
        for stamp, t in arrivals[v].items():
            i = int(round((stamp - 10 * SEC) / (period * SEC)))
            if i in sent_last[v]:
                lat.append(1e3 * (t - sent_last[v][i]))
        d = diag[v]
        print(f'[{v}] {len(arrivals[v])} of {len(sent_last[v])} instants fused; added by '
              f'fusion (last camera frame in -> fused out, node side): p50 '
              f'{d.get("latency_ms_p50")} ms, p99 {d.get("latency_ms_p99")} ms; end to end '
              f'(last frame sent -> fused received, one DDS hop each way): p50 '
              f'{pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms; processing per instant: mean '
              f'{d.get("processing_ms_mean")} ms, p99 {d.get("processing_ms_p99")} ms; CPU '
              f'{cpu[v]:.1f}% of one core; late frames {d.get("frames_late")}, incomplete '
              f'instants {d.get("instants_incomplete")}')


if __name__ == '__main__':
    main()
