"""vp3d-offline: the bundled clip and camera bags -> LandmarkRecord bags; equality with the
live nodes (real processes over DDS, fed by bag_replay); bad input exits 2 leaving nothing."""
import contextlib
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import CLIP, REPO
from ros_harness import Client, NodeProcess, ros_env, stamps_ns, unique_domain_id
from vp3d_ros.core.options import LifterOptions
from vp3d_ros.core.track_rules import TrackRules
from vp3d_ros.io import bag_io
from vp3d_ros.io.bag_io import BagWriter, open_bag
from vp3d_ros.cli.offline import main as offline_main
from vp3d_ros.apps.offline import (Frame2D, Progress, camera_name_from_file,
                              lift_frames, process)

N_CLIP = 24          # frames of the bundled clip (1080x1920, 60 fps)
FW, CH = (3, 3), 16  # small symmetric model: receptive field 9
RF = 9
CLOUD = 'sensor_msgs/msg/PointCloud2'
KP, SK = '/cam01/keypoints_2d', '/cam01/skeleton_3d'

# Camera bag: two cameras at 30 fps, 270x480; cam01 raw bgr8 with blank frames (no person),
# cam02 JPEG CompressedImage. With max_gap_frames=2, cam01's frames 9-10 are bridged and
# 17-19 end the first segment (so they get no pose).
N_CAM, CAM_W, CAM_H = 30, 270, 480
BLANK = {9, 10, 17, 18, 19}
MAX_GAP = 2
CAM_T0 = 50 * 10**9

_CACHE = {}


def _run_clip(make_checkpoint, tmp_path):
    """One offline run on the clip, shared by the tests that only read it."""
    if 'clip' not in _CACHE:
        ckpt, _ = make_checkpoint(FW, CH, causal=False)
        out = tmp_path / 'clip_landmarks'
        summary = process(CLIP, out, lifter=LifterOptions(checkpoint=ckpt, mode='symmetric'), max_frames=N_CLIP)
        _CACHE['clip'] = ckpt, out, summary
    return _CACHE['clip']


@pytest.fixture
def clip_run(make_checkpoint, tmp_path):
    return _run_clip(make_checkpoint, tmp_path)


def all_messages(path):
    with open_bag(path) as bag:
        return list(bag.messages())


def header_ns(raw):
    msg = bag_io.typestore().deserialize_cdr(raw, CLOUD)
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


# -- the bundled clip -----------------------------------------------------------------------
def test_clip_frames_stamps_and_determinism(clip_run, tmp_path, capsys):
    ckpt, first, summary = clip_run
    assert (summary.frames, summary.persons, summary.frames_without_person) == (N_CLIP, 1, 0)
    assert summary.cameras == ['cam01'] and summary.checkpoint == os.path.abspath(ckpt)
    assert summary.fps > 0 and summary.out == str(first)

    second = tmp_path / 'again'
    assert offline_main([CLIP, '--out', str(second), '--checkpoint', ckpt,
                         '--max-frames', str(N_CLIP)]) == 0
    out = capsys.readouterr()
    assert f'{N_CLIP} frames' in out.out and 'frames/s' in out.out and '\r' not in out.err
    a, b = all_messages(first), all_messages(second)
    assert a == b, 'two runs differ'
    expected = [int(round(i / 60.0 * 1e9)) for i in range(N_CLIP)]
    for topic in (KP, SK):
        msgs = [m for m in a if m[0] == topic]
        assert [m[2] for m in msgs] == expected  # bag time = stamp = frame_index / fps
        assert [header_ns(m[3]) for m in msgs] == expected


def test_clip_bag_round_trip(clip_run):
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import PointCloud2
    from vp3d_ros.core.checkpoint import file_sha256
    from vp3d_ros.io.records import read_landmark_tracks
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints, keypoints_to_cloud
    ckpt, path, _ = clip_run
    with open_bag(path) as bag:
        assert bag.storage == 'mcap'
        assert {t: (i.msgtype, i.count) for t, i in bag.topics.items()} == {
            KP: (CLOUD, N_CLIP), SK: (CLOUD, N_CLIP)}
        meta = bag.metadata
        msgs = list(bag.messages())
    assert meta['vp3d.format'] == 'LandmarkRecord/1'
    assert meta['vp3d.layout_2d'] == 'h36m' and meta['vp3d.layout_3d'] == 'h36m'
    # What was loaded, named like the live lifter's ~/model announcement.
    assert meta['vp3d.checkpoint'] == {
        'path': os.path.abspath(ckpt), 'sha256': file_sha256(ckpt),
        'architecture': {'filter_widths': list(FW), 'channels': CH, 'causal': False,
                         'receptive_field': RF, 'joints_in': 17, 'joints_out': 17},
        'input_layout': 'h36m', 'causal': False, 'flip': True, 'mode': 'symmetric',
        'shipped_default': False}
    assert meta['vp3d.models'] == [meta['vp3d.checkpoint']]
    params = meta['vp3d.parameters']['vp3d-offline']
    assert params['mode'] == 'symmetric' and params['filter_widths'] == list(FW)
    for topic, _, _, raw in msgs:
        msg = deserialize_message(raw, PointCloud2)
        dims = 3 if topic == SK else 2
        # The message the nodes build for this content (rclpy leaves CDR padding bytes
        # uninitialised, so messages are compared, not bytes; rosbags writes zeros).
        people = cloud_to_keypoints(msg)
        ids = sorted(people)
        assert keypoints_to_cloud(msg.header, np.array([people[i][0] for i in ids]),
                                  np.array([people[i][1] for i in ids]), ids) == msg
        names = ['x', 'y', 'z'][:dims] + ['confidence', 'joint', 'person']
        assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == \
            [(n, 4 * i, 7, 1) for i, n in enumerate(names)]
        assert (msg.height, msg.width, msg.point_step, msg.is_dense) == \
            (1, 17, 4 * len(names), True)
        assert msg.header.frame_id == 'camera_optical_frame'
        person = cloud_to_keypoints(msg)[0]
        assert person[0].shape == (17, dims) and np.all(np.isfinite(person[0]))
    tracks = read_landmark_tracks(path)
    assert sorted((t.topic, t.person, t.dims, len(t.stamps_s)) for t in tracks) == [
        (KP, 0, 2, N_CLIP), (SK, 0, 3, N_CLIP)]
    kp = next(t for t in tracks if t.dims == 2).positions
    assert 0 < kp[..., 0].min() and kp[..., 0].max() < 1080 and kp[..., 1].max() < 1920


def test_live_lifter_node_matches_offline(clip_run, tmp_path):
    """The offline bag's keypoints replayed into a real lifter node (same symmetric
    checkpoint): its skeleton_3d equals the offline one."""
    from sensor_msgs.msg import PointCloud2
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    from bag_replay import BagReplay
    ckpt, path, _ = clip_run
    env = ros_env(unique_domain_id(), tmp_path / 'ros_log')
    # Everything opened is closed whatever fails: a client left spinning aborts the run.
    with contextlib.ExitStack() as opened:
        client = Client(int(env['ROS_DOMAIN_ID']))
        opened.callback(client.close)
        lifter = NodeProcess('lifter_node', [
            '-p', 'cameras:=[cam01]', '-p', f'checkpoint:={ckpt}', '-p', 'causal:=false',
            '-p', 'mode:=symmetric', '-p', 'image_width:=1080', '-p', 'image_height:=1920',
            '-p', 'idle_flush_s:=1.0'], env, tmp_path / 'lifter.log')
        opened.callback(lifter.stop)
        sub = client.collect(PointCloud2, SK)
        assert lifter.wait_for_log('lifter ready', 90), lifter.log()
        replay = BagReplay(client.node, path, topics=[KP])
        assert replay.wait_for_subscribers(timeout=60), lifter.log()
        assert client.wait_for(lambda: sub.get_publisher_count() >= 1, 60), lifter.log()
        assert replay.play() == N_CLIP
        assert client.wait_for(lambda: len(client.messages(SK)) >= N_CLIP - 1, 30), lifter.log()
        time.sleep(1.5)  # the idle flush has published everything owed
        live = {stamps_ns([m])[0]: m for m in client.messages(SK)}
        assert len(live) == len(client.messages(SK))
    offline = {}
    for _, _, stamp, raw in all_messages(path):
        if len(bag_io.typestore().deserialize_cdr(raw, CLOUD).fields) == 6:
            offline[stamp] = raw
    stamps = sorted(offline)
    # A lifter may drop the first frame: its stamp is 0 (frame_index / fps), which ROS reads
    # as "unstamped". Then its segment starts one frame later and only the frames whose
    # receptive field lies inside it must agree; with every frame, all must.
    have = [i for i, s in enumerate(stamps) if s in live]
    assert set(live) <= set(offline) and have == list(range(have[0], N_CLIP)) and have[0] <= 1
    from rclpy.serialization import deserialize_message
    compared = interior = 0
    for i in have:
        inside = have[0] <= i - RF // 2 and i + RF // 2 < N_CLIP
        if not (inside or have[0] == 0):
            continue
        off = deserialize_message(offline[stamps[i]], PointCloud2)
        a, b = cloud_to_keypoints(live[stamps[i]])[0], cloud_to_keypoints(off)[0]
        np.testing.assert_allclose(a[0], b[0], atol=1e-5, rtol=0)
        np.testing.assert_array_equal(a[1], b[1])
        assert live[stamps[i]].header == off.header
        compared += 1
        interior += inside
    assert interior >= N_CLIP - RF and compared >= interior


# -- the lifting stage, pure ---------------------------------------------------------------
def test_lift_frames_equals_track_window_streaming(make_checkpoint):
    """Same gap rules and poses as the live path (TrackWindow + StreamingLifter) on 2D with
    short gaps, a long gap, a jump in time, weak joints and a second person."""
    from vp3d_ros.core.checkpoint import load_checkpoint
    from vp3d_ros.core.lifter import SequenceLifter, StreamingLifter
    from vp3d_ros.core.windowing import TrackWindow
    ckpt, _ = make_checkpoint(FW, CH, causal=False)
    model = load_checkpoint(ckpt).build()
    rng = np.random.default_rng(3)
    frames, stamp = [], 10**9
    for i in range(70):
        stamp += 33_333_333 if i != 50 else 2 * 10**9  # a gap in time at frame 50
        people = {}
        if not (12 <= i <= 13 or 25 <= i <= 31):  # short gap bridged, long gap split
            kp = 300 + 40 * rng.normal(size=(17, 2)) + i
            conf = rng.uniform(0.3, 1.0, 17)
            if i % 7 == 0:
                conf[[3, 9]] = 0.05  # weak joints hold their last position
            people[0] = (kp, conf)
        if i >= 20:
            people[4] = (500 + 30 * rng.normal(size=(17, 2)), rng.uniform(0.5, 1.0, 17))
        frames.append(Frame2D(stamp, 'cam', (640, 480), people))

    got = lift_frames(frames, SequenceLifter(model), TrackRules(max_gap_frames=5))
    chunked = lift_frames(frames, SequenceLifter(model), TrackRules(max_gap_frames=5), chunk=4)

    tracks, live = {}, {}
    for fr in frames:
        for pid in set(tracks) | set(fr.people):
            if pid not in tracks:
                tracks[pid] = TrackWindow(
                    lambda w, h: StreamingLifter(model, 'h36m', width=w, height=h), 5, 0.5, 0.2)
            kp, conf = fr.people.get(pid, (None, None))
            for lp in tracks[pid].add(fr.stamp_ns, kp, conf, fr.size):
                live.setdefault(lp.stamp_ns, {})[pid] = lp
    for pid, t in tracks.items():
        for lp in t.finish():
            live.setdefault(lp.stamp_ns, {})[pid] = lp

    assert sorted(got) == sorted(live)
    assert sum(len(v) for v in got.values()) == 70 - 7 + 50  # the long gap has no poses
    assert sum(lp.bridged for v in got.values() for lp in v.values()) == 2
    for stamp in live:
        assert sorted(got[stamp]) == sorted(live[stamp])
        for pid, lp in live[stamp].items():
            np.testing.assert_allclose(got[stamp][pid].pose, lp.pose, atol=1e-5, rtol=0)
            np.testing.assert_allclose(chunked[stamp][pid].pose, lp.pose, atol=1e-5, rtol=0)
            np.testing.assert_array_equal(got[stamp][pid].confidence, lp.confidence)
            assert got[stamp][pid].bridged == lp.bridged


def _live_track_poses(model, frames, max_gap_frames=10, block=1, defer=False):
    """The live lifter's path over the same frames: {stamp: {person: pose}}."""
    from vp3d_ros.core.lifter import StreamingLifter, lift_queued
    from vp3d_ros.core.windowing import TrackWindow
    tracks, live = {}, {}

    def keep(pid, poses):
        for lp in poses:
            live.setdefault(lp.stamp_ns, {})[pid] = lp
    for fr in frames:
        for pid in sorted(set(tracks) | set(fr.people)):
            if pid not in tracks:
                tracks[pid] = TrackWindow(lambda w, h: StreamingLifter(
                    model, 'h36m', width=w, height=h, block=block, deferred=defer),
                    max_gap_frames, 0.5, 0.2)
            kp, conf = fr.people.get(pid, (None, None))
            keep(pid, tracks[pid].add(fr.stamp_ns, kp, conf, fr.size))
        if defer:  # what the lifter node does after queueing a frame's persons
            ids = [pid for pid, t in tracks.items() if t.lifter is not None]
            for pid, got in zip(ids, lift_queued([tracks[pid].lifter for pid in ids])):
                keep(pid, tracks[pid].collect(got))
    for pid, t in tracks.items():
        keep(pid, t.finish())
        keep(pid, t.finish())  # a second end of an already ended track owes nothing
    return live


# What follows a person's last detection, more than max_gap_frames (10) before the end.
LEAVING = {
    'leaves': [],                                           # the reproduction
    'size_change': [(31, (800, 600), None)],                # a new image size, nobody there
    'time_backwards': [(31, (640, 480), -5)],               # a looping bag, nobody there
    'returns_after_loss': [(31, (640, 480), 'p0'), (32, (640, 480), 'p0')],
}


@pytest.mark.parametrize('case', sorted(LEAVING))
def test_person_leaving_the_scene_ends_the_track(make_checkpoint, tmp_path, case):
    """A person seen for 20 frames, then absent for 11 (> max_gap_frames): their segment ends
    when the gap exceeds the limit, and the end of the run (or a later reset) finishes an
    empty window. Offline must lift the 20 frames and write the bag, like the live path
    (the offline buffer crashed on the empty window: ValueError, no bag)."""
    from vp3d_ros.core.checkpoint import load_checkpoint
    from vp3d_ros.core.lifter import SequenceLifter
    from vp3d_ros.apps.offline import CameraResult, write_bag
    from vp3d_ros.io.records import read_landmark_tracks
    ckpt, _ = make_checkpoint(FW, CH, causal=False)
    model = load_checkpoint(ckpt).build()
    rng = np.random.default_rng(11)
    kp = 300 + 40 * rng.normal(size=(40, 17, 2))
    conf = np.full(17, 0.9)
    dt = 33_333_333
    frames = [Frame2D(10**9 + i * dt, 'cam', (640, 480), {0: (kp[i], conf)} if i < 20 else {})
              for i in range(31)]
    for i, size, what in LEAVING[case]:
        stamp = 10**9 + (i if not isinstance(what, int) else i + what) * dt
        frames.append(Frame2D(stamp, 'cam', size, {0: (kp[i], conf)} if what == 'p0' else {}))

    got = lift_frames(frames, SequenceLifter(model))
    first = SequenceLifter(model).lift(kp[:20].astype(np.float64), 640, 480)
    stamps = [10**9 + i * dt for i in range(20)]
    assert sorted(got)[:20] == stamps
    np.testing.assert_allclose(np.stack([got[s][0].pose for s in stamps]), first, atol=1e-6)
    extra = [fr.stamp_ns for fr in frames[31:] if fr.people]
    assert sorted(got)[20:] == extra  # a returning person starts a new segment
    for live in (_live_track_poses(model, frames),
                 _live_track_poses(model, frames, block=4, defer=True)):
        assert sorted(live) == sorted(got)
        for s in live:
            np.testing.assert_allclose(live[s][0].pose, got[s][0].pose, atol=1e-5, rtol=0)

    out = tmp_path / 'left.mcap'
    write_bag(out, 'mcap', {}, [CameraResult('cam01', frames, got)], 17)
    (sk,) = [t for t in read_landmark_tracks(out) if t.topic == SK]
    assert len(sk.stamps_s) == 20 + len(extra)
    (k2,) = [t for t in read_landmark_tracks(out) if t.topic == KP]
    assert len(k2.stamps_s) == len(frames)


# -- camera bags ---------------------------------------------------------------------------
def _clip_frames(n, w, h):
    cap = cv2.VideoCapture(CLIP)
    out = []
    while len(out) < n:
        ok, bgr = cap.read()
        assert ok
        out.append(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA))
    cap.release()
    return out


def _header(ts, stamp_ns, frame_id):
    return ts['std_msgs/msg/Header'](
        stamp=ts['builtin_interfaces/msg/Time'](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
        frame_id=frame_id)


def _camera_info(ts, stamp_ns, frame_id, w, h):
    f = float(np.hypot(w, h))
    return ts['sensor_msgs/msg/CameraInfo'](
        header=_header(ts, stamp_ns, frame_id), height=h, width=w, distortion_model='plumb_bob',
        d=np.zeros(5), k=np.array([f, 0, w / 2, 0, f, h / 2, 0, 0, 1.0]),
        r=np.eye(3).reshape(-1), p=np.array([f, 0, w / 2, 0, 0, f, h / 2, 0, 0, 0, 1.0, 0]),
        binning_x=0, binning_y=0, roi=ts['sensor_msgs/msg/RegionOfInterest'](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


CAMERA_TOPICS = {'/cam01/camera_info': 'sensor_msgs/msg/CameraInfo',
                 '/cam01/image': 'sensor_msgs/msg/Image',
                 '/cam02/camera_info': 'sensor_msgs/msg/CameraInfo',
                 '/cam02/image/compressed': 'sensor_msgs/msg/CompressedImage'}


def camera_messages(bgr, stamp, info_size=(CAM_W, CAM_H), blank1=False, blank2=False,
                    encoding='bgr8'):
    """One frame of both cameras: [(topic, bag time, rosbags message)], camera_info first;
    cam01 shows the frame (or black), cam02 it mirrored (or black), as JPEG."""
    ts = bag_io.typestore().types
    s1, s2 = stamp, stamp + 5_000_000
    img = np.zeros_like(bgr) if blank1 else bgr
    mirrored = np.zeros_like(bgr) if blank2 else np.ascontiguousarray(bgr[:, ::-1])
    ok, jpg = cv2.imencode('.jpg', mirrored, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return [
        ('/cam01/camera_info', s1 - 1, _camera_info(ts, s1, 'cam01_optical', *info_size)),
        ('/cam01/image', s1, ts['sensor_msgs/msg/Image'](
            header=_header(ts, s1, 'cam01_optical'), height=CAM_H, width=CAM_W,
            encoding=encoding, is_bigendian=0, step=CAM_W * 3,
            data=np.ascontiguousarray(img).reshape(-1))),
        ('/cam02/camera_info', s2 - 1, _camera_info(ts, s2, 'cam02_optical', CAM_W, CAM_H)),
        ('/cam02/image/compressed', s2, ts['sensor_msgs/msg/CompressedImage'](
            header=_header(ts, s2, 'cam02_optical'), format='rgb8; jpeg compressed bgr8',
            data=jpg.reshape(-1))),
    ]


def write_camera_bag(path, storage='mcap', n=N_CAM, info_size=(CAM_W, CAM_H),
                     bad_encoding_at=None):
    """cam01: raw bgr8 Image (+ blank frames), cam02: JPEG CompressedImage; camera_info each."""
    with BagWriter(path, storage=storage) as w:
        for topic, msgtype in CAMERA_TOPICS.items():
            w.add_topic(topic, msgtype)
        for i, bgr in enumerate(_clip_frames(n, CAM_W, CAM_H)):
            stamp = CAM_T0 + int(round(i * 1e9 / 30))
            for topic, t, msg in camera_messages(
                    bgr, stamp, info_size, blank1=i in BLANK,
                    encoding='32FC1' if i == bad_encoding_at else 'bgr8'):
                w.write_msg(topic, t, msg)
    return path


def _stamps(cam):
    return [CAM_T0 + int(round(i * 1e9 / 30)) + (5_000_000 if cam == 'cam02' else 0)
            for i in range(N_CAM)]


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_camera_bag_per_camera(make_checkpoint, tmp_path, storage):
    ckpt, _ = make_checkpoint(FW, CH, causal=False)
    bag = write_camera_bag(tmp_path / 'cameras', storage)
    out = tmp_path / 'landmarks'
    s = process(bag, out, lifter=LifterOptions(checkpoint=ckpt, mode='symmetric'), storage=storage,
                rules=TrackRules(max_gap_frames=MAX_GAP))
    assert s.cameras == ['cam01', 'cam02'] and s.frames == 2 * N_CAM
    assert s.frames_without_person == len(BLANK) and s.persons == 2
    with open_bag(out) as b:
        assert b.storage == storage
        counts = {t: i.count for t, i in b.topics.items()}
        msgs = list(b.messages())
    assert counts == {'/cam01/keypoints_2d': N_CAM, '/cam01/skeleton_3d': N_CAM - 3,
                      '/cam02/keypoints_2d': N_CAM, '/cam02/skeleton_3d': N_CAM}
    assert [m[2] for m in msgs] == sorted(m[2] for m in msgs)
    for cam in ('cam01', 'cam02'):
        kp = [m for m in msgs if m[0] == f'/{cam}/keypoints_2d']
        assert [m[2] for m in kp] == [header_ns(m[3]) for m in kp] == _stamps(cam)
        sk = [m for m in msgs if m[0] == f'/{cam}/skeleton_3d']
        want = [s for i, s in enumerate(_stamps(cam)) if cam == 'cam02' or i not in (17, 18, 19)]
        assert [m[2] for m in sk] == [header_ns(m[3]) for m in sk] == want
        for _, _, _, raw in kp + sk:
            msg = bag_io.typestore().deserialize_cdr(raw, CLOUD)
            assert msg.header.frame_id == f'{cam}_optical'
    # Blank frames: empty keypoint clouds; the bridged ones get poses with zero confidence.
    kp1 = {m[2]: bag_io.typestore().deserialize_cdr(m[3], CLOUD) for m in msgs
           if m[0] == '/cam01/keypoints_2d'}
    assert [i for i, s in enumerate(_stamps('cam01')) if kp1[s].width == 0] == sorted(BLANK)

    # One camera chosen by topic, named by --camera-name.
    one = tmp_path / 'one'
    assert offline_main([str(bag), '--out', str(one), '--checkpoint', ckpt, '--topics',
                         '/cam02/image/compressed', '--camera-name', 'side',
                         '--max-frames', '5']) == 0
    with open_bag(one) as b:
        assert {t: i.count for t, i in b.topics.items()} == {
            '/side/keypoints_2d': 5, '/side/skeleton_3d': 5}


@pytest.fixture
def rig(tmp_path):
    env = ros_env(unique_domain_id(), tmp_path / 'ros_log')
    client = Client(int(env['ROS_DOMAIN_ID']))
    procs = []

    def start(exe, *args, name):
        procs.append(NodeProcess(exe, args, env, tmp_path / f'{name}.log'))
        return procs[-1]
    try:
        yield start, client
    finally:
        try:
            client.close()
        finally:
            for p in procs:
                p.stop()


def warm_up(client, replay, lifter, rounds=20):
    """Until the lifter demonstrably hears both pose2d nodes (DDS discovery can take seconds
    under load, and frames sent before it are lost): blank frames (nobody in them, which
    leaves no state in MediaPipe or the lifter) stamped before the bag, counted in the
    lifter's /diagnostics."""
    from diagnostic_msgs.msg import DiagnosticArray
    client.collect(DiagnosticArray, '/diagnostics')

    def received():
        values = [{kv.key: kv.value for kv in st.values} for m in client.messages('/diagnostics')
                  for st in m.status if st.name.endswith('lifter')]
        return int(values[-1]['received']) if values else 0

    blank = np.zeros((CAM_H, CAM_W, 3), np.uint8)
    for k in range(rounds):
        before = received()
        for topic, _, msg in camera_messages(blank, CAM_T0 - 10**10 + k * 10**8):
            replay.publishers[topic].publish(
                bytes(bag_io.typestore().serialize_cdr(msg, CAMERA_TOPICS[topic])))
        if client.wait_for(lambda: received() >= before + 2, 4.0):
            return
    raise AssertionError('the lifter never heard both pose2d nodes:\n' + lifter.log())


def test_camera_bag_replay_through_live_nodes(rig, make_checkpoint, tmp_path):
    """bag_replay -> pose2d (raw and compressed) -> lifter gives what offline computes:
    the same keypoints_2d messages and the same skeletons."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import PointCloud2
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    from bag_replay import BagReplay
    start, client = rig
    ckpt, _ = make_checkpoint(FW, CH, causal=False)
    bag = write_camera_bag(tmp_path / 'cameras')
    out = tmp_path / 'offline'
    process(bag, out, lifter=LifterOptions(checkpoint=ckpt, mode='symmetric'),
            rules=TrackRules(max_gap_frames=MAX_GAP))

    p1 = start('pose2d_node', '-r', '__ns:=/cam01', name='pose2d_cam01')
    p2 = start('pose2d_node', '-r', '__ns:=/cam02', '-p', 'compressed:=true', name='pose2d_cam02')
    lifter = start('lifter_node', '-p', 'cameras:=[cam01, cam02]', '-p', f'checkpoint:={ckpt}',
                   '-p', 'causal:=false', '-p', 'mode:=symmetric',
                   '-p', f'max_gap_frames:={MAX_GAP}', '-p', 'idle_flush_s:=3.0', name='lifter')
    topics = [f'/{c}/{k}' for c in ('cam01', 'cam02') for k in ('keypoints_2d', 'skeleton_3d')]
    subs = [client.collect(PointCloud2, t) for t in topics]
    for proc, text in ((p1, 'pose2d ready'), (p2, 'pose2d ready'), (lifter, 'lifter ready')):
        assert proc.wait_for_log(text, 120), proc.log()
    replay = BagReplay(client.node, bag)
    assert replay.wait_for_subscribers({'/cam01/image': 1, '/cam02/image/compressed': 1,
                                        '/cam01/camera_info': 2, '/cam02/camera_info': 2}, 60)
    assert client.wait_for(lambda: all(s.get_publisher_count() >= 1 for s in subs), 60)
    warm_up(client, replay, lifter)

    def bag_msgs(topic):
        return [m for m in client.messages(topic) if stamps_ns([m])[0] >= CAM_T0]

    def lockstep(topic, i):
        """pose2d keeps one frame in its mailbox: send a frame once the last one is done."""
        if 'image' in topic and i:
            cam = topic.split('/')[1]
            assert client.wait_for(lambda: len(bag_msgs(f'/{cam}/keypoints_2d')) >= i,
                                   60), (p1.log(), p2.log())
    replay.play(gate=lockstep)

    with open_bag(out) as b:
        offline = {t: {s: deserialize_message(raw, PointCloud2) for _, _, s, raw in b.messages([t])}
                   for t in topics}
    for t in topics:
        n = len(offline[t])
        assert client.wait_for(lambda: len(bag_msgs(t)) >= n, 30), (
            t, n, {k: [(s - CAM_T0) // 33_000_000 for s in sorted(
                set(offline[k]) ^ set(stamps_ns(bag_msgs(k))))] for k in topics},
            lifter.log()[-1500:])
    time.sleep(0.5)
    for t in topics:
        live = {stamps_ns([m])[0]: m for m in bag_msgs(t)}
        assert len(bag_msgs(t)) == len(live) and sorted(live) == sorted(offline[t]), t
        for stamp, msg in live.items():
            if t.endswith('keypoints_2d'):
                assert msg == offline[t][stamp], (t, stamp)  # MediaPipe saw the same frames
                continue
            a, b = cloud_to_keypoints(msg), cloud_to_keypoints(offline[t][stamp])
            assert sorted(a) == sorted(b) and msg.header == offline[t][stamp].header
            for pid in a:
                np.testing.assert_allclose(a[pid][0], b[pid][0], atol=1e-5, rtol=0)
                np.testing.assert_array_equal(a[pid][1], b[pid][1])


# -- bad input -----------------------------------------------------------------------------
def _empty_video(tmp_path):
    path = tmp_path / 'empty.avi'
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 30, (64, 64))
    w.release()
    return path


def _file(name, data=None):
    """Builder of a file (data given) or directory (None) under the test's directory."""
    def make(d):
        path = d / name
        path.mkdir() if data is None else path.write_bytes(data)
        return path
    return make


BAD_INPUTS = {
    'missing file': (lambda d: d / 'nope.mp4', 'no such file'),
    'not a video': (_file('notes.txt', b'hello'), 'cannot open as a video'),
    'zero-byte video': (_file('zero.mp4', b''), 'cannot open as a video'),
    'empty video': (_empty_video, 'no decodable frames'),
    'not a bag directory': (_file('folder'), 'not a rosbag2 bag'),
    'corrupt mcap': (_file('x.mcap', b'garbage' * 10), 'cannot read bag'),
    'bag without image topics': (None, 'no sensor_msgs/Image or CompressedImage topics'),
    'unknown encoding': (lambda d: write_camera_bag(d / 'cams', n=6, bad_encoding_at=3),
                         "unsupported image encoding '32FC1'"),
    'camera_info disagrees': (lambda d: write_camera_bag(d / 'cams', n=3, info_size=(640, 480)),
                              'but /cam01/camera_info says 640x480'),
}


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_bad_input_exits_2_and_leaves_nothing(case, make_checkpoint, tmp_path, capsys, clip_run):
    ckpt, _ = make_checkpoint(FW, CH, causal=False)
    make, expected = BAD_INPUTS[case]
    src = clip_run[1] if make is None else make(tmp_path)
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    code = offline_main([str(src), '--out', str(out_dir / 'bag'), '--checkpoint', ckpt,
                         '--max-frames', '6'])
    err = capsys.readouterr().err
    assert code == 2, err
    assert 'vp3d-offline: error:' in err and expected in err, err
    assert os.listdir(out_dir) == []


def test_bad_options_exit_2(make_checkpoint, tmp_path, capsys, clip_run):
    ckpt, _ = make_checkpoint(FW, CH, causal=False)
    existing = tmp_path / 'exists'
    existing.mkdir()
    bag = write_camera_bag(tmp_path / 'cams', n=2)
    cases = [
        ([CLIP, '--out', str(existing), '--checkpoint', ckpt], 'already exists'),
        ([CLIP, '--out', str(tmp_path / 'a'), '--checkpoint', str(tmp_path / 'no.bin')],
         'checkpoint file not found'),
        ([CLIP, '--out', str(tmp_path / 'a'), '--checkpoint', ckpt, '--channels', '64'],
         'does not match the checkpoint'),
        ([str(bag), '--out', str(tmp_path / 'a'), '--checkpoint', ckpt,
          '--topics', '/cam01/camera_info'],
         'are not image topics'),
        ([str(bag), '--out', str(tmp_path / 'a'), '--checkpoint', ckpt, '--camera-name', 'x'],
         'pick one with --topics'),
        ([CLIP, '--out', str(tmp_path / 'a'), '--checkpoint', ckpt, '--camera-name', '1cam'],
         'not a valid ROS namespace'),
        ([CLIP, '--out', str(tmp_path / 'a'), '--checkpoint', ckpt, '--backend', 'tasks'],
         'needs task_file'),
    ]
    for argv, expected in cases:
        assert offline_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert expected in err, (argv, err)
    assert [p for p in os.listdir(tmp_path) if p.lstrip('.').startswith('a')] == []


def test_failure_while_writing_removes_the_partial_bag(make_checkpoint, tmp_path, monkeypatch):
    from vp3d_ros.apps.offline import bag_out
    ckpt, _ = make_checkpoint(FW, CH, causal=False)
    real, calls = bag_out._cloud_bytes, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, 'No space left on device')
        return real(*args)
    monkeypatch.setattr(bag_out, '_cloud_bytes', failing)
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    with pytest.raises(OSError):
        process(CLIP, out_dir / 'bag', lifter=LifterOptions(checkpoint=ckpt, mode='symmetric'), max_frames=4)
    assert os.listdir(out_dir) == []


# -- small parts -----------------------------------------------------------------------------
def test_camera_names_and_progress():
    import io
    assert camera_name_from_file('/x/balancing_cam01.mp4') == 'cam01'
    assert camera_name_from_file('front_Camera-2.avi') == 'camera_2'
    assert camera_name_from_file('session one.mp4') == 'session_one'
    assert camera_name_from_file('2024.mp4') == 'cam_2024'

    class Tty(io.StringIO):
        def isatty(self):
            return True
    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(True, stream)
        bar.update('cam01', 5, 10, 2.5, force=True)
        bar.close()
    assert '\rcam01 [' in tty.getvalue() and '5/10 frames' in tty.getvalue()
    assert pipe.getvalue() == ''
    quiet = Tty()
    Progress(False, quiet).update('cam01', 1, 2, 1.0, force=True)
    assert quiet.getvalue() == ''


def test_offline_imports_and_runs_without_rclpy(make_checkpoint, tmp_path):
    """The Python API (used by the demo) needs no ROS installation for video input."""
    ckpt, _ = make_checkpoint(FW, CH, causal=False)
    code = f"""
import sys
class Block:
    def find_spec(self, name, *a):
        if name.split('.')[0] in ('rclpy', 'sensor_msgs', 'std_msgs'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
from vp3d_ros.apps.offline import process
from vp3d_ros.core.options import LifterOptions
s = process({CLIP!r}, {str(tmp_path / 'b')!r}, lifter=LifterOptions(checkpoint={ckpt!r}, mode='symmetric'), max_frames=3)
assert s.frames == 3, s
assert not any(m.split('.')[0] in ('rclpy', 'sensor_msgs') for m in sys.modules)
print('ok')
"""
    res = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith('ok'), res.stderr[-3000:]
