"""vp3d_ros on a camera rig: one pose2d per camera, one lifter, optionally the recorder.

  ros2 launch vp3d_ros vp3d.launch.py cameras:=cam01,cam02 record:=true
  ros2 launch vp3d_ros vp3d.launch.py video:=/path/clip.mp4       # a video as camera 'cam01'
  ros2 launch vp3d_ros vp3d.launch.py cameras:=cam01,cam02 calibration:=calib.toml \
      video:=/path/a.mp4,/path/b.mp4    # one video per camera, in lockstep: fused skeletons
  ros2 launch vp3d_ros vp3d.launch.py cameras:=cam01,cam02 calibration:=calib.toml \
      kinematics:=angles/subject_scaled.osim   # + live joint angles (/kinematics/joint_states)
  ros2 launch vp3d_ros vp3d.launch.py estimate_ground:=true kinematics:=generic
      # one camera, no calibration: ground from the subject, live joint angles

The node set comes from ``vp3d_ros.core.topology`` (as for ``python -m vp3d_ros.apps.rig``).
Cameras are namespaces: pose2d in /<cam> reads /<cam>/<image_topic> (default image_raw)
and /<cam>/camera_info, and publishes /<cam>/keypoints_2d; the lifter publishes
/<cam>/skeleton_3d. Parameters come from config/vp3d.yaml (or params_file:=...); the
arguments below override it.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vp3d_ros.core.topology import RigOptions, parse_cameras, plan_nodes


def _nodes(context):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    arch = {}
    if arg('filter_widths'):
        arch['filter_widths'] = [int(x) for x in arg('filter_widths').replace(',', ' ').split()]
    if arg('channels'):
        arch['channels'] = int(arg('channels'))
    if arg('causal'):
        arch['causal'] = arg('causal')  # 'true' | 'false' (the node reads it dynamically)
    opts = RigOptions(cameras=parse_cameras(arg('cameras')), video=arg('video') or None,
                      loop=arg('loop').lower() == 'true',
                      record=arg('record').lower() == 'true', bag_dir=arg('bag_dir'),
                      checkpoint=arg('checkpoint'), mode=arg('mode'),
                      image_topic=arg('image_topic'), calibration=arg('calibration'),
                      kinematics=arg('kinematics'),
                      estimate_ground=arg('estimate_ground').lower() == 'true',
                      lifter_arch=arch)
    common = [arg('params_file'), {'use_sim_time': arg('use_sim_time').lower() == 'true'}]
    return [Node(package='vp3d_ros', executable=n.executable, name=n.name,
                 namespace=n.namespace or None, output='screen',
                 parameters=common + [n.params], remappings=list(n.remaps))
            for n in plan_nodes(opts)]


def generate_launch_description():
    share = get_package_share_directory('vp3d_ros')
    args = [
        ('cameras', 'cam01', 'comma-separated camera namespaces'),
        ('image_topic', 'image_raw', 'image topic inside each camera namespace'),
        ('video', '', 'play this video file as the first camera (video_source) instead of a '
                      'camera; one file per camera, comma-separated: a synchronised rig played '
                      'in lockstep (one stamp per instant)'),
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
        ('estimate_ground', 'false', 'without a calibration: start the world node all the '
                                     'same, each camera in a ground frame its subject tells '
                                     '(<cam>_ground: gravity and floor from the first upright '
                                     'frames)'),
        ('kinematics', '', "with calibration (or estimate_ground): also the kinematics node "
                           "(OpenSim IK of the fused skeleton, else of the first camera's world "
                           "skeleton -> /kinematics/joint_states): the subject's scaled .osim "
                           "from vp3d-kinematics, or 'generic' for the bundled model"),
    ]
    return LaunchDescription([DeclareLaunchArgument(n, default_value=d, description=h)
                              for n, d, h in args] + [OpaqueFunction(function=_nodes)])
