"""Configuration that cannot work, as real node processes: each exits quickly with status 2
and a [FATAL] line saying what to fix, before it subscribes to anything (so no data can be
taken and lost) and without a traceback. All cases start at once to keep the test short."""
import os
import time

import torch

from test_robustness_common import reliable
from test_robustness_common import rig  # noqa: F401  (fixture)


class _CarriesCode:
    """Unpickling this runs a shell command: a checkpoint must never be loaded like that."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def test_bad_configuration_exits_with_a_clear_message(rig, make_checkpoint):
    from sensor_msgs.msg import PointCloud2
    start, client, tmp = rig
    ckpt, model = make_checkpoint((3, 3, 3), 32, True)
    text = tmp / 'notes.bin'
    text.write_text('not a checkpoint, just notes\n')
    marker = tmp / 'code_ran'
    evil = tmp / 'evil.bin'
    torch.save({'model_pos': model.state_dict(), 'hook': _CarriesCode(marker)}, str(evil))
    afile = tmp / 'afile'
    afile.write_text('a regular file where a directory is expected')
    (tmp / 'bags' / 'taken').mkdir(parents=True)
    arch = ('-p', 'filter_widths:=[3, 3, 3]', '-p', 'channels:=32', '-p', 'causal:=true')
    from test_world import lab_camera
    from vp3d_ros.geometry.calibration import Camera, save_calibration_toml
    c = lab_camera()
    other = save_calibration_toml({'cam_07': Camera('cam_07', c.K, c.dist, c.R, c.t, c.size)},
                                  tmp / 'other.toml')
    rec_topics = ('-p', 'topics:=[/cam01/keypoints_2d]')

    # name: (executable, ros args, what the message must say)
    cases = {
        'missing_ckpt': ('lifter_node', ('-p', f'checkpoint:={tmp}/nope.bin', *arch),
                         ['checkpoint file not found', 'nope.bin', 'set the "checkpoint" parameter']),
        'not_a_ckpt': ('lifter_node', ('-p', f'checkpoint:={text}', *arch),
                       ['notes.bin is not a PyTorch checkpoint', 'set "checkpoint" to a']),
        'wrong_shapes': ('lifter_node', ('-p', f'checkpoint:={ckpt}', '-p',
                                         'filter_widths:=[3, 3, 3, 3]', '-p', 'channels:=32'),
                         ['does not match the checkpoint', 'filter_widths=[3, 3, 3]',
                          'fix filter_widths/channels']),
        'carries_code': ('lifter_node', ('-p', f'checkpoint:={evil}', *arch),
                         ['refused to load', 'may carry code']),
        'bad_mode': ('lifter_node', ('-p', 'mode:=fast'), ["mode must be 'causal' or 'symmetric'",
                                                          "got 'fast'"]),
        'bad_block': ('lifter_node', ('-p', f'checkpoint:={ckpt}', *arch, '-p', 'block_frames:=0'),
                      ['block_frames must be 1..64, got 0']),
        'bad_device': ('lifter_node', ('-p', f'checkpoint:={ckpt}', *arch, '-p', 'device:=cuda:99'),
                       ["cannot put the model on device 'cuda:99'", "set the 'device' parameter"]),
        'calib_lacks_camera': ('lifter_node', ('-p', f'checkpoint:={ckpt}', *arch, '-p',
                                               'cameras:=[cam01]', '-p', f'calibration:={other}'),
                               ["lifter: no camera 'cam01' in the calibration", 'cam_07']),
        'calib_missing': ('lifter_node', ('-p', f'checkpoint:={ckpt}', *arch, '-p',
                                          'cameras:=[cam01]', '-p', f'calibration:={tmp}/no.toml'),
                          ['lifter: ', 'no.toml']),
        'bag_under_file': ('recorder_node', ('-p', f'bag_dir:={afile}/bags', '-p', 'bag_name:=s',
                                             *rec_topics),
                           ['cannot record to', 'Not a directory', 'set bag_dir to a writable']),
        'bag_exists': ('recorder_node', ('-p', f'bag_dir:={tmp}/bags', '-p', 'bag_name:=taken',
                                         *rec_topics),
                       ['already exists', 'bags are never overwritten']),
        'bad_layout': ('pose2d_node', ('-r', '__ns:=/cam01', '-p', 'keypoint_layout:=body25'),
                       ["keypoint_layout must be 'h36m' or 'coco', got 'body25'"]),
        'bad_type': ('pose2d_node', ('-r', '__ns:=/cam01', '-p', 'num_poses:=two'),
                     ["parameter 'num_poses'", "expecting type 'INTEGER'"]),
        'bad_subject': ('pose2d_node', ('-r', '__ns:=/cam01', '-p', 'subject:=region:1,0,0,1'),
                        ['subject region needs x0,y0,x1,y1 with x0 <= x1']),
    }
    # The lifters would subscribe here: nobody may (they must refuse before subscribing).
    pub = client.node.create_publisher(PointCloud2, '/cam01/keypoints_2d', reliable())
    t0 = time.monotonic()
    procs = {name: start(exe, *args, name=name) for name, (exe, args, _) in cases.items()}
    exits = {}
    while len(exits) < len(procs) and time.monotonic() - t0 < 120:
        assert pub.get_subscription_count() == 0, 'a misconfigured node subscribed'
        for name, proc in procs.items():
            if name not in exits and proc.proc.poll() is not None:
                exits[name] = (proc.proc.returncode, time.monotonic() - t0)
        time.sleep(0.1)
    for name, (_, _, expected) in cases.items():
        log = procs[name].log()
        assert name in exits, f'{name}: still running after 120 s:\n{log}'
        rc, seconds = exits[name]
        assert rc == 2, f'{name}: exit status {rc}:\n{log}'
        assert '[FATAL]' in log and 'Traceback' not in log, f'{name}:\n{log}'
        for fragment in expected:
            assert fragment in log, f'{name}: {fragment!r} missing from:\n{log}'
        assert ' ready: ' not in log and ' recording to ' not in log, f'{name}:\n{log}'
    assert not marker.exists(), 'loading the checkpoint ran code from the pickle'
    assert not (afile.parent / 'afile' / 'bags').exists() and os.listdir(tmp / 'bags') == ['taken']
    slowest = max(s for _, s in exits.values())
    assert slowest < 90, f'slowest refusal took {slowest:.0f} s'


def test_recorder_starts_without_importing_torch():
    """The recorder stays small (it takes the model's provenance from the lifter's ~/model
    announcement, loading nothing itself), and lifter_config, which names the shipped
    checkpoints, imports without torch too."""
    import subprocess
    import sys
    code = ('import sys; import vp3d_ros.nodes.recorder_node as r; '
            'from vp3d_ros.core.lifter_config import DEFAULT_CHECKPOINTS as D; '
            'assert "torch" not in sys.modules, "torch imported"; '
            'print(sorted(D), all(p.endswith(".bin") for p in D.values()))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['causal', 'symmetric'] True"


def test_a_node_refusing_its_configuration_ends_its_process_at_once(tmp_path):
    """run_node ends the process of a node whose constructor raised ConfigError with
    status 2 right after the message, tearing nothing down: destroying its half-built DDS
    participant (destroy_node, or the interpreter's exit) sometimes died of SIGSEGV on a
    cold start. Neither rclpy's shutdown nor anything after run_node runs."""
    import subprocess
    import sys
    code = '''
import sys
from rclpy.node import Node
from std_msgs.msg import String
from vp3d_ros.nodes.common import ConfigError, run_node

class Refuser(Node):
    def __init__(self):
        super().__init__('refuser')
        self.create_publisher(String, 'chatter', 1)
        raise ConfigError('set "x" to something sensible')

import rclpy
shutdown = rclpy.try_shutdown
def try_shutdown(*a, **k):
    print('rclpy shut down', flush=True)
    return shutdown(*a, **k)
rclpy.try_shutdown = try_shutdown
print('building', flush=True)
status = run_node(Refuser, args=[])
print('run_node returned', status, flush=True)
'''
    env = dict(os.environ, ROS_DOMAIN_ID='199', ROS_LOG_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         timeout=60)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert '[FATAL] set "x" to something sensible' in out.stderr
    assert out.stdout.split() == ['building'], out.stdout
