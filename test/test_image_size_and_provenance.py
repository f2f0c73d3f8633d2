"""What real cameras and rigs bring, over real DDS (issue 13 items 2-3, issue 17 item 3).

- A camera that publishes images on /<cam>/image_raw and no camera_info (cam2image, an
  OpenCV webcam script) gets skeletons from the default node set with no size parameter:
  pose2d announces the size it saw on keypoints_2d/image_info and the lifter normalises by
  it. The skeletons equal lifting the same keypoints at the true image size.
- A camera_info that disagrees with the images gets frames refused with a rate-limited error
  line; no skeleton is ever lifted at the camera_info's (wrong) scale.
- A bag names the model the lifter actually loaded (its latched ~/model announcement), even
  when the recorder is started first and is told another checkpoint.
"""
import json
import os
import signal
import time

import numpy as np

from ros_harness import stamps_ns
from test_robustness_common import (H, SEC, W, clip_frames, handshake, image, reliable,  # noqa: F401
                                    rig, send_until)

N = 14
STEP = 33_333_333
KP, SK, INFO = '/cam01/keypoints_2d', '/cam01/skeleton_3d', '/cam01/keypoints_2d/image_info'


def _lifter_args(ckpt):
    """A causal test lifter for cam01 with NO image size parameter."""
    return ('-p', 'cameras:=[cam01]', '-p', f'checkpoint:={ckpt}',
            '-p', 'filter_widths:=[3, 3, 3]', '-p', 'channels:=32', '-p', 'causal:=true')


def _start(rig, ckpt):
    """pose2d as the default launch starts it (namespace cam01, image remapped to image_raw)
    and a lifter with no size parameter; the client collects keypoints, skeletons, sizes."""
    from sensor_msgs.msg import CameraInfo, PointCloud2
    start, client, tmp = rig
    pose = start('pose2d_node', '-r', '__ns:=/cam01', '-r', 'image:=image_raw', name='pose2d')
    lift = start('lifter_node', *_lifter_args(ckpt), name='lifter')
    for topic, kind in ((KP, PointCloud2), (SK, PointCloud2), (INFO, CameraInfo)):
        client.collect(kind, topic, latched=True)
    assert pose.wait_for_log('pose2d ready', 90), pose.log()
    assert lift.wait_for_log('lifter ready', 90), lift.log()
    # The lifter subscribes to keypoints_2d once it sees pose2d's publisher.
    assert client.wait_for(lambda: client.node.count_subscribers(KP) >= 2, 60), lift.log()
    return pose, lift


class _Camera:
    """A driver publishing images, and camera_info of ``info_size`` before each if given."""

    def __init__(self, client, info_size=None):
        from sensor_msgs.msg import CameraInfo, Image
        self.info_size = info_size
        self.img = client.node.create_publisher(Image, '/cam01/image_raw', reliable(5))
        self.info = (client.node.create_publisher(CameraInfo, '/cam01/camera_info', reliable(5))
                     if info_size else None)
        assert client.wait_for_subscribers(self.img, 1, 60), 'pose2d never subscribed'
        if self.info:  # pose2d and the lifter
            assert client.wait_for_subscribers(self.info, 2, 60), 'camera_info not subscribed'

    def publish(self, msg):
        if self.info:
            from sensor_msgs.msg import CameraInfo
            self.info.publish(CameraInfo(header=msg.header, width=self.info_size[0],
                                         height=self.info_size[1]))
        self.img.publish(msg)


def _drive(client, camera, frames, t0):
    """Each frame once pose2d answered the previous one (its mailbox holds one frame)."""
    used = handshake(client, camera, lambda ns: image(frames[0], ns), t0, KP)
    sent = [used[-1] + i * STEP for i in range(1, len(frames))]
    for ns, frame in zip(sent, frames[1:]):
        assert send_until(client, camera, image(frame, ns),
                          lambda: ns in stamps_ns(client.messages(KP)), 60)
    return used + sent


def _reference(ckpt, kp_msgs, size):
    """The same keypoints lifted at ``size`` with the same gap rules (offline.lift_frames)."""
    from vp3d_ros.core.checkpoint import load_checkpoint
    from vp3d_ros.core.lifter import SequenceLifter
    from vp3d_ros.apps.offline import Frame2D, lift_frames
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    loaded = load_checkpoint(ckpt, filter_widths=(3, 3, 3), channels=32, causal=True)
    lifter = SequenceLifter(loaded.build(), input_layout='h36m', flip=True)
    frames = {}
    for m in kp_msgs:  # a re-sent frame gives a second message with the same stamp
        ns = stamps_ns([m])[0]
        frames.setdefault(ns, Frame2D(ns, m.header.frame_id, size, cloud_to_keypoints(m)))
    return lift_frames([frames[ns] for ns in sorted(frames)], lifter)


def _assert_right_scale(live, ref):
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    for msg in live:
        ns = stamps_ns([msg])[0]
        got = cloud_to_keypoints(msg)
        assert sorted(got) == sorted(ref[ns]), ns
        for pid, (pose, _) in got.items():
            np.testing.assert_allclose(pose, ref[ns][pid].pose, atol=1e-4, rtol=0)


def test_camera_without_camera_info_gets_skeletons(rig, make_checkpoint):
    start, client, tmp = rig
    ckpt, _ = make_checkpoint((3, 3, 3), 32, causal=True)
    pose, lift = _start(rig, ckpt)
    sent = _drive(client, _Camera(client), clip_frames(N), 3000 * SEC)

    sizes = client.messages(INFO)
    assert [(m.width, m.height) for m in sizes] == [(W, H)], sizes  # once: the size never changed
    # announced with the first frame pose2d processed (the handshake may re-send the first
    # image until discovery completes: which copy gets through varies)
    assert stamps_ns(sizes)[0] == min(stamps_ns(client.messages(KP))) and \
        stamps_ns(sizes)[0] in sent and sizes[0].header.frame_id == 'cam01_optical'
    ref = _reference(ckpt, client.messages(KP), (W, H))
    assert len(ref) >= N - 2, 'MediaPipe found nobody in the clip'
    assert client.wait_for(lambda: set(ref) <= set(stamps_ns(client.messages(SK))), 20), \
        lift.log()
    live = client.messages(SK)
    assert sorted(stamps_ns(live)) == sorted(ref)
    _assert_right_scale(live, ref)
    assert 'no image size' not in lift.log() and 'refused' not in lift.log()


def test_camera_info_that_disagrees_is_refused_not_lifted_at_a_wrong_scale(rig, make_checkpoint):
    start, client, tmp = rig
    ckpt, _ = make_checkpoint((3, 3, 3), 32, causal=True)
    pose, lift = _start(rig, ckpt)
    t_start = time.monotonic()
    sent = _drive(client, _Camera(client, info_size=(2 * W, 2 * H)), clip_frames(N),
                  4000 * SEC)
    elapsed = time.monotonic() - t_start
    time.sleep(1.5)  # anything still in flight arrives (and the idle flush has run)

    ref = _reference(ckpt, client.messages(KP), (W, H))
    assert len(ref) >= N - 2, 'MediaPipe found nobody in the clip'
    live = client.messages(SK)
    # Lifted frames (if any: those before the lifter had the camera_info) are at the images'
    # true scale and form the start of the stream; once camera_info is known, none is lifted.
    stamps = sorted(stamps_ns(live))
    assert stamps == sorted(ref)[:len(stamps)]
    assert len(stamps) <= len(ref) - N // 2, (stamps, sent)
    _assert_right_scale(live, ref)
    line = (f"cam01: the images (pose2d's keypoints_2d/image_info) are {W}x{H} but camera_info "
            f'says {2 * W}x{2 * H}; frames refused rather than lifted at a wrong scale')
    log = lift.log()
    assert line in log, log
    assert 1 <= log.count(line) <= 2 + elapsed / 5, log  # rate-limited, one key per kind
    assert 'the lifter will refuse these frames' in pose.log()


def test_bag_names_the_model_the_lifter_loaded(rig, make_checkpoint):
    """Recorder first (told a checkpoint it no longer uses), then a lifter on a non-default
    symmetric checkpoint: the bag's metadata names the lifter's file, hash and architecture."""
    from std_msgs.msg import String
    from vp3d_ros.io.bag_io import open_bag
    from vp3d_ros.core.hashing import file_sha256
    start, client, tmp = rig
    ckpt, _ = make_checkpoint((3, 3), 16, causal=False, name='custom_symmetric.bin')
    other, _ = make_checkpoint((3, 3, 3), 32, causal=True, name='other.bin')
    rec = start('recorder_node', '-p', f'bag_dir:={tmp}', '-p', 'bag_name:=prov',
                '-p', f'checkpoint:={other}', '-p', 'lifter_mode:=causal', name='recorder')
    assert rec.wait_for_log('recording to', 60), rec.log()
    lift = start('lifter_node', '-p', 'cameras:=[cam01]', '-p', f'checkpoint:={ckpt}',
                 '-p', 'mode:=symmetric', '-p', 'flip:=false', name='lifter')
    client.collect(String, '/lifter/model', latched=True)
    assert lift.wait_for_log('lifter ready', 90), lift.log()
    assert rec.wait_for_log('lifter model from /lifter/model', 60), rec.log()
    assert client.wait_for(lambda: client.messages('/lifter/model'), 30)
    announced = json.loads(client.messages('/lifter/model')[0].data)
    assert rec.stop(signal.SIGTERM) == 0, rec.log()
    assert 'no longer used by the recorder' in rec.log()

    expected = {
        'path': os.path.abspath(ckpt), 'sha256': file_sha256(ckpt),
        'architecture': {'filter_widths': [3, 3], 'channels': 16, 'causal': False,
                         'receptive_field': 9, 'joints_in': 17, 'joints_out': 17},
        'input_layout': 'h36m', 'causal': False, 'flip': False, 'mode': 'symmetric',
        'shipped_default': False}
    assert {k: announced[k] for k in expected} == expected
    assert announced['node'] == '/lifter' and announced['cameras'] == ['cam01']
    assert announced['low_latency'] is None
    with open_bag(tmp / 'prov') as bag:
        meta = bag.metadata
    assert meta['vp3d.checkpoint'] == {**announced, 'topic': '/lifter/model'}
    assert meta['vp3d.models'] == [meta['vp3d.checkpoint']]
    assert 'checkpoint' not in meta['vp3d.parameters']['recorder_node']
