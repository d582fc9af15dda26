"""rclpy adapters: message conversions and nodes (need a ROS 2 Python environment)."""
