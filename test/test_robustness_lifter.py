"""The lifter against keypoints_2d clouds a rig really produces (wrong publishers remapped,
half-written clouds, NaN from a failing detector, people coming and going, floods of person
ids), over real DDS with a real node process. Each case: a clear rate-limited log line (or
a documented silent handling), the process stays up, later good frames still give
skeleton_3d with their own stamps."""
import time

import numpy as np

from ros_harness import stamps_ns
from test_robustness_common import (COMMON_DIAG_KEYS, SEC, assert_alive_and_clean, cloud,
                                    diag_values, handshake, has_stamp, lifter_args, pose_at,
                                    reliable)
from test_robustness_common import rig  # noqa: F401  (fixture)

KP, SK = '/cam01/keypoints_2d', '/cam01/skeleton_3d'
FQN = '/lifter'
STEP = SEC // 30


def _skeletons(client, ns):
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    msgs = [m for m in client.messages(SK) if stamps_ns([m]) == [ns]]
    assert msgs, f'no skeleton for stamp {ns}'
    return cloud_to_keypoints(msgs[-1])


def test_lifter_survives_bad_keypoints(rig, make_checkpoint):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, PointCloud2, PointField
    start, client, _ = rig
    ckpt, _ = make_checkpoint((3, 3, 3), 32, True)
    lift = start('lifter_node', *lifter_args(ckpt, 1000, 1000), '-p', 'max_gap_frames:=3',
                 '-p', 'idle_flush_s:=20.0', name='lifter')
    client.collect(PointCloud2, SK)
    client.collect(DiagnosticArray, '/diagnostics')
    pub = client.node.create_publisher(PointCloud2, KP, reliable(50))
    info_pub = client.node.create_publisher(CameraInfo, '/cam01/camera_info', reliable(5))
    assert lift.wait_for_log('lifter ready', 90), lift.log()
    assert client.wait_for_subscribers(pub, 1, 60), 'lifter never subscribed'
    t = [5000 * SEC]

    def nxt():
        t[0] += STEP
        return t[0]

    def send(msg):
        pub.publish(msg)
        return stamps_ns([msg])[0]

    used = handshake(client, pub, lambda ns: cloud(ns, pose_at(0)), nxt(), SK)
    t[0] = used[-1]

    # Clouds that are not 2D keypoint clouds: each refused with a clear line, once.
    def f64(msg):
        for f in msg.fields:
            f.datatype = PointField.FLOAT64
        return msg

    def no_joint(msg):
        msg.fields = [f for f in msg.fields if f.name != 'joint']
        return msg

    def short(msg):  # the header promises 17 points, the payload holds 16
        msg.data = msg.data[:16 * msg.point_step]
        return msg

    def extra(msg):  # 16 points declared, 17 in the payload
        msg.width, msg.row_step = 16, 16 * msg.point_step
        return msg

    kinds = [
        ("field 'x' must be one FLOAT32", f64),
        ("cloud lacks fields ['joint']", no_joint),
        ('cloud payload too short', short),
        ('inconsistent with height 1 x row_step 320 = 320 (wrong point count?)', extra),
        ('joint indices', None),  # the 33 MediaPipe landmarks wired to the lifter
        ('cloud carries 3D points', None),  # a skeleton_3d topic remapped onto keypoints_2d
    ]
    bad_stamps = []
    for text, fix in kinds:
        for _ in range(5):
            if text == 'joint indices':
                msg = cloud(nxt(), np.tile(BASE33, (1, 1)))
            elif '3D' in text:
                msg = cloud(nxt(), np.c_[pose_at(1), np.full(17, 3.0)])
            else:
                msg = fix(cloud(nxt(), pose_at(1)))
            bad_stamps.append(send(msg))
        assert lift.wait_for_log(text, 20), f'no clear message for {text!r}:\n{lift.log()}'
    s = send(cloud(nxt(), pose_at(2)))
    assert client.wait_for(lambda: has_stamp(client, SK, s), 20), lift.log()
    log = lift.log()
    for text, _ in kinds:
        assert log.count(text) == 1, f'{text!r} not rate-limited:\n{log}'
    assert not set(bad_stamps) & set(stamps_ns(client.messages(SK))), 'lifted a refused cloud'
    assert_alive_and_clean(lift)

    # NaN/inf from a failing detector and an empty cloud (nobody seen): weak joints are
    # held, a frame without a usable person is bridged once the person is back.
    nan_pose = pose_at(3)
    nan_pose[[3, 6]] = np.nan
    s_nan = send(cloud(nxt(), nan_pose))
    s_inf = send(cloud(nxt(), np.full((17, 2), np.inf)))
    s_empty = send(cloud(nxt(), np.zeros((0, 17, 2))))
    s_back = send(cloud(nxt(), pose_at(6)))
    assert client.wait_for(lambda: has_stamp(client, SK, s_back), 20), lift.log()
    for s in (s_nan, s_inf, s_empty, s_back):
        people = _skeletons(client, s)
        assert list(people) == [0] and np.all(np.isfinite(people[0][0])), (s, people)
    assert np.all(_skeletons(client, s_inf)[0][1] == 0), 'bridged frame must carry confidence 0'

    # A person id that vanishes for longer than max_gap_frames and returns: the track ends,
    # person 1 meanwhile is lifted, person 0 comes back with its own stamp.
    others = [send(cloud(nxt(), pose_at(7 + i, 100), ids=[1])) for i in range(5)]
    s_ret = send(cloud(nxt(), pose_at(12), ids=[0]))
    assert client.wait_for(lambda: has_stamp(client, SK, s_ret), 20), lift.log()
    assert all(list(_skeletons(client, s)) == [1] for s in others)
    assert list(_skeletons(client, s_ret)) == [0]

    # Floods: 50 persons in one frame (max_persons 20 lifted), then a new person id in every
    # frame: tracks of persons gone are dropped, so their number stays bounded.
    crowd = np.stack([pose_at(i, 5 * i) for i in range(50)])
    conf = np.linspace(0.3, 0.99, 50)[:, None].repeat(17, 1)
    s_crowd = send(cloud(nxt(), crowd, conf, ids=list(range(100, 150))))
    assert client.wait_for(lambda: has_stamp(client, SK, s_crowd), 20), lift.log()
    assert sorted(_skeletons(client, s_crowd)) == list(range(130, 150)), 'not the most confident'
    assert lift.wait_for_log('50 persons in one frame, lifting the 20 most confident', 5)
    for i in range(40):
        s = send(cloud(nxt(), pose_at(i), ids=[1000 + i]))
        time.sleep(0.01)
    assert client.wait_for(lambda: has_stamp(client, SK, s), 20), lift.log()

    def tracks_bounded():
        v = diag_values(client, FQN)
        return v and int(v['processed']) >= 53 and int(v['tracks']) <= 5

    assert client.wait_for(tracks_bounded, 10), str(diag_values(client, FQN))

    # A camera_info with no image size is ignored (the configured size stays in use).
    assert client.wait_for_subscribers(info_pub, 1, 30)
    info_pub.publish(CameraInfo(width=0, height=0))
    assert lift.wait_for_log('camera_info with an empty image size (0x0) ignored', 20), lift.log()
    s_last = send(cloud(nxt(), pose_at(50)))
    assert client.wait_for(lambda: has_stamp(client, SK, s_last), 20), lift.log()
    last = _skeletons(client, s_last)
    assert list(last) == [0] and np.all(np.isfinite(last[0][0]))

    values = diag_values(client, FQN)
    assert COMMON_DIAG_KEYS | {'window_fill', 'tracks', 'resets'} <= set(values), values
    assert int(values['errors']) >= 25, values  # 30 refused clouds
    assert_alive_and_clean(lift)


# The 33 MediaPipe landmarks of a standing person (only their count matters here).
BASE33 = np.concatenate([pose_at(0), pose_at(0)[:16] + 5])[None]


def _poses_by_stamp(client, ns: str) -> dict:
    """{stamp: pose of the first person} of what arrived on /<ns>/skeleton_3d."""
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    return {stamps_ns([m])[0]: cloud_to_keypoints(m)[0][0]
            for m in client.messages(f'/{ns}/skeleton_3d')}


def _wait_for_poses(client, namespaces, stamps, timeout=30.0):
    """Until every namespace's skeleton_3d has a pose for every stamp."""
    assert client.wait_for(lambda: all(set(stamps) <= set(_poses_by_stamp(client, ns))
                                       for ns in namespaces), timeout), \
        {ns: len(set(stamps) & set(_poses_by_stamp(client, ns))) for ns in namespaces}


def test_block_frames_gives_the_same_skeletons_later(rig, make_checkpoint):
    """block_frames:=4 (weights read once per 4 frames) against block_frames:=1, two real
    lifter processes fed the same clouds: every stamp gets the same pose; the partial last
    block is flushed when the stream goes quiet (idle_flush_s)."""
    from sensor_msgs.msg import PointCloud2
    start, client, _ = rig
    ckpt, _ = make_checkpoint((3, 3, 3), 32, True)
    procs = {ns: start('lifter_node', '-r', f'__node:=lifter_{ns}',
                       *lifter_args(ckpt, 1000, 1000, camera=ns), '-p', 'idle_flush_s:=1.0',
                       '-p', f'block_frames:={k}', name=f'lifter_{ns}')
             for ns, k in (('one', 1), ('four', 4))}
    pubs = {}
    for ns, proc in procs.items():
        client.collect(PointCloud2, f'/{ns}/skeleton_3d')
        pubs[ns] = client.node.create_publisher(PointCloud2, f'/{ns}/keypoints_2d', reliable(50))
    for ns, proc in procs.items():
        assert proc.wait_for_log('lifter ready', 90), proc.log()
        assert client.wait_for_subscribers(pubs[ns], 1, 60), f'{ns}: lifter never subscribed'
    t0 = 7000 * SEC
    for ns in procs:  # one frame each until both answer: DDS matching can lag
        handshake(client, pubs[ns], lambda s: cloud(s, pose_at(0)), t0, f'/{ns}/skeleton_3d')
    stamps = [t0 + SEC + i * STEP for i in range(30)]
    for i, s in enumerate(stamps):
        for pub in pubs.values():
            pub.publish(cloud(s, pose_at(i)))
        time.sleep(0.01)
    _wait_for_poses(client, procs, stamps)
    one, four = _poses_by_stamp(client, 'one'), _poses_by_stamp(client, 'four')
    assert max(np.abs(one[s] - four[s]).max() for s in stamps) < 1e-5
    for proc in procs.values():
        assert_alive_and_clean(proc)


def test_cameras_due_together_share_passes_and_get_their_own_poses(rig, make_checkpoint):
    """One lifter serving 4 cameras, fed 4 frames at each instant: frames due together are
    lifted in shared passes (diagnostics: streams_per_pass > 1), and every camera's
    skeletons are exactly those of lifting its own stream alone (the whole-sequence lifter
    over the same frames)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import PointCloud2
    from vp3d_ros.core.lifter import SequenceLifter
    start, client, _ = rig
    ckpt, model = make_checkpoint((3, 3, 3), 32, True)
    cams = ['c1', 'c2', 'c3', 'c4']
    lift = start('lifter_node', *lifter_args(ckpt, 1000, 1000, camera=', '.join(cams)),
                 name='lifter')
    client.collect(DiagnosticArray, '/diagnostics')
    pubs = {}
    for c in cams:
        client.collect(PointCloud2, f'/{c}/skeleton_3d')
        pubs[c] = client.node.create_publisher(PointCloud2, f'/{c}/keypoints_2d', reliable(50))
    assert lift.wait_for_log('lifter ready', 90), lift.log()
    t0 = 9000 * SEC
    for c in cams:
        assert client.wait_for_subscribers(pubs[c], 1, 60), f'{c}: lifter never subscribed'
        handshake(client, pubs[c], lambda s: cloud(s, pose_at(0)), t0, f'/{c}/skeleton_3d')
    # A second later: past max_gap_s, so every window restarts with the streams below.
    stamps = [t0 + SEC + i * STEP for i in range(40)]
    frames = {c: [pose_at(i + 9 * k) for i in range(len(stamps))] for k, c in enumerate(cams)}
    for i, s in enumerate(stamps):
        for c in cams:
            pubs[c].publish(cloud(s, frames[c][i]))
        time.sleep(0.02)
    _wait_for_poses(client, cams, stamps)
    alone = SequenceLifter(model, 'h36m')
    for c in cams:
        want = alone.lift(np.stack(frames[c]), 1000, 1000)
        got = _poses_by_stamp(client, c)
        assert max(np.abs(got[s] - want[i]).max() for i, s in enumerate(stamps)) < 1e-4, c
    assert client.wait_for(
        lambda: float(diag_values(client, '/lifter').get('streams_per_pass', 0)) > 1.0, 10), \
        diag_values(client, '/lifter')
    assert_alive_and_clean(lift)


def test_lifter_node_lifts_a_calibrated_camera_in_its_level_view(rig, make_checkpoint):
    """Two real lifter processes over DDS, fed the same keypoints of a rolled camera: with the
    camera's calibration each pose is LevelView.lift's on the same frames; without it, the
    plain lift's. The bag-facing announcement (~/model) names the cameras lifted so."""
    import json
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String
    from vp3d_ros.core.checkpoint import load_checkpoint
    from vp3d_ros.core.lifter import SequenceLifter
    from vp3d_ros.geometry.calibration import Camera, rodrigues, save_calibration_toml
    from vp3d_ros.geometry.view import level_view
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    start, client, tmp = rig
    ckpt, _ = make_checkpoint((3, 3, 3), 32, True)
    R = rodrigues([0.3, 0, 0]) @ rodrigues([0, 0, np.radians(25)]) @ \
        np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])          # level, then pitched and rolled
    cam = Camera('lv', [[900, 0, 500], [0, 900, 500], [0, 0, 1]], R=R, t=[0, 1.2, 4.0],
                 size=(1000, 1000))
    assert level_view(cam) is not None
    calib = save_calibration_toml({'lv': cam}, tmp / 'lv.toml')
    procs = {'lv': start('lifter_node', '-r', '__node:=lifter_lv', *lifter_args(ckpt, 1000, 1000,
                         camera='lv'), '-p', f'calibration:={calib}', name='lifter_lv'),
             'plain': start('lifter_node', '-r', '__node:=lifter_plain',
                            *lifter_args(ckpt, 1000, 1000, camera='plain'), name='lifter_plain')}
    pubs = {}
    for ns in procs:
        client.collect(PointCloud2, f'/{ns}/skeleton_3d')
        pubs[ns] = client.node.create_publisher(PointCloud2, f'/{ns}/keypoints_2d', reliable(50))
    client.collect(String, '/lifter_lv/model', latched=True)
    for ns, proc in procs.items():
        assert proc.wait_for_log('lifter ready', 90), proc.log()
        assert client.wait_for_subscribers(pubs[ns], 1, 60), proc.log()
    assert 'level view from' in procs['lv'].log()
    t0 = 7000 * SEC
    for ns in procs:
        handshake(client, pubs[ns], lambda s: cloud(s, pose_at(0)), t0, f'/{ns}/skeleton_3d')
    stamps = [t0 + 2 * SEC + i * (SEC // 30) for i in range(30)]
    kps = np.stack([pose_at(i) for i in range(30)])
    for s, k in zip(stamps, kps):
        for pub in pubs.values():
            pub.publish(cloud(s, k))
        time.sleep(0.01)

    def got(ns):
        return {stamps_ns([m])[0]: cloud_to_keypoints(m)[0][0]
                for m in client.messages(f'/{ns}/skeleton_3d')}
    assert client.wait_for(lambda: all(set(stamps) <= set(got(ns)) for ns in procs), 30)
    lifter = SequenceLifter(load_checkpoint(ckpt, filter_widths=[3, 3, 3], channels=32,
                                            causal=True).build(), 'h36m')
    kp32 = kps.astype(np.float32).astype(np.float64)        # as the cloud carries them
    want = {'lv': level_view(cam).lift(lifter, kp32), 'plain': lifter.lift(kp32, 1000, 1000)}
    for ns in procs:
        poses = np.stack([got(ns)[s] for s in stamps])
        assert np.abs(poses - want[ns]).max() < 1e-4, ns
    assert np.abs(want['lv'] - want['plain']).max() > 1e-2
    model = [json.loads(m.data) for m in client.messages('/lifter_lv/model')]
    assert model and model[-1]['level_view'] == ['lv']
