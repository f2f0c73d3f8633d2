"""The rig's node set, described once: which nodes run for a set of cameras and options.

``launch/vp3d.launch.py`` turns each :class:`NodePlan` into a ``launch_ros`` Node, and
``python -m vp3d_ros.apps.rig`` (no ``ros2 launch`` on the PyPI wheels) into a process; both
add the parameter file and ``use_sim_time``. So the two cannot drift apart: a node added
here starts in both.

Parameters set here are only those that follow from the options (cameras, checkpoint,
calibration, ...); everything else comes from the parameter file (``config/vp3d.yaml``).
An option left empty sets nothing, so the parameter file's value stands.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class NodePlan:
    """One node to start: ``ros2 run vp3d_ros <executable>`` (= ``python -m
    vp3d_ros.nodes.<module>``) as ``/<namespace>/<name>`` with these parameter overrides."""
    executable: str
    module: str
    name: str
    namespace: str = ''
    params: Dict[str, Any] = field(default_factory=dict)
    remaps: Tuple[Tuple[str, str], ...] = ()


@dataclass
class RigOptions:
    """What a user chooses when starting a rig (launch arguments / ``rig`` options)."""
    cameras: List[str]
    video: Optional[str] = None       # None: cameras only; '': the bundled clip; else a file,
    #                                   or one per camera, comma-separated (played in lockstep)
    loop: bool = False
    record: bool = False
    bag_dir: str = 'vp3d_bags'
    checkpoint: str = ''              # '': the shipped default for ``mode``
    mode: str = 'causal'
    image_topic: str = 'image_raw'
    calibration: str = ''             # '': no world frame, no fusion
    lifter_arch: Dict[str, Any] = field(default_factory=dict)  # official checkpoints
    kinematics: str = ''              # '': no IK; 'generic': the bundled model; else a
    #                                   scaled .osim from vp3d-kinematics (needs a world)
    estimate_ground: bool = False     # no calibration: the world node's ground from the subject


def parse_cameras(text: str) -> List[str]:
    """'cam01, /cam02' -> ['cam01', 'cam02']; at least one is required."""
    cams = [c.strip().strip('/') for c in str(text).split(',') if c.strip().strip('/')]
    if not cams:
        raise ValueError('cameras needs at least one camera namespace')
    return cams


def plan_nodes(opts: RigOptions) -> List[NodePlan]:
    """The node set: [video_source] + one pose2d per camera + lifter [+ recorder]
    [+ world with a calibration, or estimate_ground without one]
    [+ fusion with a calibration and >= 2 cameras]
    [+ kinematics: OpenSim IK of the fused skeleton, else of the first camera's world skeleton].

    ``video`` with one file per camera (comma-separated): one video_source plays them all
    in lockstep, each frame on every camera with one stamp (a synchronised rig from files),
    once every camera's pipeline is up."""
    cams = list(opts.cameras)
    if opts.estimate_ground and opts.calibration:
        raise ValueError('estimate_ground is for cameras without a calibration: the '
                         "calibration's world is the world")
    world = bool(opts.calibration) or opts.estimate_ground
    if opts.kinematics and not world:
        raise ValueError('kinematics runs IK on world skeletons: it needs a calibration, or '
                         'estimate_ground (the ground from the subject)')
    image = (('image', opts.image_topic),)
    nodes = []
    videos = [v.strip() for v in opts.video.split(',')] if opts.video else []
    fused = bool(opts.calibration) and len(cams) >= 2
    if len(videos) > 1:
        if len(videos) != len(cams):
            raise ValueError(f'{len(videos)} videos for {len(cams)} cameras {cams}: give one '
                             'video, or one per camera (comma-separated, in camera order)')
        wait = [f'/{c}/keypoints_2d' for c in cams]
        if opts.record:
            wait += [f'/{c}/skeleton_3d' for c in cams] + (['/skeleton_3d/fused'] if fused
                                                           else [])
        nodes.append(NodePlan('video_source', 'video_source_node', 'video_source', '',
                              {'loop': bool(opts.loop), 'video': ','.join(videos),
                               'cameras': cams, 'wait_for_topics': wait},
                              tuple((f'/{c}/image', f'/{c}/{opts.image_topic}')
                                    for c in cams)))
    elif opts.video is not None:
        video = {'loop': bool(opts.loop),
                 # play once the pipeline is up (and recording), not into the void
                 'wait_for_topics': ['keypoints_2d'] + (
                     [f'/{cams[0]}/skeleton_3d'] if opts.record else [])}
        if opts.video:
            video['video'] = opts.video
        nodes.append(NodePlan('video_source', 'video_source_node', 'video_source', cams[0],
                              video, image))
    for cam in cams:
        nodes.append(NodePlan('pose2d_node', 'pose2d_node', 'pose2d', cam, {}, image))
    lifter = {'cameras': cams, 'mode': opts.mode, **opts.lifter_arch}
    if opts.calibration:  # the level view: rolled and pitched cameras lifted as level ones
        lifter['calibration'] = opts.calibration
    if opts.checkpoint:
        lifter['checkpoint'] = opts.checkpoint
    nodes.append(NodePlan('lifter_node', 'lifter_node', 'lifter', '', lifter))
    if opts.record:
        nodes.append(NodePlan('recorder_node', 'recorder_node', 'recorder', '',
                              {'bag_dir': opts.bag_dir}))
    if world:  # each camera's skeleton in the world: /<cam>/skeleton_3d/world
        nodes.append(NodePlan('world_node', 'world_node', 'world', '',
                              {'cameras': cams, 'calibration': opts.calibration}
                              if opts.calibration else
                              {'cameras': cams, 'estimate_ground': True}))
    if fused:  # one fused world skeleton from all cameras
        nodes.append(NodePlan('fusion_node', 'fusion_node', 'fusion', '',
                              {'cameras': cams, 'calibration': opts.calibration}))
    if opts.kinematics:  # joint angles of the fused (else the camera's world) skeleton
        kin = {'input_topic': '/skeleton_3d/fused' if fused else f'/{cams[0]}/skeleton_3d/world'}
        if opts.kinematics != 'generic':
            kin['model'] = opts.kinematics
        nodes.append(NodePlan('kinematics_node', 'kinematics_node', 'kinematics', '', kin))
    return nodes


def param_arg(name: str, value: Any) -> str:
    """One ``-p name:=value`` override as ``ros2 run`` reads it (YAML values)."""
    if isinstance(value, bool):
        text = 'true' if value else 'false'
    elif isinstance(value, (list, tuple)):
        text = '[' + ', '.join(param_arg('', v)[2:] for v in value) + ']'
    else:
        text = str(value)
    return f'{name}:={text}'


def ros_args(plan: NodePlan, params_file: str, extra: Sequence[str] = ()) -> List[str]:
    """``--ros-args`` of a node process started from ``plan`` (``extra``: more ``name:=value``
    overrides, applied last)."""
    args = ['--ros-args', '-r', f'__node:={plan.name}', '--params-file', params_file]
    if plan.namespace:
        args += ['-r', f'__ns:=/{plan.namespace}']
    for a, b in plan.remaps:
        args += ['-r', f'{a}:={b}']
    for p in [param_arg(k, v) for k, v in plan.params.items()] + list(extra):
        args += ['-p', p]
    return args
