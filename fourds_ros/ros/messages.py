"""Message conversions shared by the nodes and tools: stamps and headers, poses, track clouds, diagnostics."""
from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose
from rclpy.time import Time
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header
from scipy.spatial.transform import Rotation

from ..contract import fields_of


def stamp_ns(header: Header) -> int:
    return Time.from_msg(header.stamp).nanoseconds


def header_at(ns: int, frame_id: str) -> Header:
    return Header(stamp=Time(nanoseconds=int(ns)).to_msg(), frame_id=frame_id)


def pose_of(matrix: np.ndarray) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in matrix[:3, 3])
    x, y, z, w = Rotation.from_matrix(matrix[:3, :3]).as_quat()
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = float(x), float(y), float(z), float(w)
    return pose


def track_cloud(records: np.ndarray, header: Header) -> PointCloud2:
    """Packed records (`contract`: tracks, depth points) as an unordered PointCloud2."""
    fields = [PointField(name=name, offset=offset, datatype=datatype, count=1)
              for name, offset, datatype in fields_of(records.dtype)]
    step = records.dtype.itemsize
    return PointCloud2(header=header, height=1, width=len(records), fields=fields, is_bigendian=False,
                       point_step=step, row_step=step * len(records), data=records.tobytes(), is_dense=True)


def cloud_fields(msg: PointCloud2) -> list[tuple[str, int, int]]:
    return [(f.name, f.offset, f.datatype) for f in msg.fields]


def diagnostic_status(name: str, hardware_id: str, values: dict[str, object], level: int = 0,
                      message: str = "ok") -> DiagnosticStatus:
    return DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
