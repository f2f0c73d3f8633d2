"""The real launch file on the bundled 4-camera clip: does ``/skeleton_3d/fused`` publish?

Runs ``launch/vp3d.launch.py`` through ``launch.LaunchService`` (what ``ros2 launch
--noninteractive vp3d_ros vp3d.launch.py ARGS`` does) with ``cameras:=cam01,cam02,cam03,cam04
calibration:=<bundled> video:=<one bundled clip per camera> record:=true``, counts
``/skeleton_3d/fused`` messages with an rclpy subscriber for ``--seconds``, stops the launch
with SIGINT and reads the recorder's bag back. This checkout is what runs: a throw-away ament
prefix points ``vp3d_ros`` (share/config, share/launch, lib/<executables>) at it.

Needs ``launch`` and ``launch_ros`` (a ROS 2 install, or a scratch venv that also sees the
package's .venv; never install them into the .venv) and the DDS environment::

    source scripts/ros_env.sh && source /tmp/h13launch/env.sh
    /tmp/h13launch/bin/python scripts/launch_fusion_check.py --seconds 60 [--kinematics generic]

``--rate`` (video_source, default 5 Hz) and ``--max-wait`` (fusion ``max_wait_s``, default
1 s) go into a copy of config/vp3d.yaml given as ``params_file:=``: four pose2d on full 1080 x
1920 frames do not keep up with the clip's 60 fps on a small machine. Exit status 0 when
fused skeletons with a person in them arrived.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMS = ['cam01', 'cam02', 'cam03', 'cam04']
EXES = ['pose2d_node', 'lifter_node', 'recorder_node', 'video_source', 'world_node',
        'fusion_node', 'kinematics_node']
RUN_LAUNCH = '''
import sys
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
ls = LaunchService(noninteractive=True)
ls.include_launch_description(IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]),
    launch_arguments=[a.split(':=', 1) for a in sys.argv[2:]]))
sys.exit(ls.run())
'''


def ament_prefix(root: str) -> str:
    """A prefix whose ament index has vp3d_ros, pointing at this checkout."""
    share = os.path.join(root, 'share', 'vp3d_ros')
    lib = os.path.join(root, 'lib', 'vp3d_ros')
    index = os.path.join(root, 'share', 'ament_index', 'resource_index', 'packages')
    for d in (share, lib, index):
        os.makedirs(d, exist_ok=True)
    open(os.path.join(index, 'vp3d_ros'), 'w').close()
    for name in ('config', 'launch', 'package.xml'):
        os.symlink(os.path.join(REPO, name), os.path.join(share, name))
    bindir = os.path.join(REPO, '.venv', 'bin')
    if not os.path.isdir(bindir):
        bindir = os.path.dirname(sys.executable)
    for exe in EXES:
        if os.path.isfile(os.path.join(bindir, exe)):
            os.symlink(os.path.join(bindir, exe), os.path.join(lib, exe))
    return root


def params_file(path: str, rate: float, max_wait: float) -> str:
    import yaml
    with open(os.path.join(REPO, 'config', 'vp3d.yaml')) as f:
        params = yaml.safe_load(f)
    params['/**/video_source']['ros__parameters']['rate'] = float(rate)
    fusion = params.setdefault('/**/fusion', {}).setdefault('ros__parameters', {})
    fusion['max_wait_s'] = float(max_wait)
    with open(path, 'w') as f:
        yaml.safe_dump(params, f)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=60.0, help='how long to listen (s)')
    ap.add_argument('--rate', type=float, default=5.0, help='video_source rate (Hz)')
    ap.add_argument('--max-wait', type=float, default=1.0, help='fusion max_wait_s (s)')
    ap.add_argument('--out', default=None, help='folder for logs and the bag (default: temp)')
    ap.add_argument('--kinematics', default='', metavar='MODEL',
                    help="also kinematics:=MODEL ('generic' or a scaled .osim; needs opensim) "
                         'and count /kinematics/joint_states')
    a = ap.parse_args(argv)
    try:
        import launch  # noqa: F401
        import launch_ros  # noqa: F401
    except ImportError as e:
        print(f'needs launch and launch_ros importable ({e}); see the docstring', file=sys.stderr)
        return 3
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState, PointCloud2
    sys.path.insert(0, REPO)
    from vp3d_ros import DATA_DIR
    from vp3d_ros.nodes.ros_conversions import cloud_to_keypoints

    out = a.out or tempfile.mkdtemp(prefix='vp3d_launch_fusion_')
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ)
    env['AMENT_PREFIX_PATH'] = os.pathsep.join(
        [ament_prefix(tempfile.mkdtemp(prefix='prefix_', dir=out))]
        + [p for p in env.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p])
    env.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
    os.environ['ROS_DOMAIN_ID'] = env['ROS_DOMAIN_ID']
    videos = ','.join(os.path.join(DATA_DIR, f'balancing_{c}.mp4') for c in CAMS)
    args = [f'cameras:={",".join(CAMS)}', f'video:={videos}', 'loop:=true', 'record:=true',
            f'calibration:={os.path.join(DATA_DIR, "balancing_calib_qualisys.toml")}',
            f'bag_dir:={os.path.join(out, "bags")}',
            f'params_file:={params_file(os.path.join(out, "params.yaml"), a.rate, a.max_wait)}']
    if a.kinematics:
        args.append(f'kinematics:={a.kinematics}')
    print('ros2 launch vp3d_ros vp3d.launch.py ' + ' '.join(args), flush=True)

    rclpy.init()
    node = rclpy.create_node('launch_fusion_check')
    got = {'all': 0, 'persons': 0, 'first_s': None, 'stamps': set(), 'angles': 0}
    t0 = time.monotonic()

    def on_fused(msg):
        got['all'] += 1
        if cloud_to_keypoints(msg, 17):
            got['persons'] += 1
            got['stamps'].add((msg.header.stamp.sec, msg.header.stamp.nanosec))
            if got['first_s'] is None:
                got['first_s'] = time.monotonic() - t0
    node.create_subscription(PointCloud2, '/skeleton_3d/fused', on_fused, QoSProfile(
        depth=100, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL))
    if a.kinematics:
        node.create_subscription(JointState, '/kinematics/joint_states',
                                 lambda msg: got.__setitem__('angles', got['angles'] + 1), 100)
    log = open(os.path.join(out, 'launch.log'), 'w')
    proc = subprocess.Popen([sys.executable, '-c', RUN_LAUNCH,
                             os.path.join(REPO, 'launch', 'vp3d.launch.py'), *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        while time.monotonic() - t0 < a.seconds and proc.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        end = time.monotonic() + 40
        while proc.poll() is None and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
        node.destroy_node()
        rclpy.shutdown()
    bag_count = None
    bags = os.path.join(out, 'bags')
    if os.path.isdir(bags) and os.listdir(bags):
        from vp3d_ros.io.bag_io import open_bag
        with open_bag(os.path.join(bags, sorted(os.listdir(bags))[-1])) as bag:
            info = bag.topics.get('/skeleton_3d/fused')
            bag_count = info.count if info else 0
    with open(os.path.join(out, 'launch.log')) as f:
        text = f.read()
    started = sorted(line.split('[')[2].split(']')[0] for line in text.splitlines()
                     if 'process started with pid' in line and line.count('[') >= 3)
    print(f'launch exit {proc.returncode}; processes started: {", ".join(started) or "?"}')
    print(f'/skeleton_3d/fused in {a.seconds:g} s: {got["all"]} messages, {got["persons"]} '
          f'with a person ({len(got["stamps"])} distinct instants), first after '
          + (f'{got["first_s"]:.1f} s' if got['first_s'] is not None else '-')
          + f'; recorded in the bag: {bag_count}; logs and bag in {out}')
    if a.kinematics:
        print(f'/kinematics/joint_states: {got["angles"]} messages')
    return 0 if got['persons'] and (got['angles'] or not a.kinematics) else 1


if __name__ == '__main__':
    sys.exit(main())
