"""Thin ROS 2 nodes over the core (pose2d, lifter, world, fusion, kinematics, recorder, video_source) and their sensor_msgs glue."""
