"""vp3d_ros on a camera rig: one pose2d per camera, one lifter, optionally the recorder.

  ros2 launch vp3d_ros vp3d.launch.py cameras:=cam01,cam02 record:=true
  ros2 launch vp3d_ros vp3d.launch.py video:=/path/clip.mp4       # a video as camera 'cam01'

Cameras are namespaces: pose2d in /<cam> reads /<cam>/<image_topic> (default image_raw)
and /<cam>/camera_info, and publishes /<cam>/keypoints_2d; the lifter publishes
/<cam>/skeleton_3d. Parameters come from config/vp3d.yaml (or params_file:=...); the
arguments below override it.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _nodes(context):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    cameras = [c.strip().strip('/') for c in arg('cameras').split(',') if c.strip()]
    if not cameras:
        raise RuntimeError('cameras:= needs at least one camera namespace')
    params_file = arg('params_file')
    sim = {'use_sim_time': arg('use_sim_time').lower() == 'true'}
    arch = {}
    if arg('filter_widths'):
        arch['filter_widths'] = [int(x) for x in arg('filter_widths').replace(',', ' ').split()]
    if arg('channels'):
        arch['channels'] = int(arg('channels'))
    if arg('causal'):
        arch['causal'] = arg('causal')
    lifter_params = {'cameras': cameras, 'checkpoint': arg('checkpoint'), 'mode': arg('mode'), **arch}
    actions = []
    video = arg('video')
    record = arg('record').lower() == 'true'
    if video:
        actions.append(Node(package='vp3d_ros', executable='video_source', name='video_source',
                            namespace=cameras[0], output='screen',
                            parameters=[params_file, sim, {
                                'video': video, 'loop': arg('loop') == 'true',
                                # play once the pipeline is up (and recording), not into the void
                                'wait_for_topics': ['keypoints_2d'] + (
                                    [f'/{cameras[0]}/skeleton_3d'] if record else [])}],
                            remappings=[('image', arg('image_topic'))]))
    for cam in cameras:
        actions.append(Node(package='vp3d_ros', executable='pose2d_node', name='pose2d',
                            namespace=cam, output='screen', parameters=[params_file, sim],
                            remappings=[('image', arg('image_topic'))]))
    actions.append(Node(package='vp3d_ros', executable='lifter_node', name='lifter',
                        output='screen', parameters=[params_file, sim, lifter_params]))
    actions.append(Node(package='vp3d_ros', executable='recorder_node', name='recorder',
                        output='screen', condition=IfCondition(LaunchConfiguration('record')),
                        parameters=[params_file, sim, {'bag_dir': arg('bag_dir')}]))
    if arg('calibration'):  # each camera's skeleton in the world: /<cam>/skeleton_3d/world
        actions.append(Node(package='vp3d_ros', executable='world_node', name='world',
                            output='screen', parameters=[params_file, sim, {
                                'cameras': cameras, 'calibration': arg('calibration')}]))
    if arg('calibration') and len(cameras) >= 2:  # one fused world skeleton from all cameras
        actions.append(Node(package='vp3d_ros', executable='fusion_node', name='fusion',
                            output='screen', parameters=[params_file, sim, {
                                'cameras': cameras, 'calibration': arg('calibration')}]))
    return actions


def generate_launch_description():
    share = get_package_share_directory('vp3d_ros')
    args = [
        ('cameras', 'cam01', 'comma-separated camera namespaces'),
        ('image_topic', 'image_raw', 'image topic inside each camera namespace'),
        ('video', '', 'play this video file as the first camera (video_source) instead of a camera'),
        ('loop', 'false', 'loop the video'),
        ('params_file', os.path.join(share, 'config', 'vp3d.yaml'), 'parameter file'),
        ('checkpoint', '', "lifter checkpoint ('' = shipped default)"),
        ('mode', 'causal', 'default checkpoint kind: causal | symmetric'),
        ('filter_widths', '', 'architecture of an official checkpoint, e.g. 3,3,3,3,3'),
        ('channels', '', 'channels of an official checkpoint, e.g. 1024'),
        ('causal', '', 'true/false for an official checkpoint'),
        ('record', 'false', 'start the recorder'),
        ('bag_dir', 'vp3d_bags', 'where the recorder writes bags'),
        ('use_sim_time', 'false', 'use /clock (bag replay with --clock)'),
        ('calibration', '', 'calibration file of the cameras (Pose2Sim/Anipose TOML, JSON, '
                            'YAML): starts the world node (/<cam>/skeleton_3d/world), and '
                            'with two or more cameras the fusion node'),
    ]
    return LaunchDescription([DeclareLaunchArgument(n, default_value=d, description=h)
                              for n, d, h in args] + [OpaqueFunction(function=_nodes)])
