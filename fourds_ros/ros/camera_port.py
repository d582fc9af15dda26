"""One camera's side of perception_node: its subscriptions (image, camera_info, track seeds) into its
`CameraStream`, and its publishers (`outputs.NodeOutputs`), all under the camera's name (`<name>/image`,
`<name>/depth/image`, ...; no prefix for the single unnamed camera).
"""
from __future__ import annotations

import re
import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from ..contract import BOX_DTYPE, COMPRESSED, POINT_DTYPE, compressed, node_topic, unpack
from ..streaming import ImageError
from ..streaming.camera_stream import CameraLog, CameraStream
from . import messages
from .outputs import Detection2DArray, NodeOutputs


class CameraPort:
    def __init__(self, node: Node, stream: CameraStream, params: dict, in_qos: QoSProfile, out_qos: QoSProfile,
                 sizes: dict[str, tuple[int, int]]):
        self.node, self.stream, self.params, self.name = node, stream, params, stream.name
        self.log = CameraLog(node.get_logger(), self.name)
        self.sizes = sizes  # every camera's image size, shared: a rig says when its cameras differ
        topic = lambda name: node_topic(name, self.name)  # noqa: E731
        odom_frame = f"{self.name}_{params['odom_frame']}" if self.name else params["odom_frame"]
        self.outputs = NodeOutputs(node, out_qos, odom_frame, params["child_frame_id"], params["path_length"],
                                   params["window_hop"], params["publish_tf"], params["min_confidence"],
                                   params["publish_points"], params["points_stride"], topic, self.log)
        self.reported_encodings: set[str] = set()
        self.rejections: dict[str, tuple[float, int]] = {}  # problem kind -> (last logged, rejected since)
        self.reported_distortion_models: set[str] = set()
        self.camera_info_seen = False
        self.waiting: list[tuple[str, int, int, int, object]] = []  # images held for the first camera_info
        if params["image_transport"] == "compressed":  # the image_transport convention: <image>/compressed
            node.create_subscription(CompressedImage, compressed(topic("image")), self._on_compressed, in_qos)
        else:
            node.create_subscription(Image, topic("image"), self._on_image, in_qos)
        info = node.create_subscription(CameraInfo, topic("camera_info"), self._on_camera_info, in_qos)
        self.camera_info_topic = info.topic_name
        if params["box_seed_type"] == "detection2d" and Detection2DArray is not None:
            node.create_subscription(Detection2DArray, topic("tracks/box_seeds"), self._on_box_detections, 10)
        else:
            node.create_subscription(PointCloud2, topic("tracks/box_seeds"), self._on_box_cloud, 10)
        node.create_subscription(PointCloud2, topic("tracks/point_seeds"), self._on_point_cloud, 10)

    # Images -----------------------------------------------------------------------
    # Both take rclpy's message info: its `received_timestamp` (system clock, ns) is when the middleware received the
    # frame, so the tracking can tell how long the frame waited in the subscription's queue.
    def _on_image(self, msg: Image, info: dict) -> None:
        self._push(msg.encoding, msg.height, msg.width, msg.step, _received_ns(info), msg)

    def _on_compressed(self, msg: CompressedImage, info: dict) -> None:
        """jpeg/png frames (the compressed image_transport), decoded by the pipeline's intake."""
        self._push(COMPRESSED, 0, 0, 0, _received_ns(info), msg)

    def _push(self, encoding: str, height: int, width: int, step: int, received_ns: int | None, msg) -> None:
        if self._wait_for_camera_info(encoding, height, width, step, received_ns, msg):
            return
        try:
            self.stream.push(encoding, height, width, step, msg.data, Time.from_msg(msg.header.stamp).nanoseconds,
                             msg.header.frame_id, received_ns)
        except ImageError as exc:
            if "unsupported encoding" in str(exc):
                if encoding not in self.reported_encodings:  # once per encoding, not per frame
                    self.reported_encodings.add(encoding)
                    self.log.error(f"rejecting images: {exc}")
            else:
                self._report_rejection(exc)
            return
        self._note_size()

    def _note_size(self) -> None:
        """A rig whose cameras differ in size works (each camera is resized to the model's input on its own);
        said once per camera, since a mix-up of topics looks the same."""
        size = self.stream.intake.source_size
        if size is None or self.sizes.get(self.name) == size:
            return
        self.sizes[self.name] = size
        others = {name: s for name, s in self.sizes.items() if name != self.name and s != size}
        if others:
            self.log.info(f"{size[1]}x{size[0]} images, unlike " + ", ".join(
                f"{name} ({s[1]}x{s[0]})" for name, s in others.items()) +
                "; each camera is resized to the model's input on its own")

    def _wait_for_camera_info(self, *frame) -> bool:
        """Hold images (True: this one is held) while camera_info is published but has not arrived: a node
        started beside a running camera gets an image before its camera_info as often as not, and the first
        windows would track without intrinsics. Held images go on when it arrives, after `camera_info_wait_s` of
        their stamps, or when a window's worth is held."""
        wait_s = self.params["camera_info_wait_s"]
        if self.camera_info_seen or wait_s <= 0 or not self.node.count_publishers(self.camera_info_topic):
            self._release_waiting()
            return False
        self.waiting.append(frame)
        first = Time.from_msg(self.waiting[0][-1].header.stamp).nanoseconds
        waited_s = (Time.from_msg(frame[-1].header.stamp).nanoseconds - first) * 1e-9
        if waited_s > wait_s or len(self.waiting) > self.params["window_len"]:  # bounded in time and memory
            self.log.warning(f"no camera_info within {wait_s:g} s of the first image although it is published: "
                             f"going on without intrinsics until it comes")
            self.camera_info_seen = True
            self._release_waiting()
        return True

    def _release_waiting(self) -> None:
        if not self.waiting:
            return
        waiting, self.waiting = self.waiting, []
        for frame in waiting:
            self._push(*frame)

    def _report_rejection(self, exc: ImageError) -> None:
        """One line per kind of problem every 5 s, with how many of that kind were rejected in between: a
        stream of broken messages must not flood the log, and each kind of problem is still named."""
        kind = re.sub(r"\d+", "#", str(exc))  # the problem, whatever the sizes
        now = time.monotonic()
        last, suppressed = self.rejections.get(kind, (-1e9, 0))
        if now - last < 5.0:
            self.rejections[kind] = (last, suppressed + 1)
            return
        more = f" ({suppressed} more like it in the last {now - last:.0f} s)" if suppressed else ""
        self.log.warning(f"rejecting an image: {exc}{more}")
        self.rejections[kind] = (now, 0)

    # camera_info ------------------------------------------------------------------
    def _on_camera_info(self, msg: CameraInfo) -> None:
        k = np.asarray(msg.k, np.float64).reshape(3, 3)
        distortion = (msg.distortion_model, np.asarray(msg.d, np.float64)) if np.any(msg.d) else None
        try:
            self.stream.set_camera_matrix(k, distortion, (msg.height, msg.width))
        except ValueError as exc:  # an unknown distortion model: the images go to the model as they are
            if msg.distortion_model not in self.reported_distortion_models:
                self.reported_distortion_models.add(msg.distortion_model)
                self.log.error(f"not rectifying: {exc}")
            self.stream.set_camera_matrix(k)
        rectified = self.stream.camera_matrix
        if distortion is not None and rectified is not None and not np.array_equal(rectified, k):
            # The depth image describes the rectified frames: a pinhole without distortion.
            msg = CameraInfo(header=msg.header, height=msg.height, width=msg.width, distortion_model="plumb_bob",
                             d=[0.0] * 5, k=rectified.ravel().tolist(), r=list(msg.r),
                             p=np.hstack([rectified, np.zeros((3, 1))]).ravel().tolist())
        self.outputs.camera_info = msg
        self.camera_info_seen = True
        self._release_waiting()

    # Track seeds --------------------------------------------------------------------
    def _seed_records(self, msg: PointCloud2, layout) -> np.ndarray | None:
        try:
            return unpack(messages.cloud_fields(msg), msg.point_step, bytes(msg.data), layout)
        except ValueError as exc:
            self.log.warning(f"ignoring track seeds: {exc}")
            return None

    def _on_box_cloud(self, msg: PointCloud2) -> None:
        """Box seeds; each record's track_id becomes the id of the new track."""
        records = self._seed_records(msg, BOX_DTYPE)
        stamp = messages.stamp_ns(msg.header)
        for r in records if records is not None else ():
            self.stream.add_box_seed(stamp, np.array([r["u_min"], r["v_min"], r["u_max"], r["v_max"]]),
                                     int(r["track_id"]))

    def _on_point_cloud(self, msg: PointCloud2) -> None:
        """Point seeds (the point layout); each record's track_id becomes the id of the new track."""
        records = self._seed_records(msg, POINT_DTYPE)
        stamp = messages.stamp_ns(msg.header)
        for r in records if records is not None else ():
            self.stream.add_point_seed(stamp, np.array([r["u"], r["v"]]), int(r["track_id"]))

    def _on_box_detections(self, msg) -> None:
        stamp = messages.stamp_ns(msg.header)
        for det in msg.detections:
            c, w, h = det.bbox.center.position, det.bbox.size_x, det.bbox.size_y
            self.stream.add_box_seed(stamp, np.array([c.x - w / 2, c.y - h / 2, c.x + w / 2, c.y + h / 2]))

    # Health -------------------------------------------------------------------------
    def health(self) -> dict[str, object]:
        return {**self.stream.health(), "camera_info": "received" if self.camera_info_seen and
                self.outputs.camera_info is not None else "none"}


def _received_ns(info: dict) -> int | None:
    """The middleware's receive time of a message (system clock, ns); None where it gives none (0 or absent)."""
    return info.get("received_timestamp") or None
