"""fusion node as a real process over real DDS: four cameras' keypoints_2d (generated from a
known moving scene through a generated calibration, stamps jittered, one camera missing for
a while, one frame arriving after its instant) -> /skeleton_3d/fused in the world frame."""
import time

import numpy as np
import pytest

from ros_harness import stamps_ns
from test_robustness_common import SEC, rig  # noqa: F401  (fixture)
from test_fusion import _look_at

pytest.importorskip('rclpy')

CAMS = ['cam01', 'cam02', 'cam03', 'cam04']
N = 36
PERIOD_NS = SEC // 30


def _rig():
    from vp3d_ros.geometry.calibration import Camera
    cams = []
    for i, deg in enumerate((20, 110, 200, 290)):
        a = np.deg2rad(deg)
        C = np.array([4.0 * np.cos(a), 4.0 * np.sin(a), 1.6 + 0.2 * i])
        R, t = _look_at(C, np.array([0.0, 0.0, 1.0]))
        cams.append(Camera(f'cam_0{i + 1}', [[900, 0, 480], [0, 900, 540], [0, 0, 1]],
                           [-0.1, 0.02, 0.0, 0.0, 0.0], R, t, (960, 1080)))
    return cams


def _scene():
    """(N, 2, 17, 3): two people a metre and a half apart, walking slowly."""
    rng = np.random.default_rng(7)
    body = rng.normal(0, 0.2, (17, 3)) * [1, 1, 2.5] + [0, 0, 1.0]
    t = np.arange(N) / 30.0
    a = body + np.stack([0.3 * t, 0.1 * t, 0 * t], -1)[:, None] + [-0.7, 0, 0]
    b = body[::-1] + np.stack([-0.2 * t, 0.2 * t, 0 * t], -1)[:, None] + [0.8, 0.3, 0]
    return np.stack([a, b], 1)


def test_fusion_node_fuses_instants(rig, tmp_path):  # noqa: F811
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header
    from vp3d_ros.geometry.calibration import save_calibration_toml
    from vp3d_ros.ros_conversions import cloud_to_keypoints, keypoints_to_cloud
    start, client, tmp = rig
    cams = _rig()
    calib = save_calibration_toml({c.name: c for c in cams}, tmp / 'calib.toml')
    scene = _scene()
    node = start('fusion_node', '-p', f'cameras:=[{",".join(CAMS)}]',
                 '-p', f'calibration:={calib}', '-p', 'sync_tolerance_s:=0.012',
                 '-p', 'max_wait_s:=0.15', '-p', 'use_lifted:=false')
    from diagnostic_msgs.msg import DiagnosticArray
    client.collect(PointCloud2, '/skeleton_3d/fused', latched=True)
    client.collect(DiagnosticArray, '/diagnostics')
    latched = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pubs = {c: client.node.create_publisher(PointCloud2, f'/{c}/keypoints_2d', latched)
            for c in CAMS}
    for pub in pubs.values():
        assert client.wait_for_subscribers(pub, 1, 60), node.log()
    rng = np.random.default_rng(0)
    base = 5 * SEC
    sent = {}                          # instant -> camera stamps
    held = None
    for i in range(N):
        sent[i] = {}
        for c, name in enumerate(CAMS):
            if name == 'cam04' and 10 <= i < 15:
                continue               # cam04 loses the stream for five frames
            ns = base + i * PERIOD_NS + int(rng.integers(-5, 6)) * 1_000_000
            px = np.stack([cams[c].project(p) for p in scene[i]])
            px += rng.normal(0, 0.5, px.shape)
            ids = [3, 8] if c % 2 else [8, 3]        # ids differ between cameras
            order = [0, 1] if c % 2 else [1, 0]
            msg = keypoints_to_cloud(Header(frame_id=f'{name}_optical'), px[order],
                                     np.ones((2, 17)), ids)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, SEC)
            if name == 'cam03' and i == 20:
                held = (pubs[name], msg)         # arrives after its instant has gone
                continue
            sent[i][name] = ns
            pubs[name].publish(msg)
        if i == 23:
            held[0].publish(held[1])
        time.sleep(PERIOD_NS / SEC)
    assert client.wait_for(lambda: len(client.messages('/skeleton_3d/fused')) >= N, 30), \
        f'{len(client.messages("/skeleton_3d/fused"))} fused of {N}\n' + node.log()
    time.sleep(0.5)
    msgs = client.messages('/skeleton_3d/fused')
    assert len(msgs) == N
    got = stamps_ns(msgs)
    assert got == sorted(got)
    ids_for = {0: set(), 1: set()}
    errs = []
    for i, msg in enumerate(msgs):
        assert msg.header.frame_id == 'world'
        want = int(round(np.mean(list(sent[i].values()))))
        assert got[i] == want, (i, got[i], sent[i])
        people = cloud_to_keypoints(msg, 17)
        assert len(people) == 2
        for pid, (pos, conf) in people.items():
            assert pos.shape == (17, 3) and np.isfinite(pos).all()
            d = [np.linalg.norm(pos - scene[i, k], axis=-1).mean() for k in (0, 1)]
            k = int(np.argmin(d))
            ids_for[k].add(pid)
            errs.append(d[k])
    # one fused id per person throughout, and the two are told apart
    assert all(len(v) == 1 for v in ids_for.values()) and ids_for[0] != ids_for[1]
    assert np.mean(errs) < 0.02 and np.max(errs) < 0.05, (np.mean(errs), np.max(errs))

    def diag():
        for m in client.messages('/diagnostics'):
            for st in m.status:
                if st.name == 'fusion':
                    v = {kv.key: kv.value for kv in st.values}
                    if v.get('instants_fused') == str(N):
                        return v
    assert client.wait_for(diag, 10), node.log()
    v = diag()
    assert v['frames_late'] == '1'                      # cam03's frame of instant 20
    assert v['instants_incomplete'] == '6'              # cam04's five and instant 20
    assert v['views_per_joint'] == ' '.join(['4'] * 17)
    assert float(v['reprojection_px_mean']) < 3
    node.stop()
    assert 'Traceback' not in node.log()


def test_fusion_node_refuses_bad_configuration(rig, tmp_path):  # noqa: F811
    from vp3d_ros.geometry.calibration import save_calibration_toml
    start, client, tmp = rig
    cams = _rig()
    calib = save_calibration_toml({c.name: c for c in cams}, tmp / 'calib.toml')
    one = start('fusion_node', '-p', 'cameras:=[cam01]', '-p', f'calibration:={calib}',
                name='one')
    missing = start('fusion_node', '-p', 'cameras:=[cam01,cam07]',
                    '-p', f'calibration:={calib}', name='missing')
    assert one.wait_exit(60) == 2 and 'at least two' in one.log()
    assert missing.wait_exit(60) == 2 and "no camera 'cam07'" in missing.log()
