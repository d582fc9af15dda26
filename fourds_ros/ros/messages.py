"""numpy <-> ROS 2 message conversions used by the nodes (needs the rclpy message packages)."""
from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseStamped, TransformStamped
from nav_msgs.msg import Odometry
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from ..streaming.preprocess import PixelMap
from ..track_layout import fields_of


def stamp_ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def header_at(ns: int, frame_id: str) -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = divmod(int(ns), 1_000_000_000)
    return header


def depth_image(depth: np.ndarray, header: Header) -> Image:
    """32FC1 metres along the optical axis (REP 118), NaN where invalid."""
    h, w = depth.shape
    return Image(header=header, height=h, width=w, encoding="32FC1", is_bigendian=0, step=w * 4,
                 data=np.ascontiguousarray(depth, dtype="<f4").tobytes())


def scaled_camera_info(source: CameraInfo, pixel_map: PixelMap, height: int, width: int, header: Header) -> CameraInfo:
    """The source camera seen at the depth image's resolution (crop and scale applied to K and P).

    An uncalibrated camera (all-zero K or P) stays uncalibrated.
    """
    k = np.asarray(source.k, np.float64).reshape(3, 3)
    p = np.asarray(source.p, np.float64).reshape(3, 4).copy()
    if k.any():
        k = pixel_map.intrinsics_to_model(k)
    if p.any():
        p[:, :3] = pixel_map.intrinsics_to_model(p[:, :3])
        p[0, 3] /= pixel_map.scale_x
        p[1, 3] /= pixel_map.scale_y
    return CameraInfo(header=header, height=height, width=width, distortion_model=source.distortion_model,
                      d=list(source.d), k=k.ravel().tolist(), r=list(source.r), p=p.ravel().tolist())


def pose_of(matrix: np.ndarray) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in matrix[:3, 3])
    x, y, z, w = Rotation.from_matrix(matrix[:3, :3]).as_quat()
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = float(x), float(y), float(z), float(w)
    return pose


def odometry(matrix: np.ndarray, header: Header, child_frame_id: str) -> Odometry:
    msg = Odometry(header=header, child_frame_id=child_frame_id)
    msg.pose.pose = pose_of(matrix)
    msg.twist.covariance[0] = -1.0  # twist not estimated
    return msg


def pose_stamped(matrix: np.ndarray, header: Header) -> PoseStamped:
    return PoseStamped(header=header, pose=pose_of(matrix))


def transform(matrix: np.ndarray, header: Header, child_frame_id: str) -> TransformStamped:
    msg = TransformStamped(header=header, child_frame_id=child_frame_id)
    pose = pose_of(matrix)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (
        pose.position.x, pose.position.y, pose.position.z)
    msg.transform.rotation = pose.orientation
    return msg


def track_cloud(records: np.ndarray, header: Header) -> PointCloud2:
    fields = [PointField(name=name, offset=offset, datatype=datatype, count=1)
              for name, offset, datatype in fields_of(records.dtype)]
    step = records.dtype.itemsize
    return PointCloud2(header=header, height=1, width=len(records), fields=fields, is_bigendian=False,
                       point_step=step, row_step=step * len(records), data=records.tobytes(), is_dense=True)


def cloud_fields(msg: PointCloud2) -> list[tuple[str, int, int]]:
    return [(f.name, f.offset, f.datatype) for f in msg.fields]


def ray_points(u: np.ndarray, v: np.ndarray, z: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Pixels at depths `z` -> 3D points in the camera optical frame."""
    return np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z], -1)


def depth_at(depth: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    h, w = depth.shape
    return depth[np.clip(np.round(v).astype(int), 0, h - 1), np.clip(np.round(u).astype(int), 0, w - 1)]


def track_markers(header: Header, depth: np.ndarray | None, k: np.ndarray | None,
                  points_uv: np.ndarray | None, boxes: np.ndarray | None) -> MarkerArray:
    """RViz markers for visible tracks, placed in 3D with the depth image (model pixels, model intrinsics)."""
    out = MarkerArray(markers=[Marker(header=header, action=Marker.DELETEALL)])
    if depth is None or k is None:
        return out
    if points_uv is not None and len(points_uv):
        m = Marker(header=header, ns="points", id=0, type=Marker.SPHERE_LIST, action=Marker.ADD)
        m.scale.x = m.scale.y = m.scale.z = 0.03
        m.color.g, m.color.a = 1.0, 1.0
        m.pose.orientation.w = 1.0
        u, v = points_uv[:, 0], points_uv[:, 1]
        xyz = ray_points(u, v, depth_at(depth, u, v), k)
        m.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in xyz if np.isfinite(z)]
        out.markers.append(m)
    if boxes is not None and len(boxes):
        m = Marker(header=header, ns="boxes", id=1, type=Marker.LINE_LIST, action=Marker.ADD)
        m.scale.x = 0.01
        m.color.r, m.color.a = 1.0, 1.0
        m.pose.orientation.w = 1.0
        centre_z = depth_at(depth, (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2)
        for (x0, y0, x1, y1), z in zip(boxes, centre_z):
            if not np.isfinite(z):
                continue
            corners = ray_points(np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]), np.full(4, z), k)
            for a, b in zip(corners, np.roll(corners, -1, axis=0)):
                m.points += [Point(x=float(a[0]), y=float(a[1]), z=float(a[2])),
                             Point(x=float(b[0]), y=float(b[1]), z=float(b[2]))]
        out.markers.append(m)
    return out


def diagnostics(header: Header, name: str, hardware_id: str, values: dict[str, object], level: int = 0,
                message: str = "ok") -> DiagnosticArray:
    status = DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    return DiagnosticArray(header=header, status=[status])
