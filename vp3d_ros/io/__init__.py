"""Files in and out: rosbag2 (LandmarkRecord bags) and the CSV / TRC / npz exports of their tracks."""
