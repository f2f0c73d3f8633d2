"""vp3d_ros: camera streams to 3D human skeletons (MediaPipe Pose + VideoPose3D lifting).

The top-level modules are the pure core (no rclpy, no mediapipe): skeleton layouts,
keypoint mapping, the temporal model, checkpoints, lifting, windowing and the
LandmarkRecord format. ROS nodes live in ``vp3d_ros.nodes`` and stay thin.
"""

__version__ = '0.1.0'
