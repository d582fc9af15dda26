"""perception_node: camera images in; depth, egomotion, tracks and diagnostics out.

A thin rclpy adapter over `fourds_ros.streaming.StreamingPipeline`: the image
callback hands bytes to the pipeline (never waiting for inference); the
pipeline's worker thread hands each frame's output to `outputs.NodeOutputs`,
which publishes it with that frame's stamp and frame id.
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from ..contract import BOX_DTYPE, POINT_DTYPE, compressed, node_topic, unpack
from ..runtime import ALL_PRECISIONS, BACKENDS, BackendError, backend_options, create_backend, default_model_dir
from ..contract import COMPRESSED
from ..streaming import ImageError, StreamConfig, StreamingPipeline, settings
from ..streaming.settings import Setting
from . import messages
from .entry_point import run_node
from .outputs import Detection2DArray, NodeOutputs
from .parameters import ParameterError, declare_all, params_file_text
from .qos import RELIABILITY, qos

# The node's own parameters; the streaming core's (`streaming/settings.py`) follow them in `PARAMETERS`.
NODE_PARAMETERS = [
    Setting("model_dir", "", "model directory (config.json + model.safetensors); empty: the shipped default model"),
    Setting("backend", "onnxruntime", "inference backend", choices=BACKENDS),
    Setting("onnx_path", "", "exported ONNX graph to use (default: exported from model_dir and cached)"),
    Setting("device", "cpu", "cpu or cuda[:N]"),
    Setting("precision", "fp32", "torch: fp32, bf16, fp16; onnxruntime: fp32, int8; tensorrt: fp32, fp16",
            choices=ALL_PRECISIONS),
    Setting("threads", 0, "CPU inference threads (0: the backend's default)", range=(0, 256)),
    Setting("engine_cache_dir", "", "TensorRT engine cache (default ~/.cache/fourds_ros/engines)"),
    Setting("force_rebuild", False, "rebuild the TensorRT engine even if a matching one is cached"),
    Setting("image_transport", "raw", "raw: sensor_msgs/Image on `image`; compressed: sensor_msgs/CompressedImage "
            "(jpeg, png) on `image/compressed`", choices=("raw", "compressed")),
    Setting("odom_frame", "fourds_odom", "frame of odometry/pose/path: the first camera frame of the stream"),
    Setting("child_frame_id", "", "odometry child and tf frame (empty: the image's frame_id)"),
    Setting("publish_tf", False, "publish odom_frame -> child_frame_id on /tf (needs tf2_msgs)"),
    Setting("min_confidence", 0.0, "depth pixels less trusted than this (depth/confidence) are NaN in depth/image and "
            "left out of depth/points (0: all published)", range=(0.0, 1.0)),
    Setting("publish_points", True, "publish depth/points, the depth as a PointCloud2 (x, y, z, confidence) for a "
            "costmap"),
    Setting("points_stride", 1, "depth/points takes every k-th depth pixel, across and down", range=(1, 64)),
    Setting("path_length", 500, "poses kept in the published path", range=(1, 1000000)),
    Setting("box_seed_type", "pointcloud2", "message type of tracks/box_seeds", choices=("pointcloud2", "detection2d")),
    Setting("input_reliability", "best_effort", "QoS reliability of image and camera_info", choices=RELIABILITY),
    Setting("input_depth", 5, "QoS history depth of the inputs", range=(1, 1000)),
    Setting("output_reliability", "reliable", "QoS reliability of the outputs", choices=RELIABILITY),
    Setting("output_depth", 10, "QoS history depth of the outputs", range=(1, 1000)),
    Setting("camera_info_wait_s", 1.0, "while camera_info is published but none has arrived yet, images wait this "
            "long for it (the first windows' geometry then has the camera's intrinsics); 0: never wait",
            range=(0.0, 60.0), unit="s"),
    Setting("diagnostics_period", 1.0, "seconds between /diagnostics messages (steady clock, also under sim time)",
            range=(0.05, 3600.0), unit="s"),
]
PARAMETERS = NODE_PARAMETERS + settings.table()


class PerceptionNode(Node):
    def __init__(self):
        super().__init__("perception_node")
        p = self.params = declare_all(self, PARAMETERS)
        if not p["model_dir"] and not p["onnx_path"]:
            try:
                p["model_dir"] = str(default_model_dir())
            except BackendError as exc:
                raise ParameterError(f"parameter 'model_dir': {exc}") from None
            self.get_logger().info(f"model_dir not set: using the default model {p['model_dir']}")
        backend = self._start_backend(p)
        self.outputs = NodeOutputs(self, qos(p["output_reliability"], p["output_depth"]), p["odom_frame"],
                                   p["child_frame_id"], p["path_length"], p["window_hop"], p["publish_tf"],
                                   p["min_confidence"], p["publish_points"], p["points_stride"])
        try:  # the pipeline's worker thread hands each frame's output straight to the publishers
            config = StreamConfig.from_values({row.name: p[row.name] for row in settings.table()})
            self.pipeline = StreamingPipeline(backend, config, self.outputs.publish, log=self.get_logger())
        except ValueError as exc:
            backend.close()
            raise ParameterError(str(exc)) from None
        self.backend_description = backend.description
        in_qos = qos(p["input_reliability"], p["input_depth"])
        self.pub_diag = self.create_publisher(DiagnosticArray, node_topic("diagnostics"), 10)
        self.reported_encodings: set[str] = set()
        self.rejections: dict[str, tuple[float, int]] = {}  # problem kind -> (last logged, rejected since)
        self.reported_distortion_models: set[str] = set()
        self.camera_info_seen = False
        self.waiting: list[tuple[str, int, int, int, object]] = []  # images held for the first camera_info
        if p["image_transport"] == "compressed":  # the image_transport convention: <image>/compressed
            self.create_subscription(CompressedImage, compressed(node_topic("image")), self._on_compressed, in_qos)
        else:
            self.create_subscription(Image, node_topic("image"), self._on_image, in_qos)
        info = self.create_subscription(CameraInfo, node_topic("camera_info"), self._on_camera_info, in_qos)
        self.camera_info_topic = info.topic_name
        if p["box_seed_type"] == "detection2d" and Detection2DArray is not None:
            self.create_subscription(Detection2DArray, node_topic("tracks/box_seeds"), self._on_box_detections, 10)
        else:
            self.create_subscription(PointCloud2, node_topic("tracks/box_seeds"), self._on_box_cloud, 10)
        self.create_subscription(PointCloud2, node_topic("tracks/point_seeds"), self._on_point_cloud, 10)
        # Health is reported on the steady clock: under use_sim_time a paused or finished bag stops /clock,
        # and the node must still say how it is doing.
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"ready: {self.backend_description}; window {config.window_len}, hop "
                               f"{config.window_hop}, stride {config.frame_stride}")

    def _start_backend(self, p: dict):
        try:
            options = backend_options(p["backend"], p["precision"], device=p["device"], threads=p["threads"],
                                      cache_dir=p["engine_cache_dir"], force_rebuild=p["force_rebuild"])
        except BackendError as exc:
            raise ParameterError(f"parameter 'precision': {exc}") from None
        started = time.monotonic()
        backend = create_backend(p["backend"], Path(p["model_dir"]) if p["model_dir"] else None,
                                 onnx_path=Path(p["onnx_path"]) if p["onnx_path"] else None, **options)
        self.get_logger().info(f"backend started in {time.monotonic() - started:.1f} s")
        return backend

    # Inputs ---------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self._push(msg.encoding, msg.height, msg.width, msg.step, msg)

    def _on_compressed(self, msg: CompressedImage) -> None:
        """jpeg/png frames (the compressed image_transport), decoded by the pipeline's intake."""
        self._push(COMPRESSED, 0, 0, 0, msg)

    def _push(self, encoding: str, height: int, width: int, step: int, msg) -> None:
        if self._wait_for_camera_info(encoding, height, width, step, msg):
            return
        try:
            self.pipeline.push(encoding, height, width, step, msg.data, Time.from_msg(msg.header.stamp).nanoseconds,
                               msg.header.frame_id)
        except ImageError as exc:
            if "unsupported encoding" in str(exc):
                if encoding not in self.reported_encodings:  # once per encoding, not per frame
                    self.reported_encodings.add(encoding)
                    self.get_logger().error(f"rejecting images: {exc}")
            else:
                self._report_rejection(exc)

    def _wait_for_camera_info(self, *frame) -> bool:
        """Hold images (True: this one is held) while camera_info is published but has not arrived: a node
        started beside a running camera gets an image before its camera_info as often as not, and the first
        windows would track without intrinsics. Held images go on when it arrives, after `camera_info_wait_s` of
        their stamps, or when a window's worth is held."""
        wait_s = self.params["camera_info_wait_s"]
        if self.camera_info_seen or wait_s <= 0 or not self.count_publishers(self.camera_info_topic):
            self._release_waiting()
            return False
        self.waiting.append(frame)
        first = Time.from_msg(self.waiting[0][-1].header.stamp).nanoseconds
        waited_s = (Time.from_msg(frame[-1].header.stamp).nanoseconds - first) * 1e-9
        if waited_s > wait_s or len(self.waiting) > self.params["window_len"]:  # bounded in time and memory
            self.get_logger().warning(f"no camera_info within {wait_s:g} s of the first image although it is "
                                      f"published: going on without intrinsics until it comes")
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
        self.get_logger().warning(f"rejecting an image: {exc}{more}")
        self.rejections[kind] = (now, 0)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        k = np.asarray(msg.k, np.float64).reshape(3, 3)
        distortion = (msg.distortion_model, np.asarray(msg.d, np.float64)) if np.any(msg.d) else None
        try:
            self.pipeline.set_camera_matrix(k, distortion, (msg.height, msg.width))
        except ValueError as exc:  # an unknown distortion model: the images go to the model as they are
            if msg.distortion_model not in self.reported_distortion_models:
                self.reported_distortion_models.add(msg.distortion_model)
                self.get_logger().error(f"not rectifying: {exc}")
            self.pipeline.set_camera_matrix(k)
        rectified = self.pipeline.camera_matrix
        if distortion is not None and rectified is not None and not np.array_equal(rectified, k):
            # The depth image describes the rectified frames: a pinhole without distortion.
            msg = CameraInfo(header=msg.header, height=msg.height, width=msg.width, distortion_model="plumb_bob",
                             d=[0.0] * 5, k=rectified.ravel().tolist(), r=list(msg.r),
                             p=np.hstack([rectified, np.zeros((3, 1))]).ravel().tolist())
        self.outputs.camera_info = msg
        self.camera_info_seen = True
        self._release_waiting()

    def _seed_records(self, msg: PointCloud2, layout) -> np.ndarray | None:
        try:
            return unpack(messages.cloud_fields(msg), msg.point_step, bytes(msg.data), layout)
        except ValueError as exc:
            self.get_logger().warning(f"ignoring track seeds: {exc}")
            return None

    def _on_box_cloud(self, msg: PointCloud2) -> None:
        """Box seeds; each record's track_id becomes the id of the new track."""
        records = self._seed_records(msg, BOX_DTYPE)
        stamp = messages.stamp_ns(msg.header)
        for r in records if records is not None else ():
            self.pipeline.add_box_seed(stamp, np.array([r["u_min"], r["v_min"], r["u_max"], r["v_max"]]),
                                       int(r["track_id"]))

    def _on_point_cloud(self, msg: PointCloud2) -> None:
        """Point seeds (the point layout); each record's track_id becomes the id of the new track."""
        records = self._seed_records(msg, POINT_DTYPE)
        stamp = messages.stamp_ns(msg.header)
        for r in records if records is not None else ():
            self.pipeline.add_point_seed(stamp, np.array([r["u"], r["v"]]), int(r["track_id"]))

    def _on_box_detections(self, msg) -> None:
        stamp = messages.stamp_ns(msg.header)
        for det in msg.detections:
            c, w, h = det.bbox.center.position, det.bbox.size_x, det.bbox.size_y
            self.pipeline.add_box_seed(stamp, np.array([c.x - w / 2, c.y - h / 2, c.x + w / 2, c.y + h / 2]))

    def _publish_diagnostics(self) -> None:
        values = {"backend": self.backend_description, "model": self.params["model_dir"] or self.params["onnx_path"],
                  "egomotion": self.params["egomotion"], **self.pipeline.health()}
        problems = ("windows_dropped", "frames_dropped", "windows_nonfinite", "frames_rejected")
        level = 1 if any(values[key] for key in problems) else 0
        message = "ok" if level == 0 else "dropping or rejecting input (see values)"
        header = messages.header_at(self.get_clock().now().nanoseconds, "")
        self.pub_diag.publish(messages.diagnostics(header, "fourds_ros: perception_node", self.backend_description,
                                                   values, level, message))

    def destroy_node(self) -> None:
        self.pipeline.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    if "--params-file-text" in (sys.argv[1:] if args is None else args):
        print(params_file_text(PARAMETERS, "perception_node defaults"), end="")
        return 0
    return run_node(PerceptionNode, "perception_node", (ParameterError, BackendError, ValueError), args)


if __name__ == "__main__":
    sys.exit(main())
