"""Thin ROS 2 nodes over the pure core: pose2d, lifter, recorder, video_source."""
