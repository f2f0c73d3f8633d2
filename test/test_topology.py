"""One description of the rig's node set (vp3d_ros.core.topology), used by the launch file and
by ``python -m vp3d_ros.apps.rig``: what starts for which options, and the processes' arguments."""
import ast
import os

import pytest

from conftest import REPO
from vp3d_ros.apps import rig
from vp3d_ros.core.topology import RigOptions, param_arg, parse_cameras, plan_nodes, ros_args


def _names(opts):
    return [(n.namespace, n.name) for n in plan_nodes(opts)]


def test_node_set_follows_the_options():
    assert _names(RigOptions(['cam01'])) == [('cam01', 'pose2d'), ('', 'lifter')]
    assert _names(RigOptions(['cam01', 'cam02'], video='', record=True, calibration='c.toml')) == [
        ('cam01', 'video_source'), ('cam01', 'pose2d'), ('cam02', 'pose2d'), ('', 'lifter'),
        ('', 'recorder'), ('', 'world'), ('', 'fusion')]
    # one camera with a calibration: its world skeleton, nothing to fuse
    assert ('', 'fusion') not in _names(RigOptions(['cam01'], calibration='c.toml'))


def test_kinematics_node_follows_the_world_skeletons():
    fused = {n.name: n for n in plan_nodes(RigOptions(['c1', 'c2'], calibration='/r.toml',
                                                      kinematics='/s_scaled.osim'))}
    assert fused['kinematics'].params == {'input_topic': '/skeleton_3d/fused',
                                          'model': '/s_scaled.osim'}
    one = {n.name: n for n in plan_nodes(RigOptions(['c1'], calibration='/r.toml',
                                                    kinematics='generic'))}
    assert one['kinematics'].params == {'input_topic': '/c1/skeleton_3d/world'}
    assert 'kinematics' not in {n.name for n in plan_nodes(RigOptions(['c1'],
                                                                      calibration='/r.toml'))}
    with pytest.raises(ValueError, match='needs a calibration'):
        plan_nodes(RigOptions(['c1'], kinematics='generic'))
    # one camera without a calibration: the world node estimates the ground from the subject
    ground = {n.name: n for n in plan_nodes(RigOptions(['c1'], estimate_ground=True,
                                                       kinematics='generic'))}
    assert ground['world'].params == {'cameras': ['c1'], 'estimate_ground': True}
    assert ground['kinematics'].params == {'input_topic': '/c1/skeleton_3d/world'}
    assert 'fusion' not in {n.name for n in plan_nodes(RigOptions(['c1', 'c2'],
                                                                  estimate_ground=True))}
    with pytest.raises(ValueError, match='without a calibration'):
        plan_nodes(RigOptions(['c1'], estimate_ground=True, calibration='/r.toml'))


def test_parameters_only_where_an_option_sets_them():
    nodes = {n.name: n for n in plan_nodes(RigOptions(['cam01', 'cam02'], video='', record=True))}
    assert nodes['lifter'].params == {'cameras': ['cam01', 'cam02'], 'mode': 'causal'}
    assert 'video' not in nodes['video_source'].params        # '' = the bundled clip
    assert nodes['video_source'].params['wait_for_topics'] == ['keypoints_2d',
                                                               '/cam01/skeleton_3d']
    lifter = next(n for n in plan_nodes(RigOptions(['c'], checkpoint='/m.bin', mode='symmetric',
                                                   lifter_arch={'channels': 1024}))
                  if n.name == 'lifter')
    assert lifter.params == {'cameras': ['c'], 'mode': 'symmetric', 'channels': 1024,
                             'checkpoint': '/m.bin'}
    # a calibration reaches the lifter too (its level view) besides world and fusion
    nodes = {n.name: n for n in plan_nodes(RigOptions(['c1', 'c2'], calibration='/r.toml'))}
    assert all(nodes[n].params['calibration'] == '/r.toml' for n in ('lifter', 'world', 'fusion'))


def test_ros_args_and_rig_commands():
    assert param_arg('cameras', ['cam01', 'cam02']) == 'cameras:=[cam01, cam02]'
    assert param_arg('loop', False) == 'loop:=false'
    pose2d = next(n for n in plan_nodes(RigOptions(['cam07'], image_topic='color')))
    assert ros_args(pose2d, 'p.yaml', ['x:=1']) == [
        '--ros-args', '-r', '__node:=pose2d', '--params-file', 'p.yaml', '-r', '__ns:=/cam07',
        '-r', 'image:=color', '-p', 'x:=1']
    specs = rig.plan(['cam01'], video='clip.mp4', record=True, video_params=['max_frames:=3'])
    cmd = specs[0].command('p.yaml', ['use_sim_time:=true'])
    assert cmd[1:3] == ['-m', 'vp3d_ros.nodes.video_source_node']
    assert cmd[-6:] == ['-p', 'video:=clip.mp4', '-p', 'max_frames:=3', '-p',
                        'use_sim_time:=true']
    with pytest.raises(ValueError):
        parse_cameras(' , /')


def test_launch_file_builds_its_nodes_from_the_topology():
    """The launch file has no node list of its own (launch_ros is not a wheel: read it)."""
    path = os.path.join(REPO, 'launch', 'vp3d.launch.py')
    tree = ast.parse(open(path).read())
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name)}
    assert 'plan_nodes' in calls and 'RigOptions' in calls
    executables = [k for n in ast.walk(tree) if isinstance(n, ast.keyword)
                   and n.arg == 'executable' for k in [ast.unparse(n.value)]]
    assert executables == ['n.executable'], executables


def test_one_video_per_camera_plays_a_synchronised_rig():
    """``video`` with one file per camera: one video_source plays them in lockstep on every
    camera's image topic and waits for every camera's pipeline (and the fused skeleton when
    recording); a count that matches neither one nor the cameras is refused."""
    cams = ['cam01', 'cam02', 'cam03']
    nodes = plan_nodes(RigOptions(cams, video='a.mp4, b.mp4,c.mp4', record=True,
                                  calibration='c.toml', image_topic='color'))
    assert [(n.namespace, n.name) for n in nodes][:4] == [
        ('', 'video_source'), ('cam01', 'pose2d'), ('cam02', 'pose2d'), ('cam03', 'pose2d')]
    video = nodes[0]
    assert video.params['video'] == 'a.mp4,b.mp4,c.mp4' and video.params['cameras'] == cams
    assert video.remaps == tuple((f'/{c}/image', f'/{c}/color') for c in cams)
    assert video.params['wait_for_topics'] == (
        [f'/{c}/keypoints_2d' for c in cams] + [f'/{c}/skeleton_3d' for c in cams]
        + ['/skeleton_3d/fused'])
    args = ros_args(video, 'p.yaml')
    assert args[args.index('-r', 4):args.index('-r', 4) + 2] == ['-r', '/cam01/image:=/cam01/color']
    with pytest.raises(ValueError, match='2 videos for 3 cameras'):
        plan_nodes(RigOptions(cams, video='a.mp4,b.mp4'))
