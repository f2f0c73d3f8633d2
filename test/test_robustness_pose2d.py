"""pose2d against what cameras really send, over real DDS with a real node process: images it
cannot decode (raw and compressed), a size change mid-stream, and a burst at 10x the nominal
rate. Each time: one clear, rate-limited log line per kind of fault, the process keeps
running, /diagnostics counts it, and the next good frame still yields keypoints_2d with its
own stamp."""
import array
import time

import cv2
import numpy as np

from ros_harness import stamps_ns
from test_robustness_common import (COMMON_DIAG_KEYS, H, SEC, W, assert_alive_and_clean,
                                    clip_frames, diag_values, has_stamp, image, reliable,
                                    send_until, set_stamp)
from test_robustness_common import rig  # noqa: F401  (fixture)

KP = '/cam01/keypoints_2d'
FQN = '/cam01/pose2d'


def _raw(frame_bytes, width, height, step, encoding='rgb8', ns=0):
    from sensor_msgs.msg import Image
    msg = Image(width=width, height=height, step=step, encoding=encoding, is_bigendian=0)
    msg.data = array.array('B', frame_bytes)
    return set_stamp(msg, ns)


def _people(msg):
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    return cloud_to_keypoints(msg)


def _answer(client, ns):
    return next(m for m in client.messages(KP) if stamps_ns([m]) == [ns])


def _send_bad_kinds(client, pub, pose, kinds, t):
    """Each kind 10 times in a quick burst; the node must log it once (rate limit)."""
    for k, (text, msg) in enumerate(kinds):
        for i in range(10):
            set_stamp(msg, t + (100 * k + i) * SEC // 1000)
            pub.publish(msg)
            time.sleep(0.01)
        assert pose.wait_for_log(text, 30), f'no clear message for {text!r}:\n{pose.log()}'
    time.sleep(0.5)  # the last copies are decoded (and must not be logged again)
    log = pose.log()
    for text, _ in kinds:
        assert log.count(text) == 1, f'{text!r} not rate-limited:\n{log}'


def test_pose2d_survives_bad_images_size_change_and_burst(rig):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, PointCloud2
    start, client, _ = rig
    pose = start('pose2d_node', '-r', '__ns:=/cam01', name='pose2d')
    client.collect(PointCloud2, KP)
    client.collect(DiagnosticArray, '/diagnostics')
    frames = clip_frames(10)
    pub = client.node.create_publisher(Image, '/cam01/image', reliable(5))
    assert pose.wait_for_log('pose2d ready', 90), pose.log()
    assert client.wait_for_subscribers(pub, 1, 60), 'pose2d never subscribed'
    t = 1000 * SEC
    assert send_until(client, pub, image(frames[0], t), lambda: has_stamp(client, KP, t)), pose.log()

    good = frames[1].tobytes()
    row = W * 3
    kinds = [
        ("unsupported image encoding '32FC1'", _raw(bytes(W * H * 4), W, H, W * 4, '32FC1')),
        # width/height/step not matching the data: too much data, a step below the row
        # size, too little data (a cut-off frame, or a height/step claiming more rows)
        ('inconsistent with step', _raw(good + bytes(row), W, H, row)),
        ('is smaller than width', _raw(good, W, H, row - 3)),
        ('image data truncated', _raw(good[:len(good) // 2], W, H, row)),
        ('empty image (0x0)', _raw(b'', 0, 0, 0)),
        ('needs an even width', _raw(bytes(271 * 2 * H), 271, H, 271 * 2, 'yuv422')),
    ]
    _send_bad_kinds(client, pub, pose, kinds, t + SEC)
    assert_alive_and_clean(pose)
    assert not any(1 * SEC < s - t < 2 * SEC for s in stamps_ns(client.messages(KP))), \
        'keypoints published for an undecodable image'

    # A good frame afterwards: keypoints with its own stamp, the person found.
    t_good = t + 3 * SEC
    assert send_until(client, pub, image(frames[2], t_good), lambda: has_stamp(client, KP, t_good))
    assert _people(_answer(client, t_good)), 'nobody found in a good frame after bad ones'
    assert client.wait_for(lambda: int(diag_values(client, FQN).get('errors', 0)) >= 30, 10), \
        diag_values(client, FQN)  # 60 bad frames sent; best-effort may lose a few

    # Size change mid-stream (a camera reconfigured): the tracker restarts, keypoints are in
    # the new image's pixels; and back again.
    big = clip_frames(1, (360, 640))[0]
    t_big = t + 4 * SEC
    assert send_until(client, pub, image(big, t_big), lambda: has_stamp(client, KP, t_big))
    assert pose.wait_for_log('image size changed 270x480 -> 360x640: pose tracker restarted', 10)
    kp_big = _people(_answer(client, t_big))
    assert kp_big, 'nobody found after the size change'
    # Same clip frame as the handshake's, 4/3 larger: keypoints scale with it. Person
    # tracks restart with the tracker: the person has a new track id.
    (old_id, (small_xy, _)), = _people(_answer(client, t)).items()
    (new_id, (big_xy, _)), = kp_big.items()
    assert new_id > old_id
    err = np.nanmean(np.linalg.norm(big_xy - small_xy * 360 / 270, axis=1))
    assert err < 20, f'keypoints not in the new image frame (mean error {err:.1f} px)'
    t_back = t + 5 * SEC
    assert send_until(client, pub, image(frames[3], t_back), lambda: has_stamp(client, KP, t_back))
    assert pose.wait_for_log('image size changed 360x640 -> 270x480', 10)

    # Burst: 10x a 30 Hz camera for 4 s. Memory stays bounded (one-slot mailbox, no queue),
    # the newest frame wins, drops are counted in /diagnostics.
    msgs = [image(f, 0) for f in frames]
    rss0 = pose.rss_kb()
    rss_max, sent, t_burst = rss0, 0, t + 10 * SEC
    begin = time.monotonic()
    next_rss = begin
    while time.monotonic() - begin < 4.0:
        delay = begin + sent / 300.0 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        msg = msgs[sent % len(msgs)]
        last = t_burst + sent * SEC // 300
        set_stamp(msg, last)
        pub.publish(msg)
        sent += 1
        if time.monotonic() >= next_rss:
            rss_max, next_rss = max(rss_max, pose.rss_kb()), time.monotonic() + 0.2
    rate = sent / (time.monotonic() - begin)
    assert rate > 60, f'test could only publish {rate:.0f} Hz: no burst'
    # Newest data wins: the last frame sent is processed (maybe re-sent if DDS lost it).
    assert send_until(client, pub, msg, lambda: has_stamp(client, KP, last), 30), pose.log()
    rss_max = max(rss_max, pose.rss_kb())
    growth_mb = (rss_max - rss0) / 1024
    assert growth_mb < 150, f'RSS grew {growth_mb:.0f} MB during a {sent}-frame burst'
    burst_kp = [s for s in stamps_ns(client.messages(KP)) if s >= t_burst]
    assert len(set(burst_kp)) < sent / 2, 'no frame was dropped: not a burst for this node'

    def drops_counted():
        v = diag_values(client, FQN)
        return v and int(v['dropped']) > 0 and int(v['received']) >= sent / 2

    assert client.wait_for(drops_counted, 10), diag_values(client, FQN)
    values = diag_values(client, FQN)
    print(f'burst: {sent} frames at {rate:.0f} Hz, {len(set(burst_kp))} processed, RSS '
          f'{rss0 / 1024:.0f} -> max {rss_max / 1024:.0f} MB, diagnostics {values}')
    assert COMMON_DIAG_KEYS <= set(values), values
    assert int(values['processed']) + int(values['errors']) + int(values['dropped']) <= \
        int(values['received']) + 1
    assert float(values['processing_ms_mean']) > 0
    drop_lines = pose.count('images arrive faster than pose estimation')
    assert 1 <= drop_lines <= 3, f'drop warning not rate-limited ({drop_lines} lines)'
    assert_alive_and_clean(pose)


def test_pose2d_survives_corrupt_compressed_images(rig):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CompressedImage, PointCloud2
    from vp3d_ros.nodes.ros_conversions import numpy_to_compressed
    start, client, _ = rig
    pose = start('pose2d_node', '-r', '__ns:=/cam01', '-p', 'compressed:=true', name='pose2d')
    client.collect(PointCloud2, KP)
    client.collect(DiagnosticArray, '/diagnostics')
    frames = clip_frames(4)
    pub = client.node.create_publisher(CompressedImage, '/cam01/image/compressed', reliable(5))
    assert pose.wait_for_log('pose2d ready', 90), pose.log()
    assert client.wait_for_subscribers(pub, 1, 60), 'pose2d never subscribed'

    def jpeg(frame, ns):
        return set_stamp(numpy_to_compressed(frame, 'jpeg'), ns)

    t = 2000 * SEC
    assert send_until(client, pub, jpeg(frames[0], t), lambda: has_stamp(client, KP, t)), pose.log()

    def comp(data, fmt):
        msg = CompressedImage(format=fmt)
        msg.data = array.array('B', data)
        return msg

    whole = bytes(jpeg(frames[1], 0).data)
    ok, png = cv2.imencode('.png', frames[1])
    rng = np.random.default_rng(0)
    kinds = [
        ("cannot decode compressed image (format 'rgb8; jpeg compressed bgr8'",
         comp(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), 'rgb8; jpeg compressed bgr8')),
        ('compressed image has no data', comp(b'', 'jpeg')),
        ('corrupt JPEG, Premature end of JPEG file', comp(whole[:len(whole) // 3], 'jpeg')),
        # Start and end intact, the middle damaged: libjpeg alone returns a garbage image.
        ('corrupt JPEG, Corrupt JPEG data', comp(whole[:len(whole) // 2] + bytes([0x55]) * 2048
                                                 + whole[len(whole) // 2 + 2048:], 'jpeg')),
        ('corrupt PNG: cut off after 2000 bytes', comp(png.tobytes()[:2000], 'png')),
        ('compressedDepth images are not supported', comp(whole, '16UC1; compressedDepth')),
    ]
    _send_bad_kinds(client, pub, pose, kinds, t + SEC)
    assert_alive_and_clean(pose)
    t_good = t + 3 * SEC
    padded = jpeg(frames[2], t_good)  # MJPEG drivers pad after the end marker: a good frame
    padded.data = array.array('B', bytes(padded.data) + bytes(100))
    assert send_until(client, pub, padded, lambda: has_stamp(client, KP, t_good))
    assert _people(_answer(client, t_good)), 'nobody found in a good frame after corrupt ones'
    # A different size, compressed: decoded at its own size.
    t_big = t + 4 * SEC
    big = clip_frames(1, (360, 640))[0]
    assert send_until(client, pub, jpeg(big, t_big), lambda: has_stamp(client, KP, t_big))
    assert pose.wait_for_log('image size changed 270x480 -> 360x640', 10)
    assert client.wait_for(lambda: int(diag_values(client, FQN).get('errors', 0)) >= 25, 10), \
        diag_values(client, FQN)
    assert_alive_and_clean(pose)


def test_pose2d_publishes_swapped_limbs_traded_back(rig):
    """The bundled cam02 through a real pose2d node over DDS, frame by frame: from frame 41
    MediaPipe names the legs and arms the wrong way round; keypoints_2d carries them traded
    back (MediaPipe's own labels, from the same 2D stage with repair_swaps off, are the
    mirror of what the node publishes), one info line says so, /diagnostics counts it."""
    from pathlib import Path
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, PointCloud2
    from conftest import CLIP
    from vp3d_ros.core.label_swaps import limb_permutation
    from vp3d_ros.core.skeletons import H36M17
    from vp3d_ros.core.tracking import PeopleTracking
    from vp3d_ros.vision.pose_estimation import create_estimator
    from vp3d_ros.vision.pose_stage import PoseStage
    cap = cv2.VideoCapture(str(Path(CLIP).with_name('balancing_cam02.mp4')))
    frames = []
    while len(frames) < 50:
        ok, bgr = cap.read()
        assert ok
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    t0, dt = 1000 * SEC, SEC // 60
    start, client, _ = rig
    pose = start('pose2d_node', '-r', '__ns:=/cam02', name='pose2d')
    client.collect(PointCloud2, '/cam02/keypoints_2d')
    client.collect(DiagnosticArray, '/diagnostics')
    pub = client.node.create_publisher(Image, '/cam02/image', reliable(5))
    assert pose.wait_for_log('pose2d ready', 90), pose.log()
    assert client.wait_for_subscribers(pub, 1, 60), 'pose2d never subscribed'
    for i, f in enumerate(frames):   # one at a time: pose2d keeps only the newest frame
        ns = t0 + i * dt
        assert send_until(client, pub, image(f, ns),
                          lambda ns=ns: has_stamp(client, '/cam02/keypoints_2d', ns)), pose.log()
    published = {stamps_ns([m])[0]: _people(m) for m in client.messages('/cam02/keypoints_2d')}
    assert pose.wait_for_log('traded back', 10), pose.log()
    assert client.wait_for(lambda: float(diag_values(client, FQN.replace('01', '02')).get(
        'swaps_repaired', 0)) > 0, 10)
    stage = PoseStage(lambda: create_estimator('legacy', video_mode=True), 'h36m',
                      PeopleTracking(), repair_swaps=False)
    try:
        raw = [stage.process(f, t0 + i * dt) for i, f in enumerate(frames)]
    finally:
        stage.close()
    both = limb_permutation(H36M17, [True, True])
    for i in range(42, 50):
        (kp, _), = published[t0 + i * dt].values()
        assert np.allclose(kp, raw[i].keypoints[0][both], atol=0.05), i
    for i in range(0, 38):
        (kp, _), = published[t0 + i * dt].values()
        assert np.allclose(kp, raw[i].keypoints[0], atol=0.05), i
    assert_alive_and_clean(pose)
