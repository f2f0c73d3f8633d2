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
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints, keypoints_to_cloud
    start, client, tmp = rig
    cams = _rig()
    calib = save_calibration_toml({c.name: c for c in cams}, tmp / 'calib.toml')
    scene = _scene()
    node = start('fusion_node', '-p', f'cameras:=[{",".join(CAMS)}]',
                 '-p', f'calibration:={calib}', '-p', 'sync_tolerance_s:=0.012',
                 '-p', 'max_wait_s:=0.15', '-p', 'use_lifted:=false')
    from diagnostic_msgs.msg import DiagnosticArray
    rec = start('recorder_node', '-p', f'bag_dir:={tmp}', '-p', 'bag_name:=fused_bag',
                '-p', 'discovery_period_s:=0.2')
    client.collect(PointCloud2, '/skeleton_3d/fused', latched=True)
    client.collect(DiagnosticArray, '/diagnostics')
    latched = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pubs = {c: client.node.create_publisher(PointCloud2, f'/{c}/keypoints_2d', latched)
            for c in CAMS}
    for pub in pubs.values():   # the fusion node and the recorder
        assert client.wait_for_subscribers(pub, 2, 60), node.log() + rec.log()
    assert rec.wait_for_log('/skeleton_3d/fused', 60), rec.log()
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
    # recorded, and read back as a world track (what vp3d-export writes in OpenSim's axes)
    assert rec.stop() == 0, rec.log()
    from vp3d_ros.io.records import is_world_track, read_landmark_tracks
    tracks = [t for t in read_landmark_tracks(tmp / 'fused_bag') if t.topic == '/skeleton_3d/fused']
    assert len(tracks) == 2 and all(is_world_track(t) for t in tracks)
    for t in tracks:
        assert len(t.stamps_s) == N
        k = 0 if t.person in ids_for[0] else 1
        assert np.abs(t.positions - scene[:, k]).max() < 0.06
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


def _four_camera_clip():
    """The 4-camera clip and its calibration: bundled (vp3d_ros/data/balancing_*) or the shared
    data folder; None when neither is there."""
    import os
    from conftest import REPO
    for d, fmt, cal in ((os.path.join(REPO, 'vp3d_ros', 'data'), 'balancing_cam0{}.mp4',
                         'balancing_calib_qualisys.toml'),
                        (os.path.join(os.path.dirname(REPO), 'shared', 'data', 'video',
                                      'pose2sim_balancing'), 'cam0{}.mp4', 'Calib_qualisys.toml')):
        videos = [os.path.join(d, fmt.format(i)) for i in range(1, 5)]
        calib = os.path.join(d, cal)
        if all(os.path.isfile(v) for v in videos) and os.path.isfile(calib):
            return videos, calib
    return None


def test_fusion_node_on_real_four_camera_frames(rig):  # noqa: F811
    """Real frames of the 4-camera clip through four pose2d processes (real MediaPipe, frames
    downscaled to 270x480 so the node scales the calibration) and the fusion node over DDS: one
    fused skeleton per instant, upright in the calibration's z-up world, a foot near the floor,
    and equal to the core's causal fusion of the same keypoints."""
    import cv2
    from sensor_msgs.msg import PointCloud2
    from test_robustness_common import handshake, image, reliable
    from vp3d_ros.geometry import fusion as F
    from vp3d_ros.geometry.calibration import find_camera, load_calibration
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    found = _four_camera_clip()
    if found is None:
        pytest.skip('4-camera clip not available (vp3d_ros/data/balancing_* or ../shared)')
    videos, calib = found
    n_frames, size = 12, (270, 480)
    frames = []
    for v in videos:
        cap = cv2.VideoCapture(v)
        got = []
        for _ in range(30 + n_frames):      # from frame 30: the subject well in view
            ok, bgr = cap.read()
            assert ok
            got.append(cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA),
                                    cv2.COLOR_BGR2RGB))
        frames.append(got[30:])
    start, client, tmp = rig
    poses = [start('pose2d_node', '-r', f'__ns:=/{c}', '-r', 'image:=image_raw', name=f'pose2d_{c}')
             for c in CAMS]
    fusion = start('fusion_node', '-p', f'cameras:=[{",".join(CAMS)}]', '-p',
                   f'calibration:={calib}', '-p', 'use_lifted:=false', '-p', 'max_wait_s:=5.0')
    client.collect(PointCloud2, '/skeleton_3d/fused', latched=True)
    for c in CAMS:
        client.collect(PointCloud2, f'/{c}/keypoints_2d', latched=True)
    pubs = {c: client.node.create_publisher(type(image(frames[0][0], 1)), f'/{c}/image_raw',
                                            reliable()) for c in CAMS}
    for k, c in enumerate(CAMS):   # until each pose2d answers (stamps before the session)
        handshake(client, pubs[c], lambda ns, k=k: image(frames[k][0], ns),
                  SEC + k * 100_000_000, f'/{c}/keypoints_2d', timeout=120)
    base = 100 * SEC
    stamps = [base + i * (SEC // 60) for i in range(n_frames)]
    for i, ns in enumerate(stamps):
        for k, c in enumerate(CAMS):
            pubs[c].publish(image(frames[k][i], ns))
        assert client.wait_for(lambda: ns in stamps_ns(client.messages('/skeleton_3d/fused')),
                               60), (f'no fused skeleton for frame {i}: keypoints stamps '
                                     + str({c: stamps_ns(client.messages(f'/{c}/keypoints_2d'))[-3:]
                                            for c in CAMS}) + ' fused '
                                     + str(stamps_ns(client.messages('/skeleton_3d/fused'))[-5:])
                                     + '\n' + fusion.log() + poses[0].log()[-2000:])
    fused = {s: m for s, m in zip(stamps_ns(client.messages('/skeleton_3d/fused')),
                                  client.messages('/skeleton_3d/fused')) if s in stamps}
    assert sorted(fused) == stamps
    out = []
    for s in stamps:
        msg = fused[s]
        assert msg.header.frame_id == 'world'
        people = cloud_to_keypoints(msg, 17)
        assert len(people) == 1
        out.append(next(iter(people.values()))[0])
    out = np.stack(out)
    assert np.isfinite(out).all()
    # upright in the z-up world: head above hip above feet, feet near the floor
    # (he balances on one leg: the standing foot is the lower one)
    assert (out[:, 10, 2] > out[:, 0, 2] + 0.4).all()
    assert (out[:, 0, 2] > out[:, [3, 6], 2].min(1) + 0.5).all()
    assert (out[:, [3, 6], 2].min(1) > -0.1).all() and (out[:, [3, 6], 2].min(1) < 0.3).all()
    # the node fuses what the core fuses from the same keypoints, at the same instants
    rig_cal = load_calibration(calib)
    cams = [find_camera(rig_cal, c).with_image_size(*size) for c in CAMS]
    kp = np.full((4, n_frames, 17, 3), np.nan)
    for k, c in enumerate(CAMS):
        msgs = dict(zip(stamps_ns(client.messages(f'/{c}/keypoints_2d')),
                        client.messages(f'/{c}/keypoints_2d')))
        for i, s in enumerate(stamps):
            people = cloud_to_keypoints(msgs[s], 17)
            if people:
                p, conf = next(iter(people.values()))
                kp[k, i] = np.concatenate([p, conf[:, None]], -1)
    fz = F.CausalFuser(cams)
    want = np.stack([fz.step(kp[:, i], s * 1e-9).points for i, s in enumerate(stamps)])
    np.testing.assert_allclose(out, want, atol=1e-4)   # float32 cloud
    for p in poses + [fusion]:
        assert 'Traceback' not in p.log()


def test_fusion_node_lifted_prior_when_one_camera_left(rig, tmp_path):  # noqa: F811
    """Three cameras lose the person for ten frames: the fused skeleton goes on from the
    remaining camera's lifted skeleton_3d (camera frame, root-relative), placed on its rays."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header
    from vp3d_ros.geometry.calibration import save_calibration_toml
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints, keypoints_to_cloud
    start, client, tmp = rig
    cams = _rig()
    calib = save_calibration_toml({c.name: c for c in cams}, tmp / 'calib.toml')
    scene = _scene()[:, 0]
    node = start('fusion_node', '-p', f'cameras:=[{",".join(CAMS)}]',
                 '-p', f'calibration:={calib}', '-p', 'max_wait_s:=0.3')
    client.collect(PointCloud2, '/skeleton_3d/fused', latched=True)
    latched = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pubs = {c: client.node.create_publisher(PointCloud2, f'/{c}/keypoints_2d', latched)
            for c in CAMS}
    lift = {c: client.node.create_publisher(PointCloud2, f'/{c}/skeleton_3d', latched)
            for c in CAMS}
    for pub in list(pubs.values()) + list(lift.values()):
        assert client.wait_for_subscribers(pub, 1, 60), node.log()
    base = 7 * SEC
    lost = range(20, 30)
    for i in range(N):
        ns = base + i * PERIOD_NS
        for c, name in enumerate(CAMS):
            header = Header(frame_id=f'{name}_optical')
            header.stamp.sec, header.stamp.nanosec = divmod(ns, SEC)
            rel = cams[c].to_camera(scene[i]) - cams[c].to_camera(scene[i, :1])
            lift[name].publish(keypoints_to_cloud(header, rel[None], np.ones((1, 17)), [0]))
            if c > 0 and i in lost:   # the person is gone from cameras 2-4
                msg = keypoints_to_cloud(header, np.zeros((0, 17, 2)), np.zeros((0, 17)), [])
            else:
                msg = keypoints_to_cloud(header, cams[c].project(scene[i])[None],
                                         np.ones((1, 17)), [0])
            pubs[name].publish(msg)
        time.sleep(PERIOD_NS / SEC)
    want = [base + i * PERIOD_NS for i in range(N)]
    assert client.wait_for(lambda: set(want) <= set(stamps_ns(
        client.messages('/skeleton_3d/fused'))), 30), node.log()
    got = dict(zip(stamps_ns(client.messages('/skeleton_3d/fused')),
                   client.messages('/skeleton_3d/fused')))
    for i in lost:
        people = cloud_to_keypoints(got[want[i]], 17)
        assert len(people) == 1
        pos, conf = next(iter(people.values()))
        assert np.isfinite(pos).all(), i          # every joint, though one camera sees it
        assert np.allclose(conf, 0.3)             # marked as filled
        assert np.linalg.norm(pos - scene[i], axis=-1).mean() < 0.05
    node.stop()
    assert 'Traceback' not in node.log()
