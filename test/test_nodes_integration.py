"""pose2d -> lifter -> recorder as separate processes over real DDS, on real frames of the
bundled clip: stamps preserved end to end, causal and symmetric, every message in the bag."""
import os
import signal

import cv2
import numpy as np
import pytest
import yaml

from conftest import CLIP, REPO
from ros_harness import stamps_ns
from test_robustness_common import rig  # noqa: F401  (fixture)

N_FRAMES = 16
W, H = 540, 960


@pytest.fixture(scope='module')
def clip_frames():
    cap = cv2.VideoCapture(CLIP)
    frames = []
    while len(frames) < N_FRAMES:
        ok, bgr = cap.read()
        assert ok, 'bundled clip unreadable'
        frames.append(cv2.cvtColor(cv2.resize(bgr, (W, H), interpolation=cv2.INTER_AREA),
                                   cv2.COLOR_BGR2RGB))
    return frames


def publish_lockstep(client, frames, topic='/cam01/image', wait_topic='/cam01/keypoints_2d',
                     info=2):
    """Publish each frame once pose2d answered the previous one (no drops by design)."""
    import time
    # The client's readers must know every writer they collect from before data flows.
    for sub in client.node.subscriptions:
        assert client.wait_for(lambda: client.node.count_publishers(sub.topic_name) >= 1, 60), \
            f'no publisher for {sub.topic_name}'
    time.sleep(0.5)
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo
    from vp3d_ros.nodes.ros_conversions import numpy_to_image
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub = client.node.create_publisher(type(numpy_to_image(frames[0])), topic, qos)
    info_pub = client.node.create_publisher(CameraInfo, '/cam01/camera_info', qos)
    assert client.wait_for_subscribers(pub, 1, 60), 'pose2d never subscribed'
    if info:  # pose2d and lifter both follow camera_info
        assert client.wait_for_subscribers(info_pub, info, 60), 'camera_info not subscribed'
    # Discovery is not symmetric: the writer may see pose2d's (best-effort) reader before the
    # reader sees the writer, and a frame sent then is lost. Warm up with blank frames stamped
    # before the session until pose2d has answered one.
    blank = numpy_to_image(np.zeros_like(frames[0]), 'rgb8')
    blank.header.frame_id = 'cam01_optical'
    for k in range(60):
        blank.header.stamp.sec = 1 + k
        if info:
            info_pub.publish(CameraInfo(header=blank.header, width=W, height=H))
        pub.publish(blank)
        if client.wait_for(lambda: client.messages(wait_topic), 1.0):
            break
    assert client.messages(wait_topic), 'pose2d never answered a warm-up frame'
    warm = len(client.messages(wait_topic))
    sent = []
    for i, frame in enumerate(frames):
        msg = numpy_to_image(frame, 'rgb8')
        msg.header.stamp.sec = 1000 + i // 30
        msg.header.stamp.nanosec = (i % 30) * 33_333_333
        msg.header.frame_id = 'cam01_optical'
        if info:
            info_pub.publish(CameraInfo(header=msg.header, width=W, height=H))
        pub.publish(msg)
        sent.append(msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec)
        assert client.wait_for(lambda: len(real(client.messages(wait_topic))) > i, 30), \
            f'no keypoints_2d for frame {i}'
    return sent


def real(msgs):
    """The session's messages (stamps from 1000 s), without the warm-up ones."""
    return [m for m in msgs if m.header.stamp.sec >= 1000]


def checkpoint_params(path, causal, fw='[3, 3, 3]'):
    # The image size is given as parameters too (camera_info must then agree): a best-effort
    # camera_info reader may match after the first frames (DDS discovery is asymmetric).
    return ['-p', f'checkpoint:={path}', '-p', f'filter_widths:={fw}', '-p', 'channels:=32',
            '-p', f'causal:={"true" if causal else "false"}',
            '-p', f'image_width:={W}', '-p', f'image_height:={H}']


@pytest.mark.parametrize('causal', [True, False])
def test_pipeline_stamps_and_bag(rig, clip_frames, make_checkpoint, causal):
    from sensor_msgs.msg import PointCloud2
    from visualization_msgs.msg import MarkerArray
    from vp3d_ros.io.bag_io import open_bag
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    start, client, tmp = rig
    ckpt, _ = make_checkpoint((3, 3, 3), 32, causal)
    params = os.path.join(REPO, 'config', 'vp3d.yaml')
    rec = start('recorder_node', '--params-file', params, '-p', f'bag_dir:={tmp}', '-p',
                'bag_name:=session', '-p', 'topics:=[/cam01/keypoints_2d, /cam01/skeleton_3d]')
    pose = start('pose2d_node', '--params-file', params, '-r', '__ns:=/cam01')
    lift = start('lifter_node', '--params-file', params, *checkpoint_params(ckpt, causal))
    client.collect(PointCloud2, '/cam01/keypoints_2d')
    client.collect(PointCloud2, '/cam01/skeleton_3d')
    client.collect(MarkerArray, '/cam01/skeleton_3d/markers')
    assert pose.wait_for_log('pose2d ready', 90), pose.log()
    assert lift.wait_for_log('lifter ready', 90), lift.log()
    assert rec.wait_for_log('recording /cam01/keypoints_2d', 90), rec.log()
    assert rec.wait_for_log('recording /cam01/skeleton_3d', 90), rec.log()
    sent = publish_lockstep(client, clip_frames)

    kp_msgs = real(client.messages('/cam01/keypoints_2d'))
    assert stamps_ns(kp_msgs) == sent
    assert all(m.header.frame_id == 'cam01_optical' for m in kp_msgs)
    people = [cloud_to_keypoints(m) for m in kp_msgs]
    assert sum(1 for p in people if p) >= N_FRAMES - 2, 'MediaPipe found nobody in the clip'
    # Symmetric models publish a frame once its future has arrived; the rest is flushed
    # with edge padding when the stream goes quiet (idle_flush_s).
    # Every frame from the first detection on gets a skeleton with its own stamp (frames
    # without a person in between are bridged); nothing else gets one.
    # (a detection whose joints are all below the lifter's min_confidence counts as none)
    from vp3d_ros.core.track_rules import DEFAULT as RULES
    seen_ok = [bool(p) and float(np.nanmax(p[0][1])) >= RULES.min_confidence for p in people]
    first = seen_ok.index(True)
    last = max(i for i, ok in enumerate(seen_ok) if ok)
    expected = sent[first:last + 1]
    assert client.wait_for(lambda: set(expected) <= set(stamps_ns(real(client.messages(
        '/cam01/skeleton_3d')))), 30), ([(s - sent[0]) // 33_333_333 for s in stamps_ns(client.messages('/cam01/skeleton_3d'))], first, last, [float(np.nanmax(p[0][1])) if p else None for p in people], lift.log())
    sk = real(client.messages('/cam01/skeleton_3d'))
    assert stamps_ns(sk) == expected
    poses = [cloud_to_keypoints(m)[0][0] for m in sk]
    assert all(p.shape == (17, 3) and np.all(np.isfinite(p)) for p in poses)
    markers = client.messages('/cam01/skeleton_3d/markers')
    assert markers and all(np.isfinite([pt.x for mk in m.markers for pt in mk.points]).all()
                           for m in markers)

    assert rec.stop(signal.SIGTERM) == 0, rec.log()
    # Every message the client saw is in the bag re-read from disk, decoding to exactly the
    # same message (byte comparison is meaningless: DDS leaves CDR padding uninitialised).
    from rclpy.serialization import deserialize_message
    with open_bag(tmp / 'session') as bag:
        assert set(bag.topics) == {'/cam01/keypoints_2d', '/cam01/skeleton_3d'}
        recorded = {t: real([deserialize_message(r[3], PointCloud2) for r in bag.messages([t])])
                    for t in bag.topics}
        meta = bag.metadata
    for topic, seen in (('/cam01/keypoints_2d', kp_msgs), ('/cam01/skeleton_3d', sk)):
        got = sorted(recorded[topic], key=lambda m: stamps_ns([m]))
        assert len(got) == len(seen) and all(a == b for a, b in zip(got, sorted(seen, key=lambda m: stamps_ns([m]))))
    # The bag names what the lifter loaded (its ~/model announcement), not a recorder parameter.
    from vp3d_ros.core.hashing import file_sha256
    assert meta['vp3d.checkpoint']['path'] == os.path.abspath(ckpt)
    assert meta['vp3d.checkpoint']['sha256'] == file_sha256(ckpt)
    assert meta['vp3d.checkpoint']['causal'] is causal and meta['vp3d.layout_2d'] == 'h36m'


def test_parameter_file_changes_behaviour(rig, clip_frames, make_checkpoint, tmp_path):
    """A params file switching pose2d to COCO keypoints plus the 33 landmarks."""
    from sensor_msgs.msg import PointCloud2
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    start, client, tmp = rig
    params = tmp_path / 'coco.yaml'
    params.write_text(yaml.safe_dump({'/**/pose2d': {'ros__parameters': {
        'keypoint_layout': 'coco', 'publish_landmarks': True, 'publish_world_landmarks': True}}}))
    pose = start('pose2d_node', '--params-file', str(params), '-r', '__ns:=/cam01')
    client.collect(PointCloud2, '/cam01/keypoints_2d')
    client.collect(PointCloud2, '/cam01/landmarks')
    client.collect(PointCloud2, '/cam01/world_landmarks')
    assert pose.wait_for_log('pose2d ready', 90), pose.log()
    publish_lockstep(client, clip_frames[:4], info=1)
    assert client.wait_for(lambda: len(real(client.messages('/cam01/world_landmarks'))) == 4, 10)
    kp = cloud_to_keypoints(real(client.messages('/cam01/keypoints_2d'))[-1])[0][0]
    lm = cloud_to_keypoints(real(client.messages('/cam01/landmarks'))[-1], num_joints=33)[0][0]
    world = cloud_to_keypoints(real(client.messages('/cam01/world_landmarks'))[-1], num_joints=33)[0][0]
    assert lm.shape == (33, 2) and world.shape == (33, 3)
    np.testing.assert_allclose(kp[0], lm[0], atol=1e-3)  # COCO joint 0 is the nose
    np.testing.assert_allclose(kp[16], lm[28], atol=1e-3)  # right ankle
    assert np.abs(world).max() < 2.5  # metres around the hips


def test_symmetric_with_immediate_low_latency_estimate(rig, clip_frames, make_checkpoint):
    """Symmetric lifting publishes late with original stamps; skeleton_3d/immediate (a causal
    model) answers every frame at once."""
    from sensor_msgs.msg import PointCloud2
    start, client, tmp = rig
    sym, _ = make_checkpoint((3, 3, 3), 32, causal=False, name='sym.bin')
    fast, _ = make_checkpoint((3, 3), 32, causal=True, name='fast.bin')
    params = os.path.join(REPO, 'config', 'vp3d.yaml')
    pose = start('pose2d_node', '--params-file', params, '-r', '__ns:=/cam01')
    lift = start('lifter_node', '--params-file', params, *checkpoint_params(sym, False),
                 '-p', f'low_latency_checkpoint:={fast}', '-p', 'idle_flush_s:=30.0')
    client.collect(PointCloud2, '/cam01/keypoints_2d')
    client.collect(PointCloud2, '/cam01/skeleton_3d')
    client.collect(PointCloud2, '/cam01/skeleton_3d/immediate')
    assert pose.wait_for_log('pose2d ready', 90), pose.log()
    assert lift.wait_for_log('lifter ready', 90), lift.log()
    sent = publish_lockstep(client, clip_frames[:10])
    assert client.wait_for(lambda: len(real(client.messages('/cam01/skeleton_3d/immediate'))) == 10, 10), \
        (stamps_ns(client.messages('/cam01/skeleton_3d/immediate')), [len(m.data) for m in real(client.messages('/cam01/keypoints_2d'))], lift.log()[-3000:])
    assert stamps_ns(real(client.messages('/cam01/skeleton_3d/immediate'))) == sent
    # RF 27: frame t is published when frame t+13 arrives; with 10 frames and no flush yet,
    # nothing symmetric can be out.
    assert real(client.messages('/cam01/skeleton_3d')) == []
    lift.stop(signal.SIGTERM)  # shutdown publishes what is owed (edge padding)
    assert client.wait_for(lambda: len(real(client.messages('/cam01/skeleton_3d'))) == 10, 10), lift.log()
    assert stamps_ns(real(client.messages('/cam01/skeleton_3d'))) == sent
