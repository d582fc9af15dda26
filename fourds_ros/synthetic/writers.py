"""Writers for synthetic sequences: rosbag2 (mcap, through `rosbags`) and training shards (npz).

Bag topics (all stamped with the frame's time; frame ids REP 103/105):
  /camera/image_raw              sensor_msgs/Image rgb8, frame camera_optical_frame
  /camera/camera_info            sensor_msgs/CameraInfo
  /ground_truth/depth            sensor_msgs/Image 32FC1 metres along the optical axis, NaN invalid
  /ground_truth/pose             geometry_msgs/PoseStamped: camera_optical_frame in world
  /ground_truth/tracks/points    sensor_msgs/PointCloud2, the node's point layout
  /ground_truth/tracks/boxes     sensor_msgs/PointCloud2, the node's box layout
  /tf_static                     tf2_msgs/TFMessage: camera_link -> camera_optical_frame
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..track_layout import fields_of, pack_boxes, pack_points
from .generator import SyntheticSequence

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


def typestore():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_JAZZY)


class BagMessages:
    """Builds `rosbags` message objects (the same layouts as the node's rclpy messages)."""

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

    def camera_info(self, k: np.ndarray, height: int, width: int, stamp_ns: int, frame_id: str):
        roi = self.t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        p = np.zeros((3, 4))
        p[:, :3] = k
        return self.t["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp_ns, frame_id), height=height, width=width, distortion_model="plumb_bob",
            d=np.zeros(5), k=np.asarray(k, np.float64).ravel(), r=np.eye(3).ravel(), p=p.ravel(), binning_x=0,
            binning_y=0, roi=roi)

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


def write_bag(seq: SyntheticSequence, path: Path, overwrite: bool = False) -> Path:
    """Write `seq` as a rosbag2 (mcap) directory at `path`."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} already exists (pass overwrite to replace it)")
        shutil.rmtree(path)
    store = typestore()
    m = BagMessages(store)
    types = {"image": "sensor_msgs/msg/Image", "camera_info": "sensor_msgs/msg/CameraInfo",
             "depth": "sensor_msgs/msg/Image", "pose": "geometry_msgs/msg/PoseStamped",
             "points": "sensor_msgs/msg/PointCloud2", "boxes": "sensor_msgs/msg/PointCloud2",
             "tf_static": "tf2_msgs/msg/TFMessage"}
    frames, height, width = seq.depth.shape
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {key: writer.add_connection(TOPICS[key], msgtype, typestore=store) for key, msgtype in types.items()}

        def put(key: str, stamp: int, msg) -> None:
            writer.write(conns[key], stamp, store.serialize_cdr(msg, types[key]))

        put("tf_static", int(seq.stamps_ns[0]), m.static_optical_transform(int(seq.stamps_ns[0])))
        point_ids = np.arange(len(seq.point_tracks), dtype=np.uint32)
        box_ids = np.arange(len(seq.boxes), dtype=np.uint32)
        for f in range(frames):
            stamp = int(seq.stamps_ns[f])
            put("image", stamp, m.image(seq.rgb[f], "rgb8", stamp, CAMERA_FRAME))
            put("camera_info", stamp, m.camera_info(seq.intrinsics, height, width, stamp, CAMERA_FRAME))
            put("depth", stamp, m.image(seq.depth[f].astype("<f4"), "32FC1", stamp, CAMERA_FRAME))
            put("pose", stamp, m.pose_stamped(seq.world_from_camera[f], stamp, WORLD_FRAME))
            vis = seq.point_visible[:, f]
            put("points", stamp, m.cloud(pack_points(point_ids, seq.point_tracks[:, f], vis.astype(np.uint8),
                                                     vis.astype(np.float32)), stamp, CAMERA_FRAME))
            bvis = seq.box_visible[:, f]
            put("boxes", stamp, m.cloud(pack_boxes(box_ids, seq.boxes[:, f], bvis.astype(np.uint8),
                                                   bvis.astype(np.float32)), stamp, CAMERA_FRAME))
    return path


def write_shard(seq: SyntheticSequence, path: Path) -> Path:
    """A training shard: one compressed npz holding every array of the sequence."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, rgb=seq.rgb, depth=seq.depth.astype(np.float16), intrinsics=seq.intrinsics,
                        world_from_camera=seq.world_from_camera, stamps_ns=seq.stamps_ns,
                        point_tracks=seq.point_tracks, point_visible=seq.point_visible, boxes=seq.boxes,
                        box_visible=seq.box_visible, seed=seq.seed)
    return path
