"""Person tracking (vp3d_ros.core.tracking): identities through crossings, exits and entries,
lifecycle, subject selection; offline 2D stage and lifter windows per track; one real
MediaPipe run on two people (the bundled clip beside its mirrored copy)."""
import numpy as np
import pytest

from conftest import CLIP
from test_robustness_common import rig  # noqa: F401  (fixture)
from vp3d_ros.core.track_rules import TrackRules
from vp3d_ros.core.tracking import (CONFIRMED, LOST, PeopleTracking, PersonTracker, SubjectSelector,
                               TrackerConfig)

# A standing H36M-17 skeleton (metres, z up, facing -y), joints in H36M order.
TEMPLATE = np.array([
    [0.00, 0.00, 0.95], [-0.13, 0.00, 0.96], [-0.14, 0.03, 0.52], [-0.15, 0.11, 0.07],
    [0.13, 0.00, 0.94], [0.13, 0.02, 0.50], [0.14, 0.09, 0.05], [0.01, 0.01, 1.18],
    [0.02, 0.00, 1.44], [0.03, -0.08, 1.53], [0.02, -0.07, 1.65], [0.17, 0.03, 1.43],
    [0.20, 0.04, 1.15], [0.22, 0.00, 0.90], [-0.12, 0.04, 1.43], [-0.19, 0.05, 1.15],
    [-0.21, 0.01, 0.90]])
R_LEG, L_LEG, L_ARM, R_ARM = (2, 3), (5, 6), (12, 13), (15, 16)
W, H = 1280, 720


def walker(start, velocity, n, fps=30.0, phase=0.0):
    """(n, 17, 3) world joints of a person walking from ``start`` with ``velocity`` (m/s):
    the body translates, legs and arms swing along the walking direction."""
    start, velocity = np.asarray(start, float), np.asarray(velocity, float)
    speed = np.linalg.norm(velocity)
    d = velocity / speed if speed > 0 else np.zeros(3)
    t = np.arange(n) / fps
    swing = np.sin(2 * np.pi * 1.8 * t + phase)[:, None, None]
    pose = np.repeat(TEMPLATE[None], n, axis=0)
    for joints, sign, amp in ((R_LEG, 1, 0.3), (L_LEG, -1, 0.3), (L_ARM, 1, 0.15),
                              (R_ARM, -1, 0.15)):
        reach = np.array([0.5, 1.0]) if len(joints) == 2 else 1.0
        pose[:, joints] += sign * amp * swing * reach[:, None] * d
    return pose + start + velocity * t[:, None, None]


def camera(eye, target=(0.0, 0.0, 0.9), f=900.0):
    """World -> pixel projection of a pinhole camera at ``eye`` looking at ``target``."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    fwd = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    rot = np.stack([right, down, fwd])

    def project(x):
        c = (x - eye) @ rot.T
        return f * c[..., :2] / c[..., 2:] + [W / 2, H / 2]
    return project


def detections(people_px, rng, jitter=0.01, drop=()):
    """Per frame: shuffled detections [(gt index, (17, 2), (17,))] with pixel jitter of
    ``jitter`` x person height; ``drop``: (frame, person or None for all) left out."""
    frames = []
    for f in range(people_px.shape[1]):
        dets = []
        for p in range(people_px.shape[0]):
            if (f, None) in drop or (f, p) in drop:
                continue
            kp = people_px[p, f]
            if not np.all((kp > [0, 0]) & (kp < [W, H])):
                continue  # out of the picture
            height = kp[:, 1].max() - kp[:, 1].min()
            noisy = kp + rng.normal(0, jitter * height, kp.shape)
            dets.append((p, noisy, rng.uniform(0.7, 1.0, 17)))
        rng.shuffle(dets)
        frames.append(dets)
    return frames


def run(frames, tracking=None, fps=30.0, size=(W, H)):
    """-> per frame {gt person: track id}, over what the tracking outputs."""
    tracking = tracking or PeopleTracking()
    out = []
    for f, dets in enumerate(frames):
        kp = np.array([d[1] for d in dets]).reshape(len(dets), 17, 2)
        conf = np.array([d[2] for d in dets]).reshape(len(dets), 17)
        keep, ids = tracking.step(kp, conf, size, f / fps)
        out.append({dets[k][0]: i for k, i in zip(keep, ids)})
    return out


def switches(assigned):
    """Identity switches: a person's id differs from the id they had last time they were
    output, or an id is given to a second person."""
    n, last, owner = 0, {}, {}
    for frame in assigned:
        for p, i in frame.items():
            n += int(p in last and last[p] != i) + int(owner.setdefault(i, p) != p)
            last[p] = i
    return n


def test_crossing_people_apart_keep_their_ids():
    # A high lab camera; two people walk past each other in opposite directions on lanes
    # 1.5 m apart (in the picture they pass more than a body width apart). Detections come
    # shuffled, jittered, with a frame where nobody and frames where one is missing.
    n = 150
    proj = camera((0.0, -7.0, 3.5))
    a = walker((-2.5, -0.75, 0), (1.3, 0, 0), n)
    b = walker((2.5, 0.75, 0), (-1.4, 0, 0), n, phase=1.0)
    px = proj(np.stack([a, b]))
    gap = np.abs(px[0, :, :, 1].mean(-1) - px[1, :, :, 1].mean(-1))
    width = np.abs(px[:, :, 11, 0] - px[:, :, 14, 0]).max()  # shoulder width in pixels
    assert gap.min() > width  # the premise: apart by more than a body width
    drop = {(40, None), (70, 0), (71, 0), (90, 1)}
    for seed in range(5):
        assigned = run(detections(px, np.random.default_rng(seed), drop=drop))
        assert switches(assigned) == 0
        assert {i for fr in assigned for i in fr.values()} == {0, 1}
        assert all(len(fr) == 2 for f, fr in enumerate(assigned) if f not in (40, 70, 71, 90))


def test_crossing_in_depth_with_occlusion_keeps_ids():
    # A low camera: the far person is hidden behind the near one while they cross (their
    # detection is missing), and reappears where constant velocity predicts.
    n = 120
    proj = camera((0.0, -6.0, 1.2))
    a = walker((-2.0, -0.6, 0), (1.2, 0, 0), n)
    b = walker((2.0, 0.6, 0), (-1.2, 0, 0), n, phase=2.0)
    px = proj(np.stack([a, b]))
    overlap = np.abs(px[0, :, 0, 0] - px[1, :, 0, 0]) < 120
    hidden = {(f, 1) for f in np.flatnonzero(overlap)}
    assert 5 < len(hidden) < 30
    assigned = run(detections(px, np.random.default_rng(3), drop=hidden))
    assert switches(assigned) == 0


def test_leaving_person_and_newcomer_far_away_get_different_ids():
    # A runs out of the picture on the right; one frame later B appears on the left
    # (about 300 px from A's last position): B is a new id, A's id ends, nothing is reused.
    cfg = TrackerConfig(max_age=5)
    tracker = PersonTracker(cfg)
    base = TEMPLATE[:, [0, 2]] * [200, -200] + [0, 500]  # (17, 2) pixels, ~330 px tall
    conf = np.full((1, 17), 0.9)
    ids = []
    for f in range(20):  # A: x from 900 to 1235
        ids.append(tracker.update((base + [900 + 18 * f, 0])[None], conf, f / 30))
    assert ids == [[0]] * 20
    t = 20 / 30
    assert tracker.update(np.zeros((0, 17, 2)), np.zeros((0, 17)), t) == []
    newcomer = []
    for f in range(21, 40):  # B: appears ~300 px left of A's exit, walking left
        newcomer.append(tracker.update((base + [940 - 10 * (f - 21), 0])[None], conf, f / 30))
    assert newcomer[0] == [None]  # tentative: A is still lost, so B is not confirmed at once
    assert all(i == [1] for i in newcomer[1:])
    assert tracker.counts['ended'] == 1 and tracker.live_ids == [1]
    # Later: everyone leaves, tracks end; a person coming back gets a fresh id at once.
    for f in range(40, 47):
        tracker.update(np.zeros((0, 17, 2)), np.zeros((0, 17)), f / 30)
    assert tracker.tracks == []
    assert tracker.update((base + [600, 0])[None], conf, 50 / 30) == [[2]][0]


def test_short_gap_recovers_the_same_id_and_reset_never_reuses():
    tracker = PersonTracker(TrackerConfig(max_age=10))
    base = TEMPLATE[:, [0, 2]] * [200, -200] + [300, 500]
    conf = np.full((1, 17), 0.9)
    for f in range(10):
        assert tracker.update((base + [5 * f, 0])[None], conf, f / 30) == [0]
    for f in range(10, 16):  # unseen for 6 frames while walking on
        tracker.update(np.zeros((0, 17, 2)), np.zeros((0, 17)), f / 30)
        assert [t.state for t in tracker.tracks] == [LOST]
    assert tracker.update((base + [5 * 16, 0])[None], conf, 16 / 30) == [0]
    assert tracker.counts == {'started': 1, 'lost': 1, 'recovered': 1, 'ended': 0}
    tracker.reset()  # e.g. the image size changed: the same person is a new track
    assert tracker.counts['ended'] == 1
    assert tracker.update((base + [5 * 17, 0])[None], conf, 17 / 30) == [1]


def test_weak_detections_keep_tracks_but_start_none_and_flickers_spend_no_id():
    tracker = PersonTracker()
    base = TEMPLATE[:, [0, 2]] * [200, -200] + [300, 500]
    strong, weak = np.full(17, 0.9), np.full(17, 0.3)
    assert tracker.update(base[None], strong[None]) == [0]
    # The person turns weak (ByteTrack's second stage keeps them); a weak stranger far
    # away starts nothing; a confident one-frame flicker is tentative and then forgotten.
    far = base + [700, 0]
    assert tracker.update(np.stack([base, far]), np.stack([weak, weak])) == [0, None]
    assert tracker.update(np.stack([far, base]), np.stack([strong, strong])) == [None, 0]
    assert tracker.update(base[None], strong[None]) == [0]
    assert tracker.update(np.stack([base, far]), np.stack([strong, strong])) == [0, None]
    assert tracker.update(np.stack([base, far]), np.stack([strong, strong])) == [0, 1]
    assert tracker.counts['started'] == 2
    # Below min_score a detection is ignored altogether; non-finite joints do not count.
    bad = base.copy()
    bad[:4] = np.nan  # (13 of 17 joints at 0.9: still a confident detection)
    assert tracker.update(np.stack([base, far]), np.stack([np.full(17, 0.05), strong])) == \
        [None, 1]
    assert tracker.update(np.stack([bad, far]), np.stack([strong, strong])) == [0, 1]


def _two_people(frames, tracking, fps=30.0):
    """Person 0 small on the left, person 1 big on the right, standing still."""
    small = TEMPLATE[:, [0, 2]] * [150, -150] + [200, 400]
    big = TEMPLATE[:, [0, 2]] * [300, -300] + [900, 650]
    conf = np.full((2, 17), 0.9)
    return [tracking.step(np.stack([small, big]), conf, (W, H), f / fps) for f in frames]


@pytest.mark.parametrize('spec, want', [
    ('all', [0, 1]), ('largest', [1]), ('central', [1]), ('region:0,0,0.3,1', [0]),
    ('track:0', [0]), ('track:1', [1]), ('track:7', [])])
def test_subject_modes(spec, want):
    tracking = PeopleTracking(spec)
    for keep, ids in _two_people(range(3), tracking):
        assert ids == want and keep == want  # detection k is person k here
    assert tracking.values()['subject'] == ('all' if spec == 'all' else
                                            want[0] if want else 7)


def test_subject_is_sticky_until_its_track_ends():
    tracking = PeopleTracking('largest', TrackerConfig(max_age=3))
    big = TEMPLATE[:, [0, 2]] * [300, -300] + [900, 650]
    small = TEMPLATE[:, [0, 2]] * [150, -150] + [200, 400]
    conf = np.full((1, 17), 0.9)
    assert tracking.step(small[None], conf, (W, H)) == ([0], [0])  # the only one: chosen
    # A bigger person arrives: the subject stays the first one.
    for _ in range(3):
        assert tracking.step(np.stack([small, big]), np.tile(conf, (2, 1)), (W, H))[1] == [0]
    # The subject is unseen (lost): nobody is output, the other is not promoted ...
    for _ in range(3):
        assert tracking.step(big[None], conf, (W, H)) == ([], [])
    # ... until the subject's track ends; then the criterion chooses again.
    assert tracking.step(big[None], conf, (W, H)) == ([0], [1])
    assert tracking.values()['subject'] == 1


@pytest.mark.parametrize('spec', ['', 'biggest', 'track:', 'track:x', 'track:-1',
                                  'region:0,0,1', 'region:1,0,0,1', 'region:a,b,c,d',
                                  'largest:1'])
def test_bad_subject_is_refused(spec):
    with pytest.raises(ValueError, match='subject'):
        SubjectSelector(spec)


@pytest.mark.parametrize('kwargs', [dict(gate=0), dict(max_gate=0.1), dict(confirm_hits=0),
                                    dict(max_age=-1), dict(high_score=1.5),
                                    dict(min_score=0.6, high_score=0.5),
                                    dict(velocity_smoothing=0)])
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError, match='tracker'):
        TrackerConfig(**kwargs)


def test_offline_lifting_ends_a_track_and_starts_the_next(make_checkpoint):
    # The lifter side: tracks leave and arrive as different ids, so the offline lifter (the
    # live gap rules) gives each its own segment instead of interpolating across them.
    from vp3d_ros.core.lifter import SequenceLifter
    from vp3d_ros.core.checkpoint import load_checkpoint
    from vp3d_ros.apps.offline import Frame2D, lift_frames
    ckpt, _ = make_checkpoint((3, 3), 16, causal=False)
    lifter = SequenceLifter(load_checkpoint(ckpt).build('cpu'))
    tracking = PeopleTracking()
    base = TEMPLATE[:, [0, 2]] * [200, -200] + [0, 500]
    frames, conf = [], np.full((1, 17), 0.9)
    for f in range(30):
        kp = (base + ([900 + 15 * f, 0] if f < 15 else [500 - 10 * f, 0]))[None]
        keep, ids = tracking.step(kp, conf, (W, H), f / 30)
        frames.append(Frame2D(int(f * 1e9 / 30), 'cam', (W, H),
                              {i: (kp[k], conf[k]) for k, i in zip(keep, ids)}))
    poses = lift_frames(frames, lifter, TrackRules(max_gap_frames=10))
    by_id = {}
    for stamp, people in poses.items():
        for pid, lp in people.items():
            by_id.setdefault(pid, []).append(stamp)
            assert not lp.bridged
    first, second = sorted(by_id)
    assert max(by_id[first]) < min(by_id[second])  # no frame lifted from two people
    assert len(by_id[first]) == 15 and len(by_id[second]) == 14  # the newcomer's first
    # frame is tentative (the first id was still lost then), every other frame has a pose


def test_real_mediapipe_two_people_keep_their_ids(tmp_path):
    # The bundled clip (one person balancing) beside its mirrored copy 37 frames later:
    # two real people. MediaPipe's detections are handed over in a random order each frame,
    # as a detector's output order is arbitrary; each person keeps one id over the clip.
    cv2 = pytest.importorskip('cv2')
    from vp3d_ros.core.keypoint_mapping import map_mediapipe
    from vp3d_ros.vision.pose_estimation import create_estimator
    from vp3d_ros.vision.pose_task_bundle import build_pose_task
    task = build_pose_task(tmp_path / 'pose_landmarker_full.task')
    cap = cv2.VideoCapture(CLIP)
    small = []
    while len(small) < 60:
        ok, bgr = cap.read()
        assert ok
        small.append(cv2.resize(bgr, (270, 480), interpolation=cv2.INTER_AREA))
    cap.release()
    rng = np.random.default_rng(0)
    tracking = PeopleTracking()
    sides = {}
    with create_estimator('tasks', task_file=str(task), num_poses=2) as est:
        for i in range(len(small)):
            img = np.concatenate([small[i], cv2.flip(small[(i + 37) % len(small)], 1)], 1)
            people = est.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), int(i * 1000 / 60))
            people = [people[k] for k in rng.permutation(len(people))]
            lm = np.array([p.landmarks_px for p in people]).reshape(-1, 33, 2)
            vis = np.array([p.visibility for p in people]).reshape(-1, 33)
            kp, conf = map_mediapipe(lm, vis, 'h36m')
            keep, ids = tracking.step(kp, conf, (540, 480), i / 60)
            for k, pid in zip(keep, ids):
                sides.setdefault(pid, set()).add(bool(kp[k, 0, 0] > 270))
    assert sorted(sides) == [0, 1] and all(len(s) == 1 for s in sides.values())
    assert tracking.tracker.counts == {'started': 2, 'lost': 0, 'recovered': 0, 'ended': 0}


def _side_by_side(n):
    """n frames (540 x 480) of the clip beside its mirrored copy 37 frames later (RGB)."""
    import cv2
    cap = cv2.VideoCapture(CLIP)
    small = []
    while len(small) < 60:
        ok, bgr = cap.read()
        assert ok
        small.append(cv2.cvtColor(cv2.resize(bgr, (270, 480), interpolation=cv2.INTER_AREA),
                                  cv2.COLOR_BGR2RGB))
    cap.release()
    return [np.ascontiguousarray(np.concatenate([small[i % 60], small[(i + 37) % 60][:, ::-1]], 1))
            for i in range(n)]


def test_offline_2d_stage_ids_are_tracks_and_subject_is_applied(tmp_path):
    # detect_2d (the offline 2D stage, shared rules with pose2d) with the tasks backend and
    # two people: person ids are track ids; a subject region keeps only that person.
    from vp3d_ros.apps.offline import CameraSource, detect_2d
    from vp3d_ros.vision.pose_estimation import create_estimator
    from vp3d_ros.vision.pose_task_bundle import build_pose_task
    task = str(build_pose_task(tmp_path / 'pose_landmarker_full.task'))
    frames = _side_by_side(30)
    src = CameraSource('cam01', 'composite', len(frames), lambda: (
        (int(i * 1e9 / 30), 'cam01_optical', f, None) for i, f in enumerate(frames)))

    def make():
        return create_estimator('tasks', task_file=task, num_poses=2)

    everyone = detect_2d(src, make, 'h36m')
    sides = {}
    for fr in everyone:
        for pid, (kp, _) in fr.people.items():
            sides.setdefault(pid, set()).add(bool(kp[0, 0] > 270))
    assert sorted(sides) == [0, 1] and all(len(s) == 1 for s in sides.values())
    assert sorted(s.pop() for s in sides.values()) == [False, True]
    subject = detect_2d(src, make, 'h36m',
                        make_tracking=lambda: PeopleTracking('region:0.6,0.2,0.9,0.8'))
    ids = {pid for fr in subject for pid in fr.people}
    xs = [kp[0, 0] for fr in subject for kp, _ in fr.people.values()]
    assert len(ids) == 1 and len(xs) >= 28 and min(xs) > 270


def test_pose2d_node_publishes_track_ids_of_the_subject(rig):
    # The live node: tasks backend, two people, subject = the one nearest the right half;
    # keypoints_2d carries that person only, under one id; diagnostics count both tracks.
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, PointCloud2
    from test_robustness_common import SEC, diag_values, has_stamp, image, reliable, send_until
    from vp3d_ros.vision.pose_task_bundle import build_pose_task
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    start, client, tmp = rig
    task = build_pose_task(tmp / 'pose_landmarker_full.task')
    pose = start('pose2d_node', '-r', '__ns:=/cam01', '-p', 'backend:=tasks', '-p',
                 f'task_file:={task}', '-p', 'num_poses:=2', '-p',
                 'subject:=region:0.5,0,1,1', name='pose2d')
    client.collect(PointCloud2, '/cam01/keypoints_2d')
    client.collect(DiagnosticArray, '/diagnostics')
    pub = client.node.create_publisher(Image, '/cam01/image', reliable(5))
    assert pose.wait_for_log('pose2d ready', 90), pose.log()
    kp_topic = '/cam01/keypoints_2d'
    t0 = 100 * SEC
    answered = []
    for i, frame in enumerate(_side_by_side(20)):
        ns = t0 + i * SEC // 30
        assert send_until(client, pub, image(frame, ns), lambda: has_stamp(client, kp_topic, ns),
                          60 if i == 0 else 20), pose.log()
        answered.append(ns)
    people = [cloud_to_keypoints(next(m for m in client.messages(kp_topic)
                                      if m.header.stamp.sec * SEC + m.header.stamp.nanosec == ns))
              for ns in answered]
    assert all(len(p) == 1 for p in people), [sorted(p) for p in people]
    assert len({pid for p in people for pid in p}) == 1
    assert all(kp[0][0, 0] > 270 for p in people for kp in p.values())
    fqn = '/cam01/pose2d'
    assert client.wait_for(lambda: diag_values(client, fqn).get('tracks_started') == '2', 10), \
        diag_values(client, fqn)
    values = diag_values(client, fqn)
    assert values['subject'] == str(next(iter(people[-1]))) and values['tracks_active'] == '2'
    assert values['tracks_ended'] == '0'


def test_offline_cli_refuses_a_bad_subject(tmp_path, capsys):
    from vp3d_ros.cli.offline import main
    out = tmp_path / 'never'
    assert main([CLIP, '--out', str(out), '--subject', 'biggest']) == 2
    assert "subject must be one of all, largest, central" in capsys.readouterr().err
    assert main([CLIP, '--out', str(out), '--track-gate', '0']) == 2
    assert 'tracker gate must be > 0' in capsys.readouterr().err
    assert not out.exists()
