"""The pure core (no rclpy, no mediapipe): layouts, mapping, model, checkpoints, lifting, windows, tracks."""
