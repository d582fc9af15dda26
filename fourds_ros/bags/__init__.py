"""Recorded data: rosbag2 / ROS 1 bags in and out (rosbags, no ROS needed), topic names, and converters from
dataset layouts (TUM RGB-D, EuRoC, KITTI, image folders, videos) into ground-truth bags."""
