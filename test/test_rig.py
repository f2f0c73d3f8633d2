"""The launch file's node set started from the YAML without ros2 launch (vp3d_ros.apps.rig):
video_source plays the bundled clip as camera cam01, the nodes process it, the recorder's
bag holds the result."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from ros_harness import ros_env, unique_domain_id


def test_rig_plays_video_through_pipeline_into_bag(tmp_path, make_checkpoint):
    from vp3d_ros.io.bag_io import open_bag
    ckpt, _ = make_checkpoint((3, 3, 3), 32, causal=True)
    env = ros_env(unique_domain_id(), tmp_path / 'ros_log')
    log = open(tmp_path / 'rig.log', 'w')
    # The rig itself is what users run; node parameters come from config/vp3d.yaml.
    proc = subprocess.Popen(
        [sys.executable, '-c', f'''
import sys
from vp3d_ros.apps import rig
specs = rig.plan(['cam01'], video='', record=True, bag_dir={str(tmp_path)!r}, checkpoint={ckpt!r},
                 video_params=['max_frames:=12', 'rate:=6.0', 'stamp_source:=video'],
                 recorder_params=['bag_name:=rig_bag'])
r = rig.Rig(specs, rig.default_params_file(), log_dir={str(tmp_path / "logs")!r})
ok = r.wait_for_log('cam01_video_source', 'end of clip after 12 frames', 240)
import time; time.sleep(3.0)
codes = r.stop()
print('OK' if ok else 'NOT FINISHED', codes)
sys.exit(0 if ok and codes.get('recorder') == 0 else 1)
'''], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        rc = proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    logs = {p: open(tmp_path / 'logs' / p).read() for p in os.listdir(tmp_path / 'logs')}
    assert rc == 0, open(tmp_path / 'rig.log').read() + str(logs)
    assert 'streaming' in logs['cam01_video_source.log']
    with open_bag(tmp_path / 'rig_bag') as bag:
        counts = {t: i.count for t, i in bag.topics.items()}
        stamps = sorted({s for _, _, s, _ in bag.messages(['/cam01/keypoints_2d'])})
    # Every frame pose2d took produced keypoints; the lifter produced one skeleton each.
    assert counts['/cam01/keypoints_2d'] >= 6, counts
    assert counts['/cam01/skeleton_3d'] >= counts['/cam01/keypoints_2d'] - 2, counts
    assert len(stamps) == counts['/cam01/keypoints_2d']
