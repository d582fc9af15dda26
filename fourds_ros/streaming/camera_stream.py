"""One camera of the pipeline: its intake, window slot, model and geometry stages and counters.

Cameras share the model and the inference worker (`pipeline.py`), nothing else: one camera's bad frames,
restarts or silence never hold up or reset another's.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from ..runtime import IOSpec, Queries
from .geometry_stage import GeometryStage
from .intake import FrameIntake, Window
from .model_stage import ModelStage
from .output import FrameOutput, StreamStats
from .scheduler import InferenceWorker, WindowScheduler
from .settings import StreamConfig


class CameraLog:
    """A logger that names the camera in every line (a rig's cameras share one node's log)."""

    # One method per level: rclpy's loggers refuse two severities from one line of code.
    def __init__(self, log: logging.Logger, camera: str):
        self._log, self._prefix = log, f"camera {camera}: " if camera else ""

    def debug(self, message: str) -> None:
        self._log.debug(self._prefix + message)

    def info(self, message: str) -> None:
        self._log.info(self._prefix + message)

    def warning(self, message: str) -> None:
        self._log.warning(self._prefix + message)

    def error(self, message: str) -> None:
        self._log.error(self._prefix + message)


class CameraStream:
    def __init__(self, name: str, spec: IOSpec, heads: tuple[str, ...], config: StreamConfig,
                 worker: InferenceWorker, on_output: Callable[[FrameOutput], None], log: logging.Logger,
                 on_motion: Callable[[FrameOutput], None] | None = None, live: bool = False):
        self.name, self.on_output, self.on_motion = name, on_output, on_motion
        self.log = CameraLog(log, name) if name else log
        self.stats = StreamStats()
        self.model = ModelStage(spec, config, self.stats, self.log, heads)
        self.geometry = GeometryStage(config, heads, self.model.points is not None, self.log, live)
        self.intake = FrameIntake(config, spec.clip, self.geometry.needs_frames, self.stats, self.log)
        self.scheduler = WindowScheduler(self.intake, config, self.stats, worker)
        self._epoch = -1  # the stream of the last processed window
        self._last_tracking_error = 0.0

    # Subscription side ------------------------------------------------------
    def push(self, encoding: str, height: int, width: int, step: int, data, stamp_ns: int, frame_id: str,
             received_ns: int | None = None) -> None:
        """Accept one camera frame: a sensor_msgs/Image encoding, or `contract.COMPRESSED` for jpeg/png bytes.
        Raises `ImageError` (the frame is rejected, nothing else changes). One camera's frames come from one
        thread at a time (a subscription's callback): each is tracked before its window can be requested.
        `received_ns`: when the middleware received it (system clock; default now), which tells a live stream's
        tracking how late the frame already is."""
        received_ns = time.time_ns() if received_ns is None else received_ns
        self.stats.frames_received += 1
        try:
            frame = self.intake.prepare(encoding, height, width, step, data)
        except ValueError:
            self.stats.frames_rejected += 1
            raise
        with self.scheduler.lock:
            self.stats.arrivals.append(time.monotonic())
            for reason in self.intake.restarts(frame.size, stamp_ns):
                self.log.warning(f"restarting the stream: {reason}")
                self.scheduler.finish_stream()
                self.intake.restart()
                self.stats.resets += 1
            admitted = self.intake.admit(frame, stamp_ns, frame_id)
            arrival = self.intake.arrival() if admitted and self.geometry.on_arrival else None
        if arrival is not None:
            self._track(arrival, received_ns)
        if admitted:
            with self.scheduler.lock:
                self.scheduler.frame_accepted()

    def _track(self, arrival: Window, received_ns: int) -> None:
        """The frame's pose on arrival, handed to `on_motion`; a failure costs this pose, never the frame."""
        try:
            motion = self.geometry.track(arrival, received_ns)
        except Exception as exc:
            now = time.monotonic()
            if now - self._last_tracking_error > 5.0:
                self._last_tracking_error = now
                self.log.error(f"tracking frame {arrival.infos[0].seq} on arrival failed: {exc!r}")
            return
        if motion is None:  # behind: its pose goes out with its window
            return
        motion.camera = self.name
        if self.on_motion is not None:
            self.on_motion(motion)

    def set_camera_matrix(self, k: np.ndarray | None, distortion: tuple[str, np.ndarray] | None = None,
                          size: tuple[int, int] | None = None) -> None:
        """The camera's intrinsics and distortion (camera_info); see `FrameIntake.set_camera_matrix`."""
        with self.scheduler.lock:
            self.intake.set_camera_matrix(k, distortion, size)

    @property
    def camera_matrix(self) -> np.ndarray | None:
        """The intrinsics of the frames the model sees (after rectification)."""
        return self.intake.camera_matrix

    def add_box_seed(self, stamp_ns: int, box: np.ndarray, track_id: int | None = None) -> None:
        """Track a box `(x_min, y_min, x_max, y_max)` in source pixels from the frame stamped `stamp_ns`."""
        self.model.seeds.add("boxes", stamp_ns, box, track_id)

    def add_point_seed(self, stamp_ns: int, xy: np.ndarray, track_id: int | None = None) -> None:
        """Track a point `(x, y)` in source pixels from the frame stamped `stamp_ns`."""
        self.model.seeds.add("points", stamp_ns, xy, track_id)

    def flush(self) -> None:
        """Run the newest window now for frames no window has covered yet (end of a recording)."""
        self.scheduler.flush()

    def health(self) -> dict[str, object]:
        """A snapshot of the stream's counters and the egomotion's, for diagnostics."""
        values = self.stats.health()
        odometry = self.geometry.odometry
        if odometry is not None:
            e = odometry.stats
            values.update({"egomotion_last_source": odometry.last.source if odometry.last else "none",
                           "egomotion_last_inliers": e.last_inliers, "egomotion_keyframes": e.keyframes,
                           "egomotion_bundle_adjustments": e.bundle_adjustments,
                           "egomotion_ms_per_frame": f"{1e3 * e.seconds / max(e.frames, 1):.1f}",
                           "egomotion_ms_per_adjustment":
                               f"{1e3 * e.adjustment_seconds / max(e.bundle_adjustments, 1):.1f}",
                           **{f"egomotion_frames_{k}": v for k, v in e.by_source.items()}})
        return values

    # Worker side --------------------------------------------------------------
    def queries(self, window: Window, clip: np.ndarray) -> tuple[Queries, tuple]:
        """Before inference: the window's queries for the backend, and what `finish` reads its outputs by."""
        # Windows of a stream that has since restarted are still processed: their frames are good.
        if window.epoch != self._epoch:
            self._epoch = window.epoch
            self.model.reset()
            self.geometry.reset()
        padded, point_q, box_q = self.model.queries(window, clip)
        return padded, (point_q, box_q)

    def finish(self, window: Window, out: dict[str, np.ndarray], track_queries: tuple, started: float) -> None:
        """After inference: stitching, the geometric stage, and each new frame's output handed on."""
        result = self.model.run(window, out, *track_queries)
        if result is None:
            return
        self.geometry.run(window, result)
        # A window's latency is all of its work: inference (with the other cameras' windows), stitching, geometry.
        self.stats.latencies_s.append(time.monotonic() - started)
        self.stats.max_latency_s = max(self.stats.max_latency_s, self.stats.latencies_s[-1])
        for o in result.outputs:
            o.camera = self.name
            if self.on_motion is not None and o.world_from_camera is not None \
                    and not self.geometry.published_on_arrival(o):
                self.on_motion(o)
            self.on_output(o)
        self.model.emitted(result.outputs)
