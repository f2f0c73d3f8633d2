"""Start the vp3d_ros nodes from the YAML config without ``ros2 launch``.

The launch file is the way on a full ROS 2 install; where ``launch``/``ros2`` are missing
(e.g. the PyPI ROS wheels) this starts the same nodes (both take them from
:mod:`vp3d_ros.core.topology`), with the same parameter file and the same
namespaces/remappings, as ``ros2 run``-style processes::

    python -m vp3d_ros.apps.rig --cameras cam01 --video clip.mp4 --record --bag-dir bags

SIGINT/SIGTERM stop every node with SIGTERM (the recorder closes its bag).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import List, Optional

from .. import PACKAGE_DIR
from ..core.topology import NodePlan, RigOptions, parse_cameras, plan_nodes, ros_args



def default_params_file() -> str:
    for candidate in (os.path.join(os.path.dirname(PACKAGE_DIR), 'config', 'vp3d.yaml'),
                      os.path.join(sys.prefix, 'share', 'vp3d_ros', 'config', 'vp3d.yaml')):
        if os.path.isfile(candidate):
            return candidate
    try:
        from ament_index_python.packages import get_package_share_directory
        return os.path.join(get_package_share_directory('vp3d_ros'), 'config', 'vp3d.yaml')
    except Exception:  # noqa: BLE001 - no ament index: no installed share dir either
        raise FileNotFoundError('config/vp3d.yaml not found; pass --params-file') from None


class NodeSpec:
    """A planned node (:mod:`vp3d_ros.core.topology`) as a ``python -m`` process, with extra
    ``name:=value`` overrides (tests and the demo shorten clips, name bags, ...)."""

    def __init__(self, plan: NodePlan, params=()):
        self.plan = plan
        self.module, self.name, self.namespace = plan.module, plan.name, plan.namespace
        self.params = list(params)

    def command(self, params_file: str, extra: List[str]) -> List[str]:
        return [sys.executable, '-m', f'vp3d_ros.nodes.{self.module}',
                *ros_args(self.plan, params_file, self.params + list(extra))]


def plan(cameras: List[str], video: Optional[str] = None, record: bool = False,
         bag_dir: str = 'vp3d_bags', checkpoint: str = '', mode: str = 'causal',
         image_topic: str = 'image_raw', use_sim_time: bool = False,
         video_params=(), lifter_params=(), recorder_params=(),
         calibration: str = '', fusion_params=(), loop: bool = False,
         kinematics: str = '', kinematics_params=(),
         estimate_ground: bool = False, world_params=()) -> List[NodeSpec]:
    """The launch file's node set (:func:`vp3d_ros.core.topology.plan_nodes`) as processes;
    ``*_params``: extra ``name:=value`` overrides of that node."""
    extra = {'video_source': video_params, 'lifter': lifter_params,
             'recorder': recorder_params, 'fusion': fusion_params,
             'kinematics': kinematics_params, 'world': world_params}
    opts = RigOptions(cameras=list(cameras), video=video, loop=loop, record=record,
                      bag_dir=bag_dir, checkpoint=checkpoint, mode=mode, image_topic=image_topic,
                      calibration=calibration, kinematics=kinematics,
                      estimate_ground=estimate_ground)
    return [NodeSpec(p, extra.get(p.name, ())) for p in plan_nodes(opts)]


class Rig:
    """The started node processes; ``stop()`` sends SIGTERM and waits."""

    def __init__(self, specs: List[NodeSpec], params_file: str, env=None, log_dir=None,
                 use_sim_time: bool = False):
        self.procs = []
        self.logs = {}
        extra = ['use_sim_time:=true'] if use_sim_time else []
        for spec in specs:
            key = f'{spec.namespace + "_" if spec.namespace else ""}{spec.name}'
            out = None
            if log_dir:
                os.makedirs(log_dir, exist_ok=True)
                self.logs[key] = os.path.join(log_dir, f'{key}.log')
                out = open(self.logs[key], 'w')
            proc = subprocess.Popen(spec.command(params_file, extra), env=env, stdout=out,
                                    stderr=subprocess.STDOUT if out else None)
            self.procs.append((key, proc))

    def log(self, key: str) -> str:
        with open(self.logs[key]) as f:
            return f.read()

    def wait_for_log(self, key: str, text: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log(key):
                return True
            if dict(self.procs)[key].poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def stop(self, keys=None, timeout: float = 20.0) -> dict:
        codes = {}
        for key, proc in self.procs:
            if keys is None or key in keys:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        for key, proc in self.procs:
            if keys is None or key in keys:
                try:
                    codes[key] = proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    codes[key] = proc.wait()
        return codes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='python -m vp3d_ros.apps.rig', description=__doc__.splitlines()[0])
    ap.add_argument('--cameras', default='cam01',
                    help='comma-separated camera namespaces, one pose2d each (default: cam01)')
    ap.add_argument('--image-topic', default='image_raw',
                    help='image topic inside each camera namespace (default: image_raw)')
    ap.add_argument('--video', default=None,
                    help="play a video as the first camera ('' = bundled clip; default: none, "
                         'images come from your camera drivers); one video per camera, '
                         'comma-separated: played in lockstep, one stamp per instant')
    ap.add_argument('--loop', action='store_true', help='with --video: loop the video')
    ap.add_argument('--params-file', default=None,
                    help='node parameters YAML (default: the package\'s config/vp3d.yaml)')
    ap.add_argument('--checkpoint', default='',
                    help='lifter checkpoint (.bin; default: the shipped one for --mode)')
    ap.add_argument('--mode', default='causal', choices=['causal', 'symmetric'],
                    help='lifter: causal (default; poses at once, past frames only) or symmetric '
                         '(smoother, poses (RF-1)/2 frames late)')
    ap.add_argument('--record', action='store_true',
                    help='also start the recorder (keypoints_2d and skeleton_3d to a bag)')
    ap.add_argument('--bag-dir', default='vp3d_bags',
                    help='with --record: directory for the bags (default: vp3d_bags)')
    ap.add_argument('--use-sim-time', action='store_true',
                    help='nodes follow /clock (e.g. with ros2 bag play --clock)')
    ap.add_argument('--calibration', default='',
                    help='calibration file of the cameras: starts the world node '
                         '(/<cam>/skeleton_3d/world), and with two or more cameras the fusion '
                         'node (/skeleton_3d/fused)')
    ap.add_argument('--estimate-ground', action='store_true',
                    help='without a calibration: the world node all the same, each camera in a '
                         "ground frame its subject tells (<cam>_ground; gravity and floor from "
                         'the first upright frames)')
    ap.add_argument('--kinematics', default='', metavar='MODEL',
                    help="with --calibration or --estimate-ground: also the kinematics node, "
                         "OpenSim IK of the fused skeleton (else the first camera's world "
                         "skeleton) on /kinematics/joint_states; MODEL: the subject's scaled "
                         ".osim from vp3d-kinematics, or 'generic' for the bundled unscaled "
                         'model (needs opensim)')
    a = ap.parse_args(argv)
    try:
        cams = parse_cameras(a.cameras)
        specs = plan(cams, a.video, a.record, a.bag_dir, a.checkpoint, a.mode, a.image_topic,
                     calibration=a.calibration, loop=a.loop, kinematics=a.kinematics,
                     estimate_ground=a.estimate_ground)
    except ValueError as e:
        ap.error(str(e))
    rig = Rig(specs, a.params_file or default_params_file(), use_sim_time=a.use_sim_time)
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    while not stop and all(p.poll() is None for _, p in rig.procs):
        time.sleep(0.2)
    codes = rig.stop()
    return max(codes.values(), default=0)


if __name__ == '__main__':
    sys.exit(main())
