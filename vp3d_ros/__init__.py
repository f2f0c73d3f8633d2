"""vp3d_ros: camera streams to 3D human skeletons (MediaPipe Pose + VideoPose3D lifting).

Layers, bottom up: ``core`` (pure: layouts, model, lifting, windows, tracks), ``geometry``
(pure: calibration, world frame, fusion), ``kinematics`` (OpenSim, optional), ``io`` (bags,
exports), ``vision`` (MediaPipe, drawing), ``nodes`` (thin ROS 2 nodes), ``cli`` and ``apps``
on top; ``training`` trains the lifter. ``core`` and ``geometry`` import neither rclpy nor
mediapipe.
"""

import os

__version__ = '0.1.0'

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(PACKAGE_DIR, 'data')        # the bundled clips and calibration
MODELS_DIR = os.path.join(PACKAGE_DIR, 'models')    # the shipped lifter checkpoints
