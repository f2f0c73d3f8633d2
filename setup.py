"""ament_python build description of vp3d_ros (colcon build / pip install)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'vp3d_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={PACKAGE: ['models/*.bin', 'models/*.yaml', 'data/*', 'data/**/*',
                           'kinematics/*.osim', 'kinematics/LICENSE_*']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml') + glob('config/*.xml')),
    ],
    install_requires=['setuptools'],
    extras_require={'test': ['pytest']},
    zip_safe=False,
    maintainer='vp3d_ros developers',
    maintainer_email='vp3d-ros@example.org',
    description='Camera streams to 3D human skeletons: MediaPipe Pose 2D + VideoPose3D lifting, as ROS 2 nodes.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'vp3d-lift = vp3d_ros.cli.lift:main',
            'vp3d-fuse = vp3d_ros.cli.fuse:main',
            'vp3d-rig = vp3d_ros.apps.rig:main',
            'pose2d_node = vp3d_ros.nodes.pose2d_node:main',
            'lifter_node = vp3d_ros.nodes.lifter_node:main',
            'fusion_node = vp3d_ros.nodes.fusion_node:main',
            'world_node = vp3d_ros.nodes.world_node:main',
            'recorder_node = vp3d_ros.nodes.recorder_node:main',
            'video_source = vp3d_ros.nodes.video_source_node:main',
            'vp3d-export = vp3d_ros.cli.export:main',
            'vp3d-offline = vp3d_ros.cli.offline:main',
            'offline = vp3d_ros.cli.offline:main',
            'vp3d-make-pose-task = vp3d_ros.vision.pose_task_bundle:main',
            'vp3d-kinematics = vp3d_ros.cli.kinematics:main',
            'kinematics_node = vp3d_ros.nodes.kinematics_node:main',
        ],
    },
)
