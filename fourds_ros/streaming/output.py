"""What the streaming core hands out: each camera frame's output, and the counters behind the stream's health."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .camera import PixelMap
from .frames import FrameInfo
from .tracks import TrackFrame


@dataclass
class FrameOutput:
    info: FrameInfo
    pixel_map: PixelMap  # model pixels -> source pixels
    source_size: tuple[int, int]  # (height, width) of the camera image
    depth: np.ndarray | None = None  # (h, w) float32 metres at model resolution
    depth_confidence: np.ndarray | None = None  # (h, w) float32 in [0, 1]: how far to trust each depth pixel
    window_frames: int = 0  # distinct frames in the window that gave this output (fewer than its length: partial)
    world_from_camera: np.ndarray | None = None  # (4, 4)
    pose_covariance: np.ndarray | None = None  # (6, 6): x, y, z, rotation about x, y, z (nav_msgs/Odometry order)
    twist: np.ndarray | None = None  # (6,): velocity since the last frame, m/s then rad/s, camera frame (`twist.py`)
    twist_covariance: np.ndarray | None = None  # (6, 6), the twist's order
    egomotion_source: str | None = None  # which stage answered for the pose: standing, geometry, fused, readout, interpolated
    points: TrackFrame | None = None
    boxes: TrackFrame | None = None
    camera: str = ""  # the camera's name in a rig (`StreamingPipeline` cameras); '' for a single camera


@dataclass
class StreamStats:
    """Counters each stage adds to (intake, scheduler, model stage); read through `StreamingPipeline.health`."""

    frames_received: int = 0
    frames_accepted: int = 0
    frames_rejected: int = 0  # bad images, duplicates
    frames_dropped: int = 0  # accepted but never covered by a processed window
    frames_emitted: int = 0
    windows_requested: int = 0
    windows_processed: int = 0
    windows_dropped: int = 0  # replaced while pending by a newer window
    windows_nonfinite: int = 0
    windows_partial: int = 0  # windows of a stream's first frames, their first frame repeated
    resets: int = 0
    latencies_s: deque = field(default_factory=lambda: deque(maxlen=256))  # the last 256 windows
    max_latency_s: float = 0.0  # the slowest window of the whole run
    arrivals: deque = field(default_factory=lambda: deque(maxlen=64))

    def input_rate_hz(self) -> float:
        if len(self.arrivals) < 2:
            return 0.0
        span = self.arrivals[-1] - self.arrivals[0]
        return (len(self.arrivals) - 1) / span if span > 0 else 0.0

    def health(self) -> dict[str, object]:
        """The counters and rates as a flat snapshot (diagnostics values)."""
        latencies = list(self.latencies_s)
        return {
            "input_rate_hz": f"{self.input_rate_hz():.2f}",
            "window_latency_mean_ms": f"{1e3 * np.mean(latencies):.1f}" if latencies else "nan",
            "window_latency_max_ms": f"{1e3 * self.max_latency_s:.1f}" if latencies else "nan",  # the whole run
            "frames_received": self.frames_received, "frames_accepted": self.frames_accepted,
            "frames_rejected": self.frames_rejected, "frames_dropped": self.frames_dropped,
            "frames_emitted": self.frames_emitted, "windows_processed": self.windows_processed,
            "windows_dropped": self.windows_dropped, "windows_nonfinite": self.windows_nonfinite,
            "windows_partial": self.windows_partial,
            "stream_resets": self.resets,
        }
