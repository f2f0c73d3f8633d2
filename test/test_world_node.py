"""world node as a real process over real DDS: a subject walking in a known world, seen
through a known calibrated camera with distortion; the camera's keypoints_2d and lifted
(root-relative, camera-frame) skeleton_3d in -> /cam01/skeleton_3d/world, absolute, in the
calibration's world frame."""
import time

import numpy as np
import pytest

from ros_harness import stamps_ns
from test_robustness_common import SEC, rig  # noqa: F401  (fixture)
from test_world import lab_camera, walking_track

pytest.importorskip('rclpy')

N = 60
PERIOD_NS = SEC // 30


def test_world_node_places_skeletons_in_the_world(rig, tmp_path):  # noqa: F811
    """cam01: exact skeletons, floor cue off: every frame within 2 cm. cam02: the same scene
    with a lifter that sees the subject 15 % too small (so too close), floor cue on (a
    second node): the feet on the floor put it back. cam03: that small lifter, floor cue off,
    the subject's height given (a third node): scaled back to size, placed as cam01."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header
    from vp3d_ros.geometry import world as W
    from vp3d_ros.geometry.calibration import Camera, save_calibration_toml
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints, keypoints_to_cloud
    start, client, tmp = rig
    cam = lab_camera()
    cam2 = Camera('cam_02', cam.K, cam.dist, cam.R, cam.t, cam.size)
    cam3 = Camera('cam_03', cam.K, cam.dist, cam.R, cam.t, cam.size)
    calib = save_calibration_toml({'cam_01': cam, 'cam_02': cam2, 'cam_03': cam3},
                                  tmp / 'calib.toml')
    track = walking_track(N, fps=30.0)
    node = start('world_node', '-p', 'cameras:=[cam01]', '-p', f'calibration:={calib}',
                 '-p', 'world_frame:=lab', '-p', 'use_floor:=false')
    node2 = start('world_node', '-r', '__node:=world_floor', '-p', 'cameras:=[cam02]',
                  '-p', f'calibration:={calib}', name='world_floor')
    node3 = start('world_node', '-r', '__node:=world_height', '-p', 'cameras:=[cam03]',
                  '-p', f'calibration:={calib}', '-p', 'use_floor:=false',
                  '-p', f'subject_height_m:={W.skeleton_height(track):.4f}', name='world_height')
    latched = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pubs = {}
    for c in ('cam01', 'cam02', 'cam03'):
        client.collect(PointCloud2, f'/{c}/skeleton_3d/world', latched=True)
        pubs[c] = (client.node.create_publisher(PointCloud2, f'/{c}/keypoints_2d', latched),
                   client.node.create_publisher(PointCloud2, f'/{c}/skeleton_3d', latched))
    for (p2, p3), n in zip(pubs.values(), (node, node2, node3)):
        for pub in (p2, p3):
            assert client.wait_for_subscribers(pub, 1, 60), n.log()
    base = 7 * SEC
    x_cam = cam.to_camera(track)
    for i in range(N):
        ns = base + i * PERIOD_NS
        header = Header(frame_id='cam_optical')
        header.stamp.sec, header.stamp.nanosec = divmod(ns, SEC)
        px = cam.project(track[i])
        rel = x_cam[i] - x_cam[i, :1]
        for c, scale in (('cam01', 1.0), ('cam02', 0.85), ('cam03', 0.85)):
            pub2d, pub3d = pubs[c]
            msg2d = keypoints_to_cloud(header, px[None], np.ones((1, 17)), [4])
            msg3d = keypoints_to_cloud(header, scale * rel[None], np.full((1, 17), 0.9), [4])
            if i % 5 == 0:   # the topics are not ordered: a skeleton may come before its 2D
                pub3d.publish(msg3d)
                time.sleep(0.02)
                pub2d.publish(msg2d)
            else:
                pub2d.publish(msg2d)
                pub3d.publish(msg3d)
        time.sleep(0.005)
    for c, n in (('cam01', node), ('cam02', node2), ('cam03', node3)):
        topic = f'/{c}/skeleton_3d/world'
        assert client.wait_for(lambda: len(client.messages(topic)) >= N, 30), \
            f'{c}: {len(client.messages(topic))} of {N}\n' + n.log()
    msgs = client.messages('/cam01/skeleton_3d/world')
    assert stamps_ns(msgs) == [base + i * PERIOD_NS for i in range(N)]
    for i, msg in enumerate(msgs):
        assert msg.header.frame_id == 'lab'
        people = cloud_to_keypoints(msg, 17)
        assert list(people) == [4]
        pos, conf = people[4]
        assert pos.shape == (17, 3)
        assert np.allclose(conf, 0.9, atol=1e-6)
        # exact inputs: the causal root filter tracks the walk without lag
        assert np.linalg.norm(pos - track[i], axis=-1).max() < 0.02, (i, pos[0], track[i, 0])
    floor = [cloud_to_keypoints(m, 17)[4][0] for m in client.messages('/cam02/skeleton_3d/world')]
    err = np.linalg.norm(np.stack(floor)[:, 0] - track[:, 0], axis=-1)
    # what the small skeleton gives without the floor (same geometry, offline, no smoothing)
    small = (x_cam - x_cam[:, :1]) * 0.85
    no_floor = W.lift_to_world(small, cam.project(track), cam, smoothing='none')
    err_no_floor = np.linalg.norm(no_floor[:, 0] - track[:, 0], axis=-1)
    settled = slice(N // 2, None)   # after 1 s: the floor cue waits 0.5 s, then settles
    assert np.median(err_no_floor[settled]) > 0.3
    assert np.median(err[settled]) < 0.12, np.round(err, 3)
    sized = [cloud_to_keypoints(m, 17)[4][0] for m in client.messages('/cam03/skeleton_3d/world')]
    err = np.linalg.norm(np.stack(sized) - track, axis=-1)
    # (the first 10 frames are sized by the joint chain, then by the upright frames)
    assert np.median(err[settled]) < 0.02 and err[settled].max() < 0.05, np.round(err.max(1), 3)


def test_rig_and_launch_start_the_world_node_with_a_calibration():
    from vp3d_ros.apps.rig import plan
    specs = {s.name: s for s in plan(['cam01'], calibration='/x/calib.toml')}
    assert 'world' in specs and 'fusion' not in specs          # one camera: no fusion
    cmd = ' '.join(specs['world'].command('params.yaml', []))
    assert 'vp3d_ros.nodes.world_node' in cmd and 'calibration:=/x/calib.toml' in cmd
    assert 'cameras:=[cam01]' in cmd
    assert 'world' not in {s.name for s in plan(['cam01'])}
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent
    launch = (root / 'launch' / 'vp3d.launch.py').read_text()
    assert 'plan_nodes(' in launch   # the launch file starts the same node set (topology)


def test_world_node_estimates_the_ground_without_a_calibration(rig, tmp_path):  # noqa: F811
    """estimate_ground: no calibration, the image size from keypoints_2d/image_info (focal =
    its long side, as guessed), the ground from the subject's first upright frames; nothing
    before that, then /cam04/skeleton_3d/world in frame cam04_ground: z up, the floor at
    z = 0, the subject at its true heights."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, PointCloud2
    from std_msgs.msg import Header
    from vp3d_ros.geometry.calibration import Camera
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints, keypoints_to_cloud
    start, client, tmp = rig
    lab = lab_camera(dist=False)
    w, h = lab.size
    cam = Camera('cam04', [[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], [], lab.R, lab.t, (w, h))
    track = walking_track(N, fps=30.0)
    node = start('world_node', '-p', 'cameras:=[cam04]', '-p', 'estimate_ground:=true',
                 '-p', 'ground_standing_frames:=20')
    latched = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    one = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    client.collect(PointCloud2, '/cam04/skeleton_3d/world', latched=True)
    client.collect(DiagnosticArray, '/diagnostics')
    info = client.node.create_publisher(CameraInfo, '/cam04/keypoints_2d/image_info', one)
    p2d = client.node.create_publisher(PointCloud2, '/cam04/keypoints_2d', latched)
    p3d = client.node.create_publisher(PointCloud2, '/cam04/skeleton_3d', latched)
    for pub in (info, p2d, p3d):
        assert client.wait_for_subscribers(pub, 1, 60), node.log()
    info.publish(CameraInfo(width=w, height=h))
    time.sleep(0.5)
    x_cam = cam.to_camera(track)
    for i in range(N):
        header = Header(frame_id='cam_optical')
        header.stamp.sec, header.stamp.nanosec = divmod(7 * SEC + i * PERIOD_NS, SEC)
        p2d.publish(keypoints_to_cloud(header, cam.project(track[i])[None], np.ones((1, 17)), [2]))
        p3d.publish(keypoints_to_cloud(header, (x_cam[i] - x_cam[i, :1])[None],
                                       np.ones((1, 17)), [2]))
        time.sleep(0.005)
    topic = '/cam04/skeleton_3d/world'
    assert client.wait_for(lambda: len(client.messages(topic)) >= N - 20, 30), \
        f'{len(client.messages(topic))} of {N}\n' + node.log()
    assert 'ground from the subject: pitch' in node.log()
    msgs = client.messages(topic)
    assert len(msgs) == N - 20          # the first 20 frames made the ground
    for i, msg in zip(range(20, N), msgs):
        assert msg.header.frame_id == 'cam04_ground'
        pos = cloud_to_keypoints(msg, 17)[2][0]
        # heights above the floor as in the lab (the ground frame turns about z only)
        assert np.abs(pos[:, 2] - track[i, :, 2]).max() < 0.08, (i, pos[:, 2] - track[i, :, 2])
    assert client.wait_for(lambda: any(
        kv.key == 'ground' and 'pitch' in kv.value for m in client.messages('/diagnostics')
        for st in m.status for kv in st.values), 10)
