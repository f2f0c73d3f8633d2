#!/usr/bin/env python3
"""Build a MediaPipe pose_landmarker .task bundle offline (see vp3d_ros/vision/pose_task_bundle.py).

Usage: tools/make_pose_task.py [OUT.task] [--verify]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from vp3d_ros.vision.pose_task_bundle import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
