"""perception_node: camera images in; depth, egomotion, tracks and diagnostics out, for one camera or a rig.

A thin rclpy adapter over `fourds_ros.streaming.StreamingPipeline`: each camera's
image callback (`camera_port.py`) hands bytes to its camera's stream (never waiting
for inference) and gets the frame's pose back at once, published as odometry; the
pipeline's worker thread hands each frame's depth and tracks to that camera's
`outputs.NodeOutputs` when its window is back. Every output carries the frame's
stamp and frame id.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from ..contract import node_topic
from ..runtime import ALL_PRECISIONS, BACKENDS, BackendError, backend_options, create_rig_backend, default_model_dir
from ..streaming import StreamConfig, StreamingPipeline, settings
from ..streaming.pipeline import check_camera_names
from ..streaming.settings import Setting
from . import messages
from .camera_port import CameraPort
from .entry_point import run_node
from .parameters import ParameterError, declare_all, params_file_text
from .qos import RELIABILITY, qos

# The node's own parameters; the streaming core's (`streaming/settings.py`) follow them in `PARAMETERS`.
NODE_PARAMETERS = [
    Setting("cameras", [""], "the cameras of a rig, by name: each has its topics under its name (front/image, "
            "front/depth/image, ...) and its own stream; one unnamed camera ('') has them without a prefix"),
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
    Setting("live", True, "frames come in real time: the egomotion's bundle adjustments run in a child process beside "
            "the tracking, and frames the tracking cannot keep up with get their pose with their window; false: every "
            "frame tracked and adjusted in order, as `eval` does (`replay` scores this way)"),
    Setting("diagnostics_period", 1.0, "seconds between /diagnostics messages (steady clock, also under sim time)",
            range=(0.05, 3600.0), unit="s"),
]
PARAMETERS = NODE_PARAMETERS + settings.table()


class PerceptionNode(Node):
    def __init__(self):
        super().__init__("perception_node")
        p = self.params = declare_all(self, PARAMETERS)
        cameras = list(p["cameras"])
        try:
            check_camera_names(cameras)
        except ValueError as exc:
            raise ParameterError(f"parameter 'cameras': {exc}") from None
        if len(cameras) > 1 and p["child_frame_id"]:
            raise ParameterError("parameter 'child_frame_id': one frame for several cameras; leave it empty (each "
                                 "camera's odometry then names its images' frame_id)")
        if not p["model_dir"] and not p["onnx_path"]:
            try:
                p["model_dir"] = str(default_model_dir())
            except BackendError as exc:
                raise ParameterError(f"parameter 'model_dir': {exc}") from None
            self.get_logger().info(f"model_dir not set: using the default model {p['model_dir']}")
        backend = self._start_backend(p, len(cameras))
        self.ports: dict[str, CameraPort] = {}
        try:  # poses (on arrival) and the worker's depth and tracks go straight to their camera's publishers
            config = StreamConfig.from_values({row.name: p[row.name] for row in settings.table()})
            self.pipeline = StreamingPipeline(backend, config, lambda o: self.ports[o.camera].outputs.publish(o),
                                              log=self.get_logger(), cameras=cameras,
                                              on_motion=lambda o: self.ports[o.camera].outputs.publish_motion(o),
                                              live=p["live"])
        except ValueError as exc:
            backend.close()
            raise ParameterError(str(exc)) from None
        self.backend_description = backend.description
        in_qos, out_qos = qos(p["input_reliability"], p["input_depth"]), qos(p["output_reliability"], p["output_depth"])
        sizes: dict[str, tuple[int, int]] = {}
        for name in cameras:
            self.ports[name] = CameraPort(self, self.pipeline.camera(name), p, in_qos, out_qos, sizes)
        self.pub_diag = self.create_publisher(DiagnosticArray, node_topic("diagnostics"), 10)
        # Health is reported on the steady clock: under use_sim_time a paused or finished bag stops /clock,
        # and the node must still say how it is doing.
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        rig = f"; cameras {', '.join(cameras)}" if cameras != [""] else ""
        self.get_logger().info(f"ready: {self.backend_description}; window {config.window_len}, hop "
                               f"{config.window_hop}, stride {config.frame_stride}{rig}")

    def _start_backend(self, p: dict, cameras: int):
        try:
            options = backend_options(p["backend"], p["precision"], device=p["device"], threads=p["threads"],
                                      cache_dir=p["engine_cache_dir"], force_rebuild=p["force_rebuild"])
        except BackendError as exc:
            raise ParameterError(f"parameter 'precision': {exc}") from None
        started = time.monotonic()
        backend = create_rig_backend(p["backend"], Path(p["model_dir"]) if p["model_dir"] else None, cameras,
                                     onnx_path=Path(p["onnx_path"]) if p["onnx_path"] else None, **options)
        self.get_logger().info(f"backend started in {time.monotonic() - started:.1f} s")
        return backend

    def _publish_diagnostics(self) -> None:
        """One status per camera, each with the node's backend and model."""
        common = {"backend": self.backend_description, "model": self.params["model_dir"] or self.params["onnx_path"],
                  "egomotion": self.params["egomotion"]}
        problems = ("windows_dropped", "frames_dropped", "windows_nonfinite", "frames_rejected")
        statuses = []
        for name, port in self.ports.items():
            values = {**common, **port.health()}
            level = 1 if any(values[key] for key in problems) else 0
            message = "ok" if level == 0 else "dropping or rejecting input (see values)"
            # Named for the node (separate nodes in namespaces stay apart on /diagnostics) and the camera.
            status_name = f"fourds_ros: {self.get_fully_qualified_name()}{' ' + name if name else ''}"
            statuses.append(messages.diagnostic_status(status_name,
                                                       self.backend_description, values, level, message))
        header = messages.header_at(self.get_clock().now().nanoseconds, "")
        self.pub_diag.publish(DiagnosticArray(header=header, status=statuses))

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
