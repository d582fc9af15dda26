"""Every topic name and message type the package reads or writes, in one place.

Ground-truth bags (synthetic, converted real footage) use `TOPICS`; stamps are the
frame's time, frame ids follow REP 103/105:
  /camera/image_raw              sensor_msgs/Image (or /camera/image_raw/compressed), frame camera_optical_frame
  /camera/camera_info            sensor_msgs/CameraInfo
  /ground_truth/depth            sensor_msgs/Image 32FC1 metres along the optical axis, NaN invalid
  /ground_truth/pose             geometry_msgs/PoseStamped: camera_optical_frame in world
  /ground_truth/tracks/points    sensor_msgs/PointCloud2, the node's point layout (`track_layout`)
  /ground_truth/tracks/boxes     sensor_msgs/PointCloud2, the node's box layout
  /tf_static                     tf2_msgs/TFMessage: camera_link -> camera_optical_frame

The perception node's own topics (relative names, remapped at launch) are `NODE_INPUTS`
and `NODE_OUTPUTS`.
"""
from __future__ import annotations

CAMERA_FRAME = "camera_optical_frame"
WORLD_FRAME = "world"

TOPICS = {
    "image": "/camera/image_raw",
    "camera_info": "/camera/camera_info",
    "depth": "/ground_truth/depth",
    "pose": "/ground_truth/pose",
    "points": "/ground_truth/tracks/points",
    "boxes": "/ground_truth/tracks/boxes",
    "tf_static": "/tf_static",
}
TYPES = {
    "image": "sensor_msgs/msg/Image",
    "compressed_image": "sensor_msgs/msg/CompressedImage",
    "camera_info": "sensor_msgs/msg/CameraInfo",
    "depth": "sensor_msgs/msg/Image",
    "pose": "geometry_msgs/msg/PoseStamped",
    "points": "sensor_msgs/msg/PointCloud2",
    "boxes": "sensor_msgs/msg/PointCloud2",
    "tf_static": "tf2_msgs/msg/TFMessage",
}

# perception_node: topic -> message type.
NODE_INPUTS = {
    "image": "sensor_msgs/msg/Image",
    "camera_info": "sensor_msgs/msg/CameraInfo",
    "tracks/box_seeds": "sensor_msgs/msg/PointCloud2",
    "tracks/point_seeds": "sensor_msgs/msg/PointCloud2",
}
NODE_OUTPUTS = {
    "depth/image": "sensor_msgs/msg/Image",
    "depth/camera_info": "sensor_msgs/msg/CameraInfo",
    "odometry": "nav_msgs/msg/Odometry",
    "pose": "geometry_msgs/msg/PoseStamped",
    "path": "nav_msgs/msg/Path",
    "tracks/points": "sensor_msgs/msg/PointCloud2",
    "tracks/boxes": "sensor_msgs/msg/PointCloud2",
    "tracks/markers": "visualization_msgs/msg/MarkerArray",
    "tracks/detections": "vision_msgs/msg/Detection2DArray",
    "diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    "tf": "tf2_msgs/msg/TFMessage",
}
# Absolute names: diagnostics and tf are global by convention.
GLOBAL_NODE_TOPICS = {"diagnostics": "/diagnostics", "tf": "/tf"}
# What replay records of the node, and which of those come once for every emitted frame.
RECORDED_OUTPUTS = ("depth/image", "odometry", "tracks/points", "tracks/boxes", "diagnostics")
PER_FRAME_OUTPUTS = ("depth/image", "odometry")
CLOCK = ("/clock", "rosgraph_msgs/msg/Clock")


def node_topic(name: str) -> str:
    """The name the node uses for one of its topics (relative unless global by convention); a typo fails here."""
    if name not in NODE_INPUTS and name not in NODE_OUTPUTS:
        raise KeyError(f"{name!r} is not a perception_node topic")
    return GLOBAL_NODE_TOPICS.get(name, name)


def compressed(topic: str) -> str:
    """The image_transport name of a raw image topic's compressed twin."""
    return f"{topic}/compressed"


def camera_info_for(image_topic: str) -> str:
    """The camera_info topic beside an image topic (image_transport convention)."""
    base = image_topic[: -len("/compressed")] if image_topic.endswith("/compressed") else image_topic
    return base.rsplit("/", 1)[0] + "/camera_info"


def typestore():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_JAZZY)
