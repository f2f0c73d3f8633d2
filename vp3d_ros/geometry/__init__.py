"""3D geometry of a rig (pure core, no ROS): calibrated cameras, the world frame, fusion, rigid bones."""
