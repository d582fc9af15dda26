"""The streaming core: camera frames in, per-frame depth, pose and tracks out. No ROS in here.

One camera frame's path, stage by stage (each stage owns its state and its reset):
1. `push` (the caller's thread, never waiting for inference) -> `intake.py`: check, decode raw or compressed,
   shrink, rectify, write the model's ring and the geometry's grey frames;
2. `scheduler.py`: every `window_hop` accepted frames the newest window goes to the worker thread (a newer one
   replaces a window still waiting);
3. on the worker: `model_stage.py` runs the backend and stitches depth, readout poses and tracks across windows;
4. `geometry_stage.py`: egomotion, depth fusion and point refinement at camera resolution;
5. `on_output`, once per frame, with the frame's own stamp and frame id.

Frames that leave the ring before any window covers them are counted as dropped.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from ..runtime import Backend, IOSpec
from .geometry_stage import GeometryStage
from .intake import FrameIntake, Window
from .model_stage import ModelStage
from .output import FrameOutput, StreamStats
from .scheduler import WindowScheduler
from .settings import StreamConfig


def trained_heads(spec: IOSpec, config: StreamConfig, log: logging.Logger) -> tuple[str, ...]:
    """The heads the stream uses: those the model was trained to give (an untrained head's output is noise
    that looks like an answer). Says once which are left out; a setting that needs one of them is an error."""
    heads = spec.trained_heads
    if not heads:
        raise ValueError(f"the model has no trained head (its heads {', '.join(spec.heads)} are all fresh weights): "
                         f"train its readouts first (docs/training.md)")
    if spec.untrained:
        log.warning(f"the model's {', '.join(spec.untrained)} head{'s' if len(spec.untrained) > 1 else ''} "
                    f"{'were' if len(spec.untrained) > 1 else 'was'} never trained: not used or published")
    if config.egomotion in ("readout", "fused") and "pose" not in heads:
        raise ValueError(f"egomotion {config.egomotion} needs the 4DS pose head, which this model "
                         f"{'never trained' if 'pose' in spec.heads else 'does not have'}")
    return heads


class StreamingPipeline:
    def __init__(self, backend: Backend, config: StreamConfig, on_output: Callable[[FrameOutput], None],
                 log: logging.Logger | None = None):
        config.validate()
        spec = backend.spec
        if config.window_len != spec.clip[0]:
            raise ValueError(f"window_len {config.window_len} does not match the model's {spec.clip[0]} frames")
        self.backend, self.on_output = backend, on_output
        self.log = log or logging.getLogger("fourds_ros.streaming")
        self.heads = trained_heads(spec, config, self.log)
        self.stats = StreamStats()
        self.model = ModelStage(backend, config, self.stats, self.log, self.heads)
        self.geometry = GeometryStage(config, self.heads, self.model.points is not None, self.log)
        self.intake = FrameIntake(config, spec.clip, self.geometry.needs_frames, self.stats, self.log)
        self.scheduler = WindowScheduler(self.intake, config, self._process, self.stats, self.log)
        self._epoch = -1  # the stream of the last processed window

    # Subscription side ------------------------------------------------------
    def push(self, encoding: str, height: int, width: int, step: int, data, stamp_ns: int, frame_id: str) -> None:
        """Accept one camera frame: a sensor_msgs/Image encoding, or `contract.COMPRESSED` for jpeg/png bytes.
        Raises `ImageError` (the frame is rejected, nothing else changes)."""
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
            if self.intake.admit(frame, stamp_ns, frame_id):
                self.scheduler.frame_accepted()

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

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no window is pending or running (offline evaluation: process every window)."""
        return self.scheduler.wait_idle(timeout)

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

    def close(self) -> None:
        self.scheduler.close()
        self.backend.close()

    # Worker side --------------------------------------------------------------
    def _process(self, window: Window, clip: np.ndarray) -> None:
        # Windows of a stream that has since restarted are still processed: their frames are good.
        if window.epoch != self._epoch:
            self._epoch = window.epoch
            self.model.reset()
            self.geometry.reset()
        started = time.monotonic()
        result = self.model.run(window, clip)
        if result is None:
            return
        self.geometry.run(window, result)
        # A window's latency is all of its work: inference, stitching, the geometric stage.
        self.stats.latencies_s.append(time.monotonic() - started)
        self.stats.max_latency_s = max(self.stats.max_latency_s, self.stats.latencies_s[-1])
        for o in result.outputs:
            self.on_output(o)
        self.model.emitted(result.outputs)
