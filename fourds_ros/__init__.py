"""fourds_ros: 4D perception (depth, egomotion, point and box tracks) from one video model, for ROS 2."""

__version__ = "0.1.0"
