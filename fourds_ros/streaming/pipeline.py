"""The streaming core: camera frames in, per-frame depth, pose and tracks out. No ROS in here.

Threads: `push` runs on the caller's (subscription) thread and never waits for
inference: it decodes, resizes into the ring and, every `window_hop` accepted
frames, copies the newest window into the single pending slot. A worker
thread takes the pending window, runs the backend and stitches the result. If
the model is slower than the hop, a newer window replaces the pending one
(counted as dropped), so latency stays bounded instead of queueing.

Each frame's output is emitted once, with its own stamp and frame id, by the
first processed window that contains it after the last emitted frame; frames
that leave the ring before any window covers them are counted as dropped.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..runtime import Backend, pad_queries
from .camera import PixelMap, Rectifier, depth_at_pixels, pinhole
from .depth_fusion import DepthFusion
from .depth_points import DepthPoints
from .egomotion import MODES as EGOMOTION_MODES
from .egomotion import EgomotionConfig, GeometricOdometry
from .flow_depth import FlowDepth
from .frames import FrameInfo, FramePreprocessor, FrameRing, GeometryFrames, check_pixel_count, \
    converted_encoding, image_view, shrink, shrink_factor, shrink_map
from .refine import VISIBILITY as POINT_VISIBILITY
from .refine import PointRefiner
from .stitching import DepthAligner, Trajectory, interpolate_pose
from .tracks import SeedInbox, TrackFrame, TrackSet, window_queries


NOMINAL_FOV_DEG = 60.0  # horizontal field of view assumed for a camera without camera_info


@dataclass
class StreamConfig:
    window_len: int = 16
    window_hop: int = 4  # new frames between inferences: smaller = lower latency, more compute
    frame_stride: int = 1  # take every k-th camera frame
    resize_policy: str = "resize"
    depth_affine: bool = False  # fit a shift as well as a scale when stitching depth
    point_tracks: int = 32  # point tracks kept alive (0: off)
    point_seeding: str = "corners"  # "grid", or "none": only seeds given with add_point_seed
    max_invisible_frames: int = 8
    flush_after_s: float = 0.5  # no frame for this long: run the newest window for frames still waiting (0: never)
    egomotion: str = "geometric"  # geometric | readout | fused (see egomotion.py)
    refine_points: bool = True  # refine point tracks at camera resolution (see refine.py)
    fuse_depth: bool = True  # correct the model's depth with depth triangulated from flow (depth_fusion.py)
    rectify: bool = True  # undistort frames whose camera_info carries a distortion model
    point_visibility: str = "refined"  # readout | refined | both: which occlusion signal `visible` carries
    geometry_width: int = 320  # grey frames for the geometric stage are at most this wide
    max_image_pixels: int = 50_000_000  # larger frames are rejected before anything is allocated for them

    def validate(self) -> None:
        if self.window_len < 2:
            raise ValueError(f"window_len must be at least 2, got {self.window_len}")
        if not 1 <= self.window_hop <= self.window_len:
            raise ValueError(f"window_hop must be in [1, window_len={self.window_len}], got {self.window_hop}")
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride must be at least 1, got {self.frame_stride}")
        if self.point_seeding not in ("corners", "grid", "none"):
            raise ValueError(f"point_seeding must be 'corners', 'grid' or 'none', got {self.point_seeding!r}")
        if self.egomotion not in EGOMOTION_MODES:
            raise ValueError(f"egomotion must be one of {', '.join(EGOMOTION_MODES)}, got {self.egomotion!r}")
        if self.point_visibility not in POINT_VISIBILITY:
            raise ValueError(f"point_visibility must be one of {', '.join(POINT_VISIBILITY)}, "
                             f"got {self.point_visibility!r}")
        if self.geometry_width < 32:
            raise ValueError(f"geometry_width must be at least 32, got {self.geometry_width}")
        if self.max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be positive, got {self.max_image_pixels}")


@dataclass
class FrameOutput:
    info: FrameInfo
    pixel_map: PixelMap  # model pixels -> source pixels
    source_size: tuple[int, int]  # (height, width) of the camera image
    depth: np.ndarray | None = None  # (h, w) float32 metres at model resolution
    world_from_camera: np.ndarray | None = None  # (4, 4)
    pose_covariance: np.ndarray | None = None  # (6, 6): x, y, z, rotation about x, y, z (nav_msgs/Odometry order)
    egomotion_source: str | None = None  # which stage answered for the pose: standing, geometry, rotation, readout
    points: TrackFrame | None = None
    boxes: TrackFrame | None = None


@dataclass
class StreamStats:
    frames_received: int = 0
    frames_accepted: int = 0
    frames_rejected: int = 0  # bad images, duplicates
    frames_dropped: int = 0  # accepted but never covered by a processed window
    frames_emitted: int = 0
    windows_requested: int = 0
    windows_processed: int = 0
    windows_dropped: int = 0  # replaced while pending by a newer window
    windows_nonfinite: int = 0
    resets: int = 0
    latencies_s: deque = field(default_factory=lambda: deque(maxlen=256))  # the last 256 windows
    max_latency_s: float = 0.0  # the slowest window of the whole run
    arrivals: deque = field(default_factory=lambda: deque(maxlen=64))

    def input_rate_hz(self) -> float:
        if len(self.arrivals) < 2:
            return 0.0
        span = self.arrivals[-1] - self.arrivals[0]
        return (len(self.arrivals) - 1) / span if span > 0 else 0.0


@dataclass
class _Job:
    epoch: int
    infos: list[FrameInfo]
    pixel_map: PixelMap
    source_size: tuple[int, int]
    requested_at: float
    grey: np.ndarray | None = None  # (T, h, w) geometry-resolution frames of the window
    geometry_map: PixelMap | None = None  # geometry pixels -> camera pixels


class StreamingPipeline:
    def __init__(self, backend: Backend, config: StreamConfig, on_output: Callable[[FrameOutput], None],
                 log: logging.Logger | None = None):
        config.validate()
        frames, height, width = backend.spec.clip
        if config.window_len != frames:
            raise ValueError(f"window_len {config.window_len} does not match the model's {frames} frames")
        self.backend, self.config, self.on_output = backend, config, on_output
        self.log = log or logging.getLogger("fourds_ros.streaming")
        self.preprocess = FramePreprocessor(height, width, config.resize_policy)
        self.ring = FrameRing(config.window_len, height, width)
        self.stats = StreamStats()
        # Two window buffers: the pending one (written under the lock) and the one being inferred.
        self._pending_buf = np.zeros((1, frames, height, width, 3), np.uint8)
        self._active_buf = np.zeros_like(self._pending_buf)
        self._pending: _Job | None = None
        self._lock = threading.Condition()
        self._epoch = 0
        self._source: tuple[int, int, str] | None = None
        self._last_stamp: int | None = None
        self._received_since_reset = 0
        self._requested_upto = -1
        self._stop = False
        # Worker-owned state.
        self._worker_epoch = -1
        self._last_emitted = -1
        self.depth = DepthAligner(config.depth_affine)
        self.trajectory = Trajectory(memory=4 * frames)
        heads = backend.spec.heads
        self._camera_matrix: np.ndarray | None = None  # of the frames the model sees (camera_info K, rectified)
        self._rectifier: Rectifier | None = None  # works on the shrunk frames of a camera of `_rectified_size`
        self._rectified_size: tuple[int, int] | None = None
        self._view_size: tuple[int, int] | None = None  # (height, width) of the current stream's shrunk frames
        self._to_camera = shrink_map(1)  # shrunk frame pixels -> camera pixels
        self._last_geometry_stamp = 0
        self._nominal_reported = False
        self.points = TrackSet("points", min(config.point_tracks, backend.spec.max_points),
                               config.max_invisible_frames) if "points" in heads and config.point_tracks else None
        self.boxes = TrackSet("boxes", backend.spec.max_boxes, config.max_invisible_frames) if "boxes" in heads else None
        self.geometric = config.egomotion != "readout" and "pose" in heads
        self.refiner = PointRefiner(config.point_visibility) if config.refine_points and self.points else None
        needs_geometry = self.geometric or self.refiner is not None
        self.geometry = GeometryFrames(config.window_len, config.geometry_width) if needs_geometry else None
        self.odometry = GeometricOdometry(EgomotionConfig(mode=config.egomotion), self.log) if self.geometric else None
        self.fusion = DepthFusion() if self.geometric and config.fuse_depth and "depth" in heads else None
        self.flow_depth = FlowDepth() if self.fusion is not None else None
        self.depth_points = DepthPoints() if self.fusion is not None else None
        self._model_grid_cache: tuple | None = None  # (key, geometry pixels x, y of the model's pixel centres)
        self._seeds = SeedInbox()
        self._busy = False
        self._worker = threading.Thread(target=self._run, name="fourds-inference", daemon=True)
        self._worker.start()

    # Subscription side ------------------------------------------------------
    def push(self, encoding: str, height: int, width: int, step: int, data, stamp_ns: int, frame_id: str) -> None:
        """Accept one camera frame. Raises `ImageError` (the frame is rejected, nothing else changes)."""
        self.stats.frames_received += 1
        try:
            check_pixel_count(height, width, self.config.max_image_pixels)
            view = image_view(encoding, height, width, step, data)
        except ValueError:
            self.stats.frames_rejected += 1
            raise
        encoding = converted_encoding(encoding)  # YUV, Bayer and 16-bit frames arrive converted
        factor = self._shrink_factor(height, width)
        view = shrink(view, factor)
        rectifier = self._rectifier
        if rectifier is not None and self._rectified_size == (height, width):
            view = rectifier(view)
            if view.ndim == 2:
                view = view[..., None]
        with self._lock:
            self.stats.arrivals.append(time.monotonic())
            source = (height, width, encoding)
            if self._source is not None and source[:2] != self._source[:2]:
                self._reset(f"image size changed from {self._source[1]}x{self._source[0]} to {width}x{height}")
            if self._last_stamp is not None and stamp_ns < self._last_stamp:
                self._reset(f"stamps went backwards ({self._last_stamp} -> {stamp_ns} ns; bag loop?)")
            elif self._last_stamp is not None and stamp_ns == self._last_stamp:
                self.stats.frames_rejected += 1
                self.log.warning(f"dropping a frame with a repeated stamp {stamp_ns} ns")
                return
            self._source, self._last_stamp = source, stamp_ns
            self._view_size, self._to_camera = view.shape[:2], shrink_map(factor)
            self._received_since_reset += 1
            if (self._received_since_reset - 1) % self.config.frame_stride:
                return
            self.preprocess(view, encoding, self.ring.next_slot())
            if self.geometry is not None:
                self.geometry.write(view, encoding, self.ring.count)
            self.ring.commit(stamp_ns, frame_id)
            self.stats.frames_accepted += 1
            count, length = self.ring.count, self.config.window_len
            if count >= length and (count - length) % self.config.window_hop == 0:
                self._request_window()

    def set_camera_matrix(self, k: np.ndarray | None, distortion: tuple[str, np.ndarray] | None = None,
                          size: tuple[int, int] | None = None) -> None:
        """The 3x3 intrinsics of the camera images (from camera_info); None or zero focal length: unknown.

        With `distortion` = (camera_info model, coefficients) and the image `size`, frames are undistorted before
        the model when `config.rectify` is set (a new calibration rebuilds the maps; the same one keeps them).
        """
        k = None if k is None else np.asarray(k, np.float64).reshape(3, 3)
        if k is None or k[0, 0] <= 0 or k[1, 1] <= 0:
            self._camera_matrix = None
            return
        rectifier, rectified_k = None, k
        if self.config.rectify and distortion is not None and size is not None and np.any(distortion[1]):
            # Frames are rectified after the shrink on arrival: maps for the shrunk size, the camera matrix of
            # the rectified frames back in camera pixels.
            to_camera = shrink_map(self._shrink_factor(*size))
            small_k = to_camera.intrinsics_to_model(k)
            small_size = (size[0] // int(to_camera.scale_y), size[1] // int(to_camera.scale_x))
            current = self._rectifier
            key = (distortion[0], tuple(small_k.ravel()), tuple(np.asarray(distortion[1], np.float64).ravel()),
                   small_size)
            rectifier = current if current is not None and current.key == key else \
                Rectifier(small_k, *distortion, small_size)
            rectified_k = to_camera.intrinsics_to_source(rectifier.k)
        with self._lock:
            self._rectifier, self._rectified_size = rectifier, None if rectifier is None else tuple(size)
            self._camera_matrix = rectified_k

    @property
    def camera_matrix(self) -> np.ndarray | None:
        """The intrinsics of the frames the model sees (after rectification)."""
        return self._camera_matrix

    def add_box_seed(self, stamp_ns: int, box: np.ndarray, track_id: int | None = None) -> None:
        """Track a box `(x_min, y_min, x_max, y_max)` in source pixels from the frame stamped `stamp_ns`."""
        self._seeds.add("boxes", stamp_ns, box, track_id)

    def add_point_seed(self, stamp_ns: int, xy: np.ndarray, track_id: int | None = None) -> None:
        """Track a point `(x, y)` in source pixels from the frame stamped `stamp_ns`."""
        self._seeds.add("points", stamp_ns, xy, track_id)

    def flush(self) -> None:
        """Run the newest window now for frames no window has covered yet (end of a recording)."""
        with self._lock:
            self._request_remaining()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no window is pending or running (offline evaluation: process every window)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending is not None or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def _shrink_factor(self, height: int, width: int) -> int:
        """Frames are shrunk on arrival to what the model (twice its size, for the final area resize) and the
        geometric stage (`geometry_width`) need."""
        _, model_h, model_w = self.backend.spec.clip
        need_w = max(2 * model_w, self.config.geometry_width if self.geometry is not None else 0)
        return shrink_factor(height, width, 2 * model_h, need_w)

    def _request_window(self) -> None:
        """A window of the current stream's newest frames (caller holds the lock)."""
        if self._pending is not None:
            self.stats.windows_dropped += 1
        infos = self.ring.copy_window(self.config.window_len, self._pending_buf[0])
        self._requested_upto = infos[-1].seq
        self._pending = _Job(self._epoch, infos, self.preprocess.pixel_map(*self._view_size).then(self._to_camera),
                             self._source[:2], time.monotonic())
        if self.geometry is not None:
            self._pending.grey = self.geometry.copy_window([info.seq for info in infos])
            self._pending.geometry_map = self.geometry.pixel_map().then(self._to_camera)
        self.stats.windows_requested += 1
        self._lock.notify()

    def _flush_if_idle(self) -> None:
        """The stream paused (or a bag ended) with frames after the last window: run the newest window now."""
        if self.stats.arrivals and time.monotonic() - self.stats.arrivals[-1] >= self.config.flush_after_s:
            self._request_remaining()

    def _request_remaining(self) -> None:
        last = self.ring.last
        if last is not None and self.ring.count >= self.config.window_len and last.seq > self._requested_upto:
            self._request_window()

    def _reset(self, reason: str) -> None:
        self.log.warning(f"restarting the stream: {reason}")
        last = self.ring.last
        if last is not None and last.seq > self._requested_upto:
            if self.ring.count >= self.config.window_len:
                self._request_window()  # the old stream's last frames are good: finish them
            else:
                self.stats.frames_dropped += self.ring.count  # too few for a window: nothing can cover them
        self.ring.reset()
        self._epoch += 1
        self._received_since_reset = 0
        self._requested_upto = -1
        self.stats.resets += 1

    # Worker side --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                while self._pending is None and not self._stop:
                    if not self._lock.wait(timeout=self.config.flush_after_s or None):
                        self._flush_if_idle()
                if self._stop:
                    return
                job = self._pending
                self._pending = None
                self._busy = True
                self._pending_buf, self._active_buf = self._active_buf, self._pending_buf
            try:
                self._process(job, self._active_buf)
            except Exception:  # a failing window must not kill the stream
                self.log.exception("window processing failed; continuing with the next window")
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()

    def _process(self, job: _Job, window: np.ndarray) -> None:
        # Windows of a stream that has since restarted are still processed: their frames are good.
        if job.epoch != self._worker_epoch:
            self._worker_epoch, self._last_emitted = job.epoch, -1
            self.depth.reset()
            self.trajectory.reset()
            if self.odometry is not None:
                self.odometry.reset()
            if self.refiner is not None:
                self.refiner.reset()
            if self.fusion is not None:
                self.fusion.reset()
                self.flow_depth.reset()
                self.depth_points.reset()
            for tracks in (self.points, self.boxes):
                if tracks is not None:
                    tracks.reset()
        seqs = [info.seq for info in job.infos]
        publish_from = next((i for i, s in enumerate(seqs) if s > self._last_emitted), len(seqs))
        self._seeds.deliver([info.stamp_ns for info in job.infos], seqs, job.pixel_map,
                            {"points": self.points, "boxes": self.boxes}, self.log)
        point_q, box_q = window_queries(self.points, self.boxes, window[0], seqs, publish_from,
                                        self.config.point_seeding)
        started = time.monotonic()
        out = self.backend.run(window, pad_queries(self.backend.spec, point_q.array(3) if point_q else None,
                                                   box_q.array(5) if box_q else None))
        bad = [name for name, value in out.items() if not np.isfinite(value).all()]
        if bad:
            self.stats.windows_nonfinite += 1
            self.log.warning(f"dropping a window: non-finite values in {', '.join(bad)}")
            return
        self.stats.windows_processed += 1
        missed = seqs[publish_from] - self._last_emitted - 1 if publish_from < len(seqs) and self._last_emitted >= 0 else 0
        self.stats.frames_dropped += max(missed, 0)
        outputs = [FrameOutput(job.infos[i], job.pixel_map, job.source_size) for i in range(publish_from, len(seqs))]
        scale = depth = None
        if "depth" in out:
            depth = out["depth"][0, ..., 0]
            scale, _ = self.depth.align(seqs, depth)
            for o, i in zip(outputs, range(publish_from, len(seqs))):
                o.depth = depth[i]
        if "pose" in out:
            poses = self.trajectory.add_window(seqs, out["pose"][0], scale)
            if self.geometric:
                self._geometric_poses(job, outputs, publish_from, depth, poses)
                if self.fusion is not None and depth is not None and outputs:
                    self._fuse_depth(job, outputs, publish_from, depth)
            else:
                for o in outputs:
                    o.world_from_camera, o.egomotion_source = poses[o.info.seq], "readout"
        for tracks, queries, key, attr in ((self.points, point_q, "points", "points"),
                                           (self.boxes, box_q, "boxes", "boxes")):
            if tracks is None or queries is None or key not in out:
                continue
            n = len(queries.ids)
            frames = tracks.update(seqs, publish_from, queries.ids, out[key][0, :n], out[f"{key}_visible_logit"][0, :n])
            for frame in frames:
                frame.to_source(job.pixel_map)
            if key == "points" and self.refiner is not None and frames:
                seeded = {}
                for track_id, (seq, value) in tracks.started.items():
                    x, y = job.pixel_map.to_source(value[0], value[1])
                    seeded[track_id] = (seq, (x, y))
                self.refiner.refine(frames, seqs, job.grey, job.geometry_map, seeded)
                # The next window queries the model at the refined position.
                last = frames[-1]
                x, y = job.pixel_map.to_model(last.source_values[:, 0], last.source_values[:, 1])
                tracks.move_to(last.ids, np.stack([x, y], 1))
            for o, frame in zip(outputs, frames):
                setattr(o, attr, frame)
        # A window's latency is all of its work: inference, stitching, the geometric stage.
        self.stats.latencies_s.append(time.monotonic() - started)
        self.stats.max_latency_s = max(self.stats.max_latency_s, self.stats.latencies_s[-1])
        for o in outputs:
            self.on_output(o)
        self.stats.frames_emitted += len(outputs)
        if outputs:
            self._last_emitted = outputs[-1].info.seq

    def _geometric_poses(self, job: _Job, outputs: list[FrameOutput], publish_from: int, depth: np.ndarray | None,
                         readout_poses: dict[int, np.ndarray]) -> None:
        """Each new frame's pose from the geometric stage (`egomotion.py`), in the order the frames came.

        After the first window, at most `window_hop` frames a window go through the geometry (evenly spaced, the
        newest always):
        when windows were dropped under load, the frames between are interpolated, so the stage's cost
        per window stays what it is at the configured hop instead of growing with the backlog.
        """
        k = self._geometry_camera_matrix(job)
        model_map, geometry_map = job.pixel_map, job.geometry_map
        count = len(outputs)
        # The stream's first window goes through whole; after that a window brings `window_hop` new frames
        # unless windows were dropped, and those backlogs are what the budget cuts.
        budget = count if self.odometry.last is None else max(1, self.config.window_hop)
        chosen = set(np.unique(np.round(np.linspace(count - 1, 0, min(budget, count))[::-1]).astype(int)).tolist())
        previous = (self.odometry.last, self._last_geometry_stamp) if self.odometry.last is not None else None
        pending: list[FrameOutput] = []
        for n, (o, i) in enumerate(zip(outputs, range(publish_from, len(job.infos)))):
            if n not in chosen:
                pending.append(o)
                continue

            def depth_at(points: np.ndarray, i=i) -> np.ndarray:
                if depth is None or not len(points):
                    return np.full(len(points), np.nan)
                x, y = geometry_map.to_source(points[:, 0], points[:, 1])
                x, y = model_map.to_model(x, y)
                return depth_at_pixels(depth[i], x, y)
            estimate = self.odometry.step(o.info.seq, job.grey[i], k, depth_at, readout_poses[o.info.seq])
            o.world_from_camera, o.pose_covariance = estimate.world_from_camera, estimate.covariance
            o.egomotion_source = estimate.source
            for skipped in pending:
                start_pose, start_stamp = previous if previous is not None else (estimate, o.info.stamp_ns)
                fraction = (skipped.info.stamp_ns - start_stamp) / max(o.info.stamp_ns - start_stamp, 1)
                skipped.world_from_camera = interpolate_pose(start_pose.world_from_camera, estimate.world_from_camera,
                                                             fraction)
                skipped.pose_covariance, skipped.egomotion_source = estimate.covariance, "interpolated"
            pending = []
            previous = (estimate, o.info.stamp_ns)
            self._last_geometry_stamp = o.info.stamp_ns

    def _fuse_depth(self, job: _Job, outputs: list[FrameOutput], publish_from: int, depth: np.ndarray) -> None:
        """Each new frame's depth with the correction of `depth_fusion.py` from the triangulated points that
        project into it (`depth_points.py`). The newest frame of the window is measured (`flow_depth.py`): flow
        to remembered earlier frames and the motion between them; once a window, so the cost does not grow with
        the hop. Without points in view, the last correction, aged."""
        k = self._geometry_camera_matrix(job)
        x, y = self._model_grid(depth.shape[1:], job)
        newest, last = len(job.infos) - 1, outputs[-1]
        # The window's frames are references before the newest is measured: the nearest frame that gives the
        # baseline keeps the flow short (a fast camera moves tens of pixels a frame).
        for i, out in zip(range(publish_from, len(job.infos)), outputs):
            if out.egomotion_source in ("geometry", "fused", "rotation"):
                self.flow_depth.remember(job.grey[i], out.world_from_camera)
        # Only a measured translation triangulates: a pure rotation's pose has none by construction.
        if last.egomotion_source in ("geometry", "fused") and self.flow_depth.fine_enough(k):
            references = self.flow_depth.references(last.world_from_camera, float(np.nanmedian(depth[newest])))
            measurement = self.flow_depth.consistent_depth(job.grey[newest], references, k, last.world_from_camera,
                                                          x, y) if references else None
            if measurement is not None:
                self.depth_points.add(*measurement, x, y, k, last.world_from_camera)
        to_model = lambda u, v: job.pixel_map.to_model(*job.geometry_map.to_source(u, v))  # noqa: E731
        for i, out in zip(range(publish_from, len(job.infos)), outputs):
            source, pose = out.egomotion_source, out.world_from_camera
            projected = self.depth_points.project(pose, k, to_model, depth.shape[1:])
            fresh = projected is not None and self.fusion.update(
                depth[i], *projected, job.pixel_map.scale_y / job.pixel_map.scale_x)
            if not fresh and source != "standing":
                self.fusion.moved()
            self.fusion.apply(out.depth)  # in place: out.depth is this frame's slice of the window's depth

    def _model_grid(self, shape: tuple[int, int], job: _Job) -> tuple[np.ndarray, np.ndarray]:
        """Geometry pixels of the model's pixel centres (computed once per stream geometry)."""
        key = (shape, job.pixel_map, job.geometry_map)
        if self._model_grid_cache is None or self._model_grid_cache[0] != key:
            y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
            x, y = job.pixel_map.to_source(x, y)
            self._model_grid_cache = (key, *job.geometry_map.to_model(x, y))
        return self._model_grid_cache[1:]

    def _geometry_camera_matrix(self, job: _Job) -> np.ndarray:
        """The camera matrix at geometry resolution; without camera_info, a nominal 60-degree pinhole."""
        k = self._camera_matrix
        if k is None:
            k = pinhole(*job.source_size, NOMINAL_FOV_DEG)
            if not self._nominal_reported:
                self._nominal_reported = True
                self.log.warning(f"no camera intrinsics (camera_info missing or with zero focal length): egomotion "
                                 f"assumes a {NOMINAL_FOV_DEG:.0f}-degree horizontal field of view")
        return job.geometry_map.intrinsics_to_model(k)

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._worker.join(timeout=10)
        self.backend.close()
