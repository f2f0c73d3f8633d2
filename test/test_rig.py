"""The launch file's node set started from the YAML without ros2 launch (vp3d_ros.apps.rig):
video_source plays the bundled clip as camera cam01, the nodes process it, the recorder's
bag holds the result."""
import importlib.util
import os
import subprocess
import sys

import numpy as np

from conftest import REPO
from ros_harness import Client, ros_env, unique_domain_id

# find_spec, not import (see test_kinematics): the kinematics node runs where OpenSim is
HAVE_OPENSIM = importlib.util.find_spec('opensim') is not None


def _run_rig(tmp_path, env, plan_args: str, video_log: str, frames: int, settle_s: float,
             timeout: float = 600):
    """``rig.plan(<plan_args>)`` started as its own process (what users run), until
    ``video_log`` says the clip of ``frames`` frames ended, ``settle_s`` more, then stopped
    (SIGTERM). -> (exit status: 0 when the clip ended and the recorder closed its bag,
    {log file: text})."""
    log = open(tmp_path / 'rig.log', 'w')
    proc = subprocess.Popen(
        [sys.executable, '-c', f'''
import sys, time
from vp3d_ros.apps import rig
specs = rig.plan({plan_args})
r = rig.Rig(specs, rig.default_params_file(), log_dir={str(tmp_path / "logs")!r})
ok = r.wait_for_log({video_log!r}, 'end of clip after {frames} frames', {timeout - 60})
time.sleep({settle_s})
codes = r.stop()
print('OK' if ok else 'NOT FINISHED', codes)
sys.exit(0 if ok and codes.get('recorder') == 0 else 1)
'''], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        rc = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    logs = {p: open(tmp_path / 'logs' / p).read() for p in os.listdir(tmp_path / 'logs')}
    assert rc == 0, open(tmp_path / 'rig.log').read() + str(logs)
    return logs


def test_rig_plays_video_through_pipeline_into_bag(tmp_path, make_checkpoint):
    from vp3d_ros.io.bag_io import open_bag
    ckpt, _ = make_checkpoint((3, 3, 3), 32, causal=True)
    env = ros_env(unique_domain_id(), tmp_path / 'ros_log')
    # The rig itself is what users run; node parameters come from config/vp3d.yaml.
    logs = _run_rig(tmp_path, env, f"""['cam01'], video='', record=True, bag_dir={str(tmp_path)!r},
        checkpoint={ckpt!r}, video_params=['max_frames:=12', 'rate:=3.0', 'stamp_source:=video'],
        recorder_params=['bag_name:=rig_bag']""", 'cam01_video_source', 12, 3.0, timeout=300)
    assert 'streaming' in logs['cam01_video_source.log']
    with open_bag(tmp_path / 'rig_bag') as bag:
        counts = {t: i.count for t, i in bag.topics.items()}
        stamps = sorted({s for _, _, s, _ in bag.messages(['/cam01/keypoints_2d'])})
    # Every frame pose2d took produced keypoints; the lifter produced one skeleton each.
    # pose2d keeps only the newest frame: at 6 fps a VM busy with two trainings let it take
    # 4 of 12, hence 3 fps (a third of a second per frame for MediaPipe)
    assert counts['/cam01/keypoints_2d'] >= 6, counts
    assert counts['/cam01/skeleton_3d'] >= counts['/cam01/keypoints_2d'] - 2, counts
    assert len(stamps) == counts['/cam01/keypoints_2d']


def test_rig_fuses_the_bundled_four_camera_clip(tmp_path):
    """The launch file's node set for ``cameras:=cam01,cam02,cam03,cam04 calibration:=FILE``
    with one bundled video per camera (vp3d_ros.apps.rig, the same plan_nodes): a video_source
    playing the four real clips in lockstep, four pose2d (real MediaPipe), the lifter, world,
    fusion and the recorder, over real DDS. The bag holds fused world skeletons, stamped with
    the videos' instants, upright in the calibration's z-up world. Where OpenSim is installed
    (CI) the plan also starts the kinematics node (``kinematics:=generic``): joint angles of
    the fused skeleton on /kinematics/joint_states, stamped as the fused instants."""
    from sensor_msgs.msg import JointState
    from vp3d_ros import DATA_DIR
    from vp3d_ros.io.bag_io import open_bag
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    cams = ['cam01', 'cam02', 'cam03', 'cam04']
    videos = ','.join(os.path.join(DATA_DIR, f'balancing_{c}.mp4') for c in cams)
    calib = os.path.join(DATA_DIR, 'balancing_calib_qualisys.toml')
    domain = unique_domain_id()
    env = ros_env(domain, tmp_path / 'ros_log')
    n = 10
    kinematics = 'generic' if HAVE_OPENSIM else ''
    client = Client(domain)
    client.collect(JointState, '/kinematics/joint_states')
    try:
        logs = _run_rig(tmp_path, env, f"""{cams!r}, video={videos!r}, record=True,
            bag_dir={str(tmp_path)!r}, calibration={calib!r},
            video_params=['max_frames:={n}', 'rate:=2.0', 'stamp_source:=video'],
            recorder_params=['bag_name:=rig_fused'], fusion_params=['max_wait_s:=3.0'],
            kinematics={kinematics!r}""", 'video_source', n, 8.0)
    finally:
        client.close()
    assert sorted(logs) == sorted(['cam01_pose2d.log', 'cam02_pose2d.log', 'cam03_pose2d.log',
                                   'cam04_pose2d.log', 'fusion.log', 'lifter.log',
                                   'recorder.log', 'video_source.log', 'world.log']
                                  + (['kinematics.log'] if kinematics else []))
    assert 'in lockstep' in logs['video_source.log']
    # the launch plan hands the lifter the calibration: every camera lifted in its level view
    assert "level view from" in logs['lifter.log'] and \
        "['cam01', 'cam02', 'cam03', 'cam04']" in logs['lifter.log'], logs['lifter.log']
    for text in logs.values():
        assert 'Traceback' not in text
    fused = []
    with open_bag(tmp_path / 'rig_fused') as bag:
        assert '/skeleton_3d/fused' in bag.topics, list(bag.topics)
        if kinematics:    # the recorder keeps the live joint angles too
            assert bag.topics['/kinematics/joint_states'].count > 0, list(bag.topics)
        for _, msgtype, _, raw in bag.messages(['/skeleton_3d/fused']):
            msg = bag.deserialize(raw, msgtype)
            people = cloud_to_keypoints(msg, 17)
            if people:
                stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                fused.append((stamp, msg.header.frame_id, next(iter(people.values()))[0]))
    # the fused instants are the videos' frames (stamp_source video: i / 60 s), one each
    assert len(fused) >= n // 2, (len(fused), logs['fusion.log'])
    frames = [s * 60 / 1e9 for s, _, _ in fused]
    assert all(abs(f - round(f)) < 0.01 for f in frames) and len(set(frames)) == len(frames)
    for _, frame_id, pose in fused:
        assert frame_id == 'world'
        if np.isfinite(pose[[0, 10]]).all():
            assert pose[10, 2] > pose[0, 2] + 0.3      # head above hip in the z-up world
    if kinematics:
        assert 'IK of /skeleton_3d/fused' in logs['kinematics.log'], logs['kinematics.log']
        angles = client.messages('/kinematics/joint_states')
        assert len(angles) >= len(fused) // 2, (len(angles), logs['kinematics.log'])
        stamps = {s for s, _, _ in fused}
        for msg in angles:
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec in stamps
            q = dict(zip(msg.name, msg.position))
            # the subject balances on one leg: knees within their anatomical range
            assert all(-0.2 < q[f'knee_angle_{s}'] < 2.2 for s in 'rl'), q


def test_rig_one_camera_without_calibration_gives_world_skeletons_and_angles(tmp_path):
    """``estimate_ground:=true`` on one uncalibrated camera (the bundled clip as cam01, real
    MediaPipe, the shipped causal lifter): the world node estimates the ground from the
    subject's first upright frames, then publishes /cam01/skeleton_3d/world in frame
    cam01_ground, upright and on the floor; where OpenSim is installed, the kinematics node
    turns them into joint angles. All recorded."""
    from vp3d_ros.io.bag_io import open_bag
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints
    env = ros_env(unique_domain_id(), tmp_path / 'ros_log')
    n = 60
    kinematics = 'generic' if HAVE_OPENSIM else ''
    logs = _run_rig(tmp_path, env, f"""['cam01'], video='', record=True, bag_dir={str(tmp_path)!r},
        estimate_ground=True, kinematics={kinematics!r},
        video_params=['max_frames:={n}', 'rate:=5.0', 'stamp_source:=video'],
        recorder_params=['bag_name:=rig_ground'],
        world_params=['ground_standing_frames:=5', 'ground_max_frames:=15']""",
                    'cam01_video_source', n, 4.0)
    assert 'cam01: ground from the subject: pitch' in logs['world.log'], logs['world.log']
    for text in logs.values():
        assert 'Traceback' not in text
    world = []
    with open_bag(tmp_path / 'rig_ground') as bag:
        for _, msgtype, _, raw in bag.messages(['/cam01/skeleton_3d/world']):
            msg = bag.deserialize(raw, msgtype)
            assert msg.header.frame_id == 'cam01_ground'
            world += [p for p, _ in cloud_to_keypoints(msg, 17).values()]
        angles = bag.topics['/kinematics/joint_states'].count if kinematics else None
    assert len(world) >= 10, (len(world), logs['world.log'])
    P = np.stack(world)
    feet = np.minimum(P[:, 3, 2], P[:, 6, 2])
    assert np.median(np.abs(feet)) < 0.3, feet              # on the floor (z = 0)
    assert np.median(P[:, 10, 2] - feet) > 1.1               # the head well above the feet
    if kinematics:
        assert angles and angles >= len(world) // 3, (angles, logs['kinematics.log'])

