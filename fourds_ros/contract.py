"""perception_node's contract with the robot: its topics, the layout of its track clouds, the image encodings
it takes. Plain data at the bottom of the package: the node, replay, evaluation, the bag tools and the launch
files all read it here, and it imports nothing of the package.

Conventions (REP 103/105/118): depth is 32FC1 metres along the optical axis, NaN where invalid; poses are the
camera's optical frame in `odom_frame`; track coordinates are pixels of the camera image (column, row; pixel
centres at integers).
"""
from __future__ import annotations

import numpy as np

# Topic name (relative, remapped at launch) -> message type.
NODE_INPUTS = {
    "image": "sensor_msgs/msg/Image",
    "camera_info": "sensor_msgs/msg/CameraInfo",
    "tracks/box_seeds": "sensor_msgs/msg/PointCloud2",
    "tracks/point_seeds": "sensor_msgs/msg/PointCloud2",
}
NODE_OUTPUTS = {
    "depth/image": "sensor_msgs/msg/Image",
    "depth/camera_info": "sensor_msgs/msg/CameraInfo",
    "depth/confidence": "sensor_msgs/msg/Image",
    "depth/points": "sensor_msgs/msg/PointCloud2",
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
# What a replay records of the node (and the launch file's `ros2 bag record` too), and which of those come once
# for every emitted frame.
RECORDED_OUTPUTS = ("depth/image", "depth/camera_info", "depth/confidence", "odometry", "tracks/points", "tracks/boxes",
                    "diagnostics")
PER_FRAME_OUTPUTS = ("depth/image", "depth/confidence", "odometry")

# Image encodings of sensor_msgs/Image the node takes: read as they are, or converted on arrival (YUV, Bayer,
# 16-bit). CompressedImage payloads: what OpenCV decodes to 8-bit grey or colour.
DIRECT_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
CONVERTED_ENCODINGS = ("yuv422", "yuv422_yuy2", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8",
                       "mono16", "rgb16", "bgr16")
ENCODINGS = (*DIRECT_ENCODINGS, *CONVERTED_ENCODINGS)
COMPRESSED_FORMATS = ("jpeg", "png")
# The pseudo-encoding under which a CompressedImage's bytes enter the streaming core.
COMPRESSED = "compressed"


def node_topic(name: str, camera: str = "") -> str:
    """The name the node uses for one of its topics (relative unless global by convention), under a rig
    camera's name (`front/depth/image`); a typo fails here."""
    if name not in NODE_INPUTS and name not in NODE_OUTPUTS:
        raise KeyError(f"{name!r} is not a perception_node topic")
    if name in GLOBAL_NODE_TOPICS:
        return GLOBAL_NODE_TOPICS[name]
    return f"{camera}/{name}" if camera else name


def compressed(topic: str) -> str:
    """The image_transport name of a raw image topic's compressed twin."""
    return f"{topic}/compressed"


# Track clouds (sensor_msgs/PointCloud2): packed little-endian records, one per track, fields in this order.
POINT_DTYPE = np.dtype([("track_id", "<u4"), ("u", "<f4"), ("v", "<f4"), ("visible", "u1"), ("confidence", "<f4")])
BOX_DTYPE = np.dtype([("track_id", "<u4"), ("u_min", "<f4"), ("v_min", "<f4"), ("u_max", "<f4"), ("v_max", "<f4"),
                      ("visible", "u1"), ("confidence", "<f4")])
# The depth's point cloud (`depth/points`): a point per valid depth pixel, metres in the camera's optical frame.
DEPTH_POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("confidence", "<f4")])
# sensor_msgs/PointField datatype codes.
POINTFIELD_TYPES = {np.dtype("u1"): 2, np.dtype("<u4"): 6, np.dtype("<f4"): 7}
_FROM_POINTFIELD = {2: np.dtype("u1"), 6: np.dtype("<u4"), 7: np.dtype("<f4")}


def fields_of(dtype: np.dtype) -> list[tuple[str, int, int]]:
    """(name, offset, PointField datatype) for every field of a packed record dtype."""
    return [(name, dtype.fields[name][1], POINTFIELD_TYPES[dtype.fields[name][0]]) for name in dtype.names]


def pack_points(ids: np.ndarray, uv: np.ndarray, visible: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    out = np.empty(len(ids), POINT_DTYPE)
    out["track_id"], out["u"], out["v"] = ids, uv[:, 0], uv[:, 1]
    out["visible"], out["confidence"] = visible, confidence
    return out


def pack_boxes(ids: np.ndarray, boxes: np.ndarray, visible: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    out = np.empty(len(ids), BOX_DTYPE)
    out["track_id"] = ids
    out["u_min"], out["v_min"], out["u_max"], out["v_max"] = boxes.T
    out["visible"], out["confidence"] = visible, confidence
    return out


def pack_depth_points(xyz: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    out = np.empty(len(xyz), DEPTH_POINT_DTYPE)
    out["x"], out["y"], out["z"] = xyz.T
    out["confidence"] = confidence
    return out


def unpack(fields: list[tuple[str, int, int]], point_step: int, data: bytes, expected: np.dtype) -> np.ndarray:
    """Records of `expected` layout from PointCloud2 fields `(name, offset, datatype)` and bytes.

    Raises ValueError naming the first field that is missing or of another type.
    """
    have = {name: (offset, datatype) for name, offset, datatype in fields}
    for name in expected.names:
        if name not in have:
            raise ValueError(f"PointCloud2 has no field {name!r} (fields: {sorted(have)})")
        if _FROM_POINTFIELD.get(have[name][1]) != expected.fields[name][0]:
            raise ValueError(f"PointCloud2 field {name!r} has datatype {have[name][1]}, "
                             f"expected {POINTFIELD_TYPES[expected.fields[name][0]]}")
    if point_step <= 0 or len(data) % point_step:
        raise ValueError(f"PointCloud2 data of {len(data)} bytes is not a multiple of point_step {point_step}")
    layout = np.dtype({"names": list(expected.names), "formats": [expected.fields[n][0] for n in expected.names],
                       "offsets": [have[n][0] for n in expected.names], "itemsize": point_step})
    return np.frombuffer(data, layout).astype(expected)
