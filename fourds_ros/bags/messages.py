"""`rosbags` message objects in the layouts the node's rclpy messages have (no ROS needed)."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from .topics import CAMERA_FRAME
from ..contract import fields_of


class BagMessages:
    def __init__(self, store):
        self.store = store
        self.t = store.types

    def header(self, stamp_ns: int, frame_id: str):
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return self.t["std_msgs/msg/Header"](stamp=self.t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                             frame_id=frame_id)

    def image(self, array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
        h, w = array.shape[:2]
        data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
        return self.t["sensor_msgs/msg/Image"](header=self.header(stamp_ns, frame_id), height=h, width=w,
                                               encoding=encoding, is_bigendian=0, step=data.size // h, data=data)

    def compressed_image(self, data: bytes, fmt: str, stamp_ns: int, frame_id: str):
        """`fmt` as image_transport writes it, e.g. 'jpeg' or 'png'."""
        return self.t["sensor_msgs/msg/CompressedImage"](header=self.header(stamp_ns, frame_id), format=fmt,
                                                         data=np.frombuffer(data, np.uint8))

    def camera_info(self, k: np.ndarray, height: int, width: int, stamp_ns: int, frame_id: str,
                    distortion_model: str = "plumb_bob", d: np.ndarray | None = None):
        roi = self.t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        p = np.zeros((3, 4))
        p[:, :3] = k
        return self.t["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp_ns, frame_id), height=height, width=width, distortion_model=distortion_model,
            d=np.zeros(5) if d is None else np.asarray(d, np.float64), k=np.asarray(k, np.float64).ravel(),
            r=np.eye(3).ravel(), p=p.ravel(), binning_x=0, binning_y=0, roi=roi)

    def pose(self, matrix: np.ndarray):
        t = self.t
        x, y, z, w = Rotation.from_matrix(matrix[:3, :3]).as_quat()
        return t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](x=float(matrix[0, 3]),
                                                                                  y=float(matrix[1, 3]),
                                                                                  z=float(matrix[2, 3])),
                                           orientation=t["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w))

    def pose_stamped(self, matrix: np.ndarray, stamp_ns: int, frame_id: str):
        return self.t["geometry_msgs/msg/PoseStamped"](header=self.header(stamp_ns, frame_id), pose=self.pose(matrix))

    def cloud(self, records: np.ndarray, stamp_ns: int, frame_id: str):
        field = self.t["sensor_msgs/msg/PointField"]
        step = records.dtype.itemsize
        return self.t["sensor_msgs/msg/PointCloud2"](
            header=self.header(stamp_ns, frame_id), height=1, width=len(records),
            fields=[field(name=n, offset=o, datatype=d, count=1) for n, o, d in fields_of(records.dtype)],
            is_bigendian=False, point_step=step, row_step=step * len(records),
            data=np.frombuffer(records.tobytes(), np.uint8), is_dense=True)

    def static_optical_transform(self, stamp_ns: int):
        t = self.t
        # camera_link (x forward, y left, z up) -> optical (x right, y down, z forward), REP 103.
        rotation = t["geometry_msgs/msg/Quaternion"](x=-0.5, y=0.5, z=-0.5, w=0.5)
        transform = t["geometry_msgs/msg/Transform"](translation=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                                                     rotation=rotation)
        stamped = t["geometry_msgs/msg/TransformStamped"](header=self.header(stamp_ns, "camera_link"),
                                                          child_frame_id=CAMERA_FRAME, transform=transform)
        return t["tf2_msgs/msg/TFMessage"](transforms=[stamped])
