"""Topic names and message types of ground-truth bags (the node's own topics are in `fourds_ros.contract`).

Ground-truth bags (synthetic, converted real footage) use `TOPICS`; stamps are the
frame's time, frame ids follow REP 103/105:
  /camera/image_raw              sensor_msgs/Image (or /camera/image_raw/compressed), frame camera_optical_frame
  /camera/camera_info            sensor_msgs/CameraInfo
  /ground_truth/depth            sensor_msgs/Image 32FC1 metres along the optical axis, NaN invalid
  /ground_truth/pose             geometry_msgs/PoseStamped: camera_optical_frame in world
  /ground_truth/tracks/points    sensor_msgs/PointCloud2, the node's point layout (`contract.POINT_DTYPE`)
  /ground_truth/tracks/boxes     sensor_msgs/PointCloud2, the node's box layout
  /tf_static                     tf2_msgs/TFMessage: camera_link -> camera_optical_frame
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

CLOCK = ("/clock", "rosgraph_msgs/msg/Clock")


def camera_info_for(image_topic: str) -> str:
    """The camera_info topic beside an image topic (image_transport convention)."""
    base = image_topic[: -len("/compressed")] if image_topic.endswith("/compressed") else image_topic
    return base.rsplit("/", 1)[0] + "/camera_info"


def typestore():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_JAZZY)
