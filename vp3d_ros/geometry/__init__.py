"""3D geometry of a rig (pure core, no ROS): calibrated cameras, the level view, the world frame, fusion, rigid bones."""
