"""Images: MediaPipe Pose behind one interface, the per-camera 2D stage, drawing (OpenCV)."""
