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

from ..bags.topics import compressed, node_topic
from ..bags.track_layout import BOX_DTYPE, POINT_DTYPE, unpack
from ..runtime import ALL_PRECISIONS, BACKENDS, BackendError, backend_options, create_backend, default_model_dir
from ..streaming import ImageError, StreamConfig, StreamingPipeline
from ..streaming.egomotion import MODES as EGOMOTION_MODES
from ..streaming.frames import decode_compressed
from ..streaming.refine import VISIBILITY as POINT_VISIBILITY
from . import messages
from .entry_point import run_node
from .outputs import Detection2DArray, NodeOutputs
from .parameters import Param, ParameterError, declare_all, params_file_text
from .qos import RELIABILITY, qos

PARAMETERS = [
    Param("model_dir", "", "model directory (config.json + model.safetensors); empty: the shipped default model"),
    Param("backend", "onnxruntime", "inference backend", choices=BACKENDS),
    Param("onnx_path", "", "exported ONNX graph to use (default: exported from model_dir and cached)"),
    Param("device", "cpu", "cpu or cuda[:N]"),
    Param("precision", "fp32", "torch: fp32, bf16, fp16; onnxruntime: fp32, int8; tensorrt: fp32, fp16",
          choices=ALL_PRECISIONS),
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
    Param("refine_points", True, "refine point tracks at camera resolution (Lucas-Kanade from the last position, "
          "the 4DS estimate as the second guess, forward-backward checked)"),
    Param("point_visibility", "refined", "occlusion signal of point tracks: readout (4DS visibility), refined (the "
          "refinement's check) or both", choices=POINT_VISIBILITY),
    Param("max_invisible_frames", 8, "drop a track after this many invisible frames", range=(0, 100000)),
    Param("flush_after_s", 0.5, "after this long without frames, publish the frames still waiting (0: never)",
          range=(0.0, 3600.0)),
    Param("image_transport", "raw", "raw: sensor_msgs/Image on `image`; compressed: sensor_msgs/CompressedImage "
          "(jpeg, png) on `image/compressed`", choices=("raw", "compressed")),
    Param("rectify", True, "undistort frames whose camera_info has a distortion model (plumb_bob, "
          "rational_polynomial, equidistant), as image_proc would; off for cameras already rectified"),
    Param("egomotion", "geometric", "how camera motion is estimated: geometric (feature tracks + 4DS depth through "
          "keyframes, the pose readout as fallback), readout (the 4DS pose head alone), fused (both, by covariance)",
          choices=EGOMOTION_MODES),
    Param("fuse_depth", True, "correct the 4DS depth with depth triangulated from dense optical flow and the "
          "geometric egomotion (needs egomotion geometric or fused; once a window, 40-50 ms on 2 cores)"),
    Param("geometry_width", 320, "width of the grey frames the geometric stage tracks on (at most the camera's)",
          range=(32, 8192)),
    Param("max_image_pixels", 50_000_000, "images with more pixels are rejected (a log line) before anything is "
          "allocated for them", range=(1, 2_000_000_000)),
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
        config = StreamConfig(window_len=p["window_len"], window_hop=p["window_hop"], frame_stride=p["frame_stride"],
                              resize_policy=p["resize_policy"], depth_affine=p["depth_affine"],
                              point_tracks=p["point_tracks"], point_seeding=p["point_seeding"],
                              max_invisible_frames=p["max_invisible_frames"], flush_after_s=p["flush_after_s"],
                              egomotion=p["egomotion"], geometry_width=p["geometry_width"], fuse_depth=p["fuse_depth"],
                              refine_points=p["refine_points"], point_visibility=p["point_visibility"],
                              rectify=p["rectify"], max_image_pixels=p["max_image_pixels"])
        self.outputs = NodeOutputs(self, qos(p["output_reliability"], p["output_depth"]), p["odom_frame"],
                                   p["child_frame_id"], p["path_length"], p["window_hop"], p["publish_tf"])
        try:  # the pipeline's worker thread hands each frame's output straight to the publishers
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
        if p["image_transport"] == "compressed":  # the image_transport convention: <image>/compressed
            self.create_subscription(CompressedImage, compressed(node_topic("image")), self._on_compressed, in_qos)
        else:
            self.create_subscription(Image, node_topic("image"), self._on_image, in_qos)
        self.create_subscription(CameraInfo, node_topic("camera_info"), self._on_camera_info, in_qos)
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
        try:
            self.pipeline.push(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                               Time.from_msg(msg.header.stamp).nanoseconds, msg.header.frame_id)
        except ImageError as exc:
            if "unsupported encoding" in str(exc):
                if msg.encoding not in self.reported_encodings:  # once per encoding, not per frame
                    self.reported_encodings.add(msg.encoding)
                    self.get_logger().error(f"rejecting images: {exc}")
            else:
                self._report_rejection(exc)

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

    def _on_compressed(self, msg: CompressedImage) -> None:
        """jpeg/png frames (the compressed image_transport), decoded by OpenCV and pushed as bgr8 or mono8."""
        try:
            image, encoding = decode_compressed(msg.data, self.params["max_image_pixels"])
        except ImageError as exc:
            self.pipeline.stats.frames_received += 1
            self.pipeline.stats.frames_rejected += 1
            self.get_logger().warning(f"rejecting a compressed image ({msg.format or 'no format'}): {exc}",
                                      throttle_duration_sec=5.0)
            return
        try:
            self.pipeline.push(encoding, image.shape[0], image.shape[1], image.strides[0], image.data,
                               Time.from_msg(msg.header.stamp).nanoseconds, msg.header.frame_id)
        except ImageError as exc:
            self._report_rejection(exc)

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
        s = self.pipeline.stats
        latencies = list(s.latencies_s)
        values = {
            "backend": self.backend_description, "model": self.params["model_dir"] or self.params["onnx_path"],
            "input_rate_hz": f"{s.input_rate_hz():.2f}",
            "window_latency_mean_ms": f"{1e3 * np.mean(latencies):.1f}" if latencies else "nan",
            "window_latency_max_ms": f"{1e3 * s.max_latency_s:.1f}" if latencies else "nan",  # the whole run
            "frames_received": s.frames_received, "frames_accepted": s.frames_accepted,
            "frames_rejected": s.frames_rejected, "frames_dropped": s.frames_dropped,
            "frames_emitted": s.frames_emitted, "windows_processed": s.windows_processed,
            "windows_dropped": s.windows_dropped, "windows_nonfinite": s.windows_nonfinite, "stream_resets": s.resets,
            "egomotion": self.params["egomotion"],
        }
        odometry = self.pipeline.odometry
        if odometry is not None:
            e = odometry.stats
            values.update({"egomotion_last_source": odometry.last.source if odometry.last else "none",
                           "egomotion_last_inliers": e.last_inliers, "egomotion_keyframes": e.keyframes,
                           "egomotion_steps_clamped": e.clamped,
                           "egomotion_ms_per_frame": f"{1e3 * e.seconds / max(e.frames, 1):.1f}",
                           **{f"egomotion_frames_{k}": v for k, v in e.by_source.items()}})
        level = 1 if (s.windows_dropped or s.frames_dropped or s.windows_nonfinite or s.frames_rejected) else 0
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
