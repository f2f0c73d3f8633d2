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

N = 40
PERIOD_NS = SEC // 30


def test_world_node_places_skeletons_in_the_world(rig, tmp_path):  # noqa: F811
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header
    from vp3d_ros.geometry.calibration import save_calibration_toml
    from vp3d_ros.ros_conversions import cloud_to_keypoints, keypoints_to_cloud
    start, client, tmp = rig
    cam = lab_camera()
    calib = save_calibration_toml({'cam_01': cam}, tmp / 'calib.toml')
    track = walking_track(N, fps=30.0)
    node = start('world_node', '-p', 'cameras:=[cam01]', '-p', f'calibration:={calib}',
                 '-p', 'world_frame:=lab')
    client.collect(PointCloud2, '/cam01/skeleton_3d/world', latched=True)
    latched = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub2d = client.node.create_publisher(PointCloud2, '/cam01/keypoints_2d', latched)
    pub3d = client.node.create_publisher(PointCloud2, '/cam01/skeleton_3d', latched)
    for pub in (pub2d, pub3d):
        assert client.wait_for_subscribers(pub, 1, 60), node.log()
    base = 7 * SEC
    x_cam = cam.to_camera(track)
    for i in range(N):
        ns = base + i * PERIOD_NS
        header = Header(frame_id='cam01_optical')
        header.stamp.sec, header.stamp.nanosec = divmod(ns, SEC)
        px = cam.project(track[i])
        msg2d = keypoints_to_cloud(header, px[None], np.ones((1, 17)), [4])
        rel = x_cam[i] - x_cam[i, :1]
        msg3d = keypoints_to_cloud(header, rel[None], np.full((1, 17), 0.9), [4])
        if i % 5 == 0:      # the topics are not ordered: a skeleton may come before its 2D
            pub3d.publish(msg3d)
            time.sleep(0.02)
            pub2d.publish(msg2d)
        else:
            pub2d.publish(msg2d)
            pub3d.publish(msg3d)
        time.sleep(0.005)
    assert client.wait_for(lambda: len(client.messages('/cam01/skeleton_3d/world')) >= N, 30), \
        f'{len(client.messages("/cam01/skeleton_3d/world"))} of {N}\n' + node.log()
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


def test_rig_and_launch_start_the_world_node_with_a_calibration():
    from vp3d_ros.rig import plan
    specs = {s.name: s for s in plan(['cam01'], calibration='/x/calib.toml')}
    assert 'world' in specs and 'fusion' not in specs          # one camera: no fusion
    cmd = ' '.join(specs['world'].command('params.yaml', []))
    assert 'vp3d_ros.nodes.world_node' in cmd and 'calibration:=/x/calib.toml' in cmd
    assert 'cameras:=[cam01]' in cmd
    assert 'world' not in {s.name for s in plan(['cam01'])}
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent
    launch = (root / 'launch' / 'vp3d.launch.py').read_text()
    assert "executable='world_node'" in launch
