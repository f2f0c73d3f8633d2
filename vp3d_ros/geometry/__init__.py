"""3D geometry of a rig (pure core, no ROS): calibrated cameras, the level view, the world frame and the ground without calibration, fusion and fused people, rigid bones."""
