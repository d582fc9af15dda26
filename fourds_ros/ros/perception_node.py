"""perception_node: camera images in; depth, egomotion, tracks and diagnostics out.

A thin rclpy adapter over `fourds_ros.streaming.StreamingPipeline`: the image
callback hands bytes to the pipeline (never waiting for inference); the
pipeline's worker thread calls `_publish` once per frame with that frame's
stamp and frame id.
"""
from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry, Path as PathMsg
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from visualization_msgs.msg import MarkerArray
from diagnostic_msgs.msg import DiagnosticArray

from ..model import ModelDirError
from ..runtime import BACKENDS, BackendError, create_backend
from ..streaming import ImageError, StreamConfig, StreamingPipeline
from ..streaming.pipeline import FrameOutput
from ..track_layout import BOX_DTYPE, POINT_DTYPE, pack_boxes, pack_points, unpack
from . import messages
from .parameters import Param, ParameterError, declare_all
from .run import run_node

try:  # optional message packages of a full ROS 2 install
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None
try:
    from vision_msgs.msg import BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesisWithPose
except ImportError:
    Detection2DArray = None

RELIABILITY = ("best_effort", "reliable")
PRECISIONS = {"torch": ("fp32", "bf16", "fp16"), "onnxruntime": ("fp32", "int8"), "tensorrt": ("fp32", "fp16")}
PARAMETERS = [
    Param("model_dir", "", "model directory (config.json + model.safetensors)"),
    Param("backend", "onnxruntime", "inference backend", choices=BACKENDS),
    Param("onnx_path", "", "exported ONNX graph to use (default: exported from model_dir and cached)"),
    Param("device", "cpu", "cpu or cuda[:N]"),
    Param("precision", "fp32", "torch: fp32, bf16, fp16; onnxruntime: fp32, int8; tensorrt: fp32, fp16",
          choices=("fp32", "bf16", "fp16", "int8")),
    Param("threads", 0, "CPU inference threads (0: the backend's default)", range=(0, 256)),
    Param("engine_cache_dir", "", "TensorRT engine cache (default ~/.cache/fourds_ros/engines)"),
    Param("force_rebuild", False, "rebuild the TensorRT engine even if a matching one is cached"),
    Param("window_len", 16, "frames per window; must equal the model's clip length", range=(2, 256)),
    Param("window_hop", 4, "new frames between inferences: lower = less latency, more compute", range=(1, 256)),
    Param("frame_stride", 1, "use every k-th camera frame", range=(1, 1000)),
    Param("resize_policy", "resize", "how frames become model input", choices=("resize", "center_crop")),
    Param("depth_affine", False, "stitch depth with scale and shift (for affine-invariant depth models)"),
    Param("point_tracks", 32, "point tracks kept alive (0: off)", range=(0, 4096)),
    Param("point_seeding", "corners", "how new point tracks are seeded (none: only from tracks/point_seeds)",
          choices=("corners", "grid", "none")),
    Param("max_invisible_frames", 8, "drop a track after this many invisible frames", range=(0, 100000)),
    Param("flush_after_s", 0.5, "after this long without frames, publish the frames still waiting (0: never)",
          range=(0.0, 3600.0)),
    Param("odom_frame", "fourds_odom", "frame of odometry/pose/path: the first camera frame of the stream"),
    Param("child_frame_id", "", "odometry child and tf frame (empty: the image's frame_id)"),
    Param("publish_tf", False, "publish odom_frame -> child_frame_id on /tf (needs tf2_msgs)"),
    Param("path_length", 500, "poses kept in the published path", range=(1, 1000000)),
    Param("box_seed_type", "pointcloud2", "message type of tracks/box_seeds", choices=("pointcloud2", "detection2d")),
    Param("input_reliability", "best_effort", "QoS reliability of image and camera_info", choices=RELIABILITY),
    Param("input_depth", 5, "QoS history depth of the inputs", range=(1, 1000)),
    Param("output_reliability", "reliable", "QoS reliability of the outputs", choices=RELIABILITY),
    Param("output_depth", 10, "QoS history depth of the outputs", range=(1, 1000)),
    Param("diagnostics_period", 1.0, "seconds between /diagnostics messages (steady clock, also under sim time)",
          range=(0.05, 3600.0)),
]


def qos(reliability: str, depth: int) -> QoSProfile:
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(reliability=policy, history=HistoryPolicy.KEEP_LAST, depth=depth)


class PerceptionNode(Node):
    def __init__(self):
        super().__init__("perception_node")
        p = self.params = declare_all(self, PARAMETERS)
        if not p["model_dir"] and not p["onnx_path"]:
            raise ParameterError("parameter 'model_dir': a model directory is required")
        backend = self._start_backend(p)
        config = StreamConfig(window_len=p["window_len"], window_hop=p["window_hop"], frame_stride=p["frame_stride"],
                              resize_policy=p["resize_policy"], depth_affine=p["depth_affine"],
                              point_tracks=p["point_tracks"], point_seeding=p["point_seeding"],
                              max_invisible_frames=p["max_invisible_frames"], flush_after_s=p["flush_after_s"])
        try:
            self.pipeline = StreamingPipeline(backend, config, self._publish, log=self.get_logger())
        except ValueError as exc:
            backend.close()
            raise ParameterError(str(exc)) from None
        self.backend_description = backend.description
        out_qos = qos(p["output_reliability"], p["output_depth"])
        in_qos = qos(p["input_reliability"], p["input_depth"])
        self.pub_depth = self.create_publisher(Image, "depth/image", out_qos)
        self.pub_depth_info = self.create_publisher(CameraInfo, "depth/camera_info", out_qos)
        self.pub_odom = self.create_publisher(Odometry, "odometry", out_qos)
        self.pub_pose = self.create_publisher(PoseStamped, "pose", out_qos)
        self.pub_path = self.create_publisher(PathMsg, "path", out_qos)
        self.pub_points = self.create_publisher(PointCloud2, "tracks/points", out_qos)
        self.pub_boxes = self.create_publisher(PointCloud2, "tracks/boxes", out_qos)
        self.pub_markers = self.create_publisher(MarkerArray, "tracks/markers", out_qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_tf = self.create_publisher(TFMessage, "/tf", 100) if p["publish_tf"] and TFMessage else None
        if p["publish_tf"] and TFMessage is None:
            self.get_logger().warning("publish_tf is set but tf2_msgs is not installed: /tf is not published")
        self.pub_detections = (self.create_publisher(Detection2DArray, "tracks/detections", out_qos)
                               if Detection2DArray else None)
        self.path = PathMsg()
        self.path_poses: deque = deque(maxlen=p["path_length"])
        self.poses_published = 0
        self.camera_info: CameraInfo | None = None
        self.reported_encodings: set[str] = set()
        self.create_subscription(Image, "image", self._on_image, in_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos)
        if p["box_seed_type"] == "detection2d" and Detection2DArray is not None:
            self.create_subscription(Detection2DArray, "tracks/box_seeds", self._on_box_detections, 10)
        else:
            self.create_subscription(PointCloud2, "tracks/box_seeds", self._on_box_cloud, 10)
        self.create_subscription(PointCloud2, "tracks/point_seeds", self._on_point_cloud, 10)
        # Health is reported on the steady clock: under use_sim_time a paused or finished bag stops /clock,
        # and the node must still say how it is doing.
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"ready: {self.backend_description}; window {config.window_len}, hop "
                               f"{config.window_hop}, stride {config.frame_stride}")

    def _start_backend(self, p: dict):
        allowed = PRECISIONS[p["backend"]]
        if p["precision"] not in allowed:
            raise ParameterError(f"parameter 'precision': {p['precision']!r} is not a precision of the "
                                 f"{p['backend']} backend ({', '.join(allowed)})")
        options: dict = {"precision": p["precision"]}
        if p["backend"] == "torch":
            options.update(device=p["device"], threads=p["threads"] or None)
        elif p["backend"] == "onnxruntime":
            options.update(device=p["device"], threads=p["threads"])
        else:
            options.update(force_rebuild=p["force_rebuild"], cache_dir=p["engine_cache_dir"] or None)
        started = time.monotonic()
        backend = create_backend(p["backend"], Path(p["model_dir"]) if p["model_dir"] else None,
                                 onnx_path=Path(p["onnx_path"]) if p["onnx_path"] else None, **options)
        self.get_logger().info(f"backend started in {time.monotonic() - started:.1f} s")
        return backend

    # Inputs ---------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        try:
            self.pipeline.push(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                               messages.stamp_ns(msg.header), msg.header.frame_id)
        except ImageError as exc:
            if "unsupported encoding" in str(exc):
                if msg.encoding not in self.reported_encodings:  # once per encoding, not per frame
                    self.reported_encodings.add(msg.encoding)
                    self.get_logger().error(f"rejecting images: {exc}")
            else:
                self.get_logger().warning(f"rejecting an image: {exc}")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

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

    # Outputs (called on the pipeline's worker thread) --------------------------
    def _publish(self, out: FrameOutput) -> None:
        header = messages.header_at(out.info.stamp_ns, out.info.frame_id)
        k_model = None
        if out.depth is not None:
            self.pub_depth.publish(messages.depth_image(out.depth, header))
            if self.camera_info is not None:
                info = messages.scaled_camera_info(self.camera_info, out.pixel_map, *out.depth.shape, header)
                self.pub_depth_info.publish(info)
                k_model = np.asarray(info.k).reshape(3, 3) if any(info.k) else None
        if out.world_from_camera is not None:
            self._publish_pose(out.world_from_camera, header)
        points_uv = boxes = None
        if out.points is not None:
            t = out.points
            u, v = out.pixel_map.to_source(t.values[:, 0], t.values[:, 1])
            self.pub_points.publish(messages.track_cloud(pack_points(t.ids, np.stack([u, v], 1), t.visible,
                                                                     t.confidence), header))
            points_uv = t.values[t.visible.astype(bool)]
        if out.boxes is not None:
            t = out.boxes
            x0, y0 = out.pixel_map.to_source(t.values[:, 0], t.values[:, 1])
            x1, y1 = out.pixel_map.to_source(t.values[:, 2], t.values[:, 3])
            source_boxes = np.stack([x0, y0, x1, y1], 1)
            self.pub_boxes.publish(messages.track_cloud(pack_boxes(t.ids, source_boxes, t.visible, t.confidence),
                                                        header))
            boxes = t.values[t.visible.astype(bool)]
            if self.pub_detections is not None:
                self.pub_detections.publish(self._detections(header, t.ids, source_boxes, t.visible, t.confidence))
        if out.points is not None or out.boxes is not None:
            self.pub_markers.publish(messages.track_markers(header, out.depth, k_model, points_uv, boxes))

    def _publish_pose(self, world_from_camera: np.ndarray, header) -> None:
        odom_header = messages.header_at(messages.stamp_ns(header), self.params["odom_frame"])
        child = self.params["child_frame_id"] or header.frame_id
        self.pub_odom.publish(messages.odometry(world_from_camera, odom_header, child))
        pose = messages.pose_stamped(world_from_camera, odom_header)
        self.pub_pose.publish(pose)
        self.path_poses.append(pose)
        self.poses_published += 1
        if self.poses_published % self.params["window_hop"] == 0:  # the path is for display: once per hop
            self.path.header = odom_header
            self.path.poses = list(self.path_poses)
            self.pub_path.publish(self.path)
        if self.pub_tf is not None:
            self.pub_tf.publish(TFMessage(transforms=[messages.transform(world_from_camera, odom_header, child)]))

    @staticmethod
    def _detections(header, ids, boxes, visible, confidence):
        out = Detection2DArray(header=header)
        for track_id, (x0, y0, x1, y1), vis, conf in zip(ids, boxes, visible, confidence):
            if not vis:
                continue
            det = Detection2D(header=header, id=str(int(track_id)))
            det.bbox = BoundingBox2D()
            det.bbox.center.position.x, det.bbox.center.position.y = float(x0 + x1) / 2, float(y0 + y1) / 2
            det.bbox.size_x, det.bbox.size_y = float(x1 - x0), float(y1 - y0)
            hypothesis = ObjectHypothesisWithPose()
            hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = "track", float(conf)
            det.results = [hypothesis]
            out.detections.append(det)
        return out

    def _publish_diagnostics(self) -> None:
        s = self.pipeline.stats
        latencies = list(s.latencies_s)
        values = {
            "backend": self.backend_description, "model": self.params["model_dir"] or self.params["onnx_path"],
            "input_rate_hz": f"{s.input_rate_hz():.2f}",
            "window_latency_mean_ms": f"{1e3 * np.mean(latencies):.1f}" if latencies else "nan",
            "window_latency_max_ms": f"{1e3 * np.max(latencies):.1f}" if latencies else "nan",
            "frames_received": s.frames_received, "frames_accepted": s.frames_accepted,
            "frames_rejected": s.frames_rejected, "frames_dropped": s.frames_dropped,
            "frames_emitted": s.frames_emitted, "windows_processed": s.windows_processed,
            "windows_dropped": s.windows_dropped, "windows_nonfinite": s.windows_nonfinite, "stream_resets": s.resets,
        }
        level = 1 if (s.windows_dropped or s.frames_dropped or s.windows_nonfinite or s.frames_rejected) else 0
        message = "ok" if level == 0 else "dropping or rejecting input (see values)"
        header = messages.header_at(self.get_clock().now().nanoseconds, "")
        self.pub_diag.publish(messages.diagnostics(header, "fourds_ros: perception_node", self.backend_description,
                                                   values, level, message))

    def destroy_node(self) -> None:
        self.pipeline.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(PerceptionNode, "perception_node", (ParameterError, BackendError, ModelDirError, ValueError), args)


if __name__ == "__main__":
    sys.exit(main())
