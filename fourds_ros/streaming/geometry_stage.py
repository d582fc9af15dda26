"""The geometry stage: geometry behind the model's outputs, at the camera's resolution.

- Egomotion (`egomotion.py`): each frame's pose from feature tracks and the model's depth, in frame order; by
  default as the frame arrives (`track`, before its window has been through the model), the window's depth
  joining the local map when it comes back (`run`).
- Depth fusion: the newest frame's depth triangulated from dense flow (`flow_depth.py`), kept as world points
  (`depth_points.py`) and fused into every new frame's depth (`depth_fusion.py`).
- Point refinement (`refine.py`): the model's point tracks refined with Lucas-Kanade on the grey frames.
- Depth confidence: each depth pixel's, from what produced it (`depth_fusion.py`).

Without camera_info the camera is taken to be a pinhole of `NOMINAL_FOV_DEG` (said once in the log).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

import numpy as np

from .camera import depth_at_pixels
from .depth_fusion import DepthFusion, depth_confidence
from .depth_points import DepthPoints
from .egomotion import GeometricOdometry, MotionEstimate
from .flow_depth import FlowDepth
from .geometry import interpolate_pose, pinhole
from .intake import Window
from .model_stage import ModelResult
from .output import FrameOutput
from .refine import PointRefiner
from .settings import StreamConfig
from .twist import with_scale

NOMINAL_FOV_DEG = 60.0  # horizontal field of view assumed for a camera without camera_info
# How far behind a live camera the tracking may fall before frames are left to their windows: a pose a tenth of a
# second late still serves a controller, and one slow frame (a solve written back, the interpreter busy) is absorbed.
MAX_TRACKING_LAG_S = 0.1
# Poses tracked on arrival are kept until the window that emits their frame is back (`_place`), however slow the
# model; this only bounds them when no window comes back at all.
TRACKED_KEPT = 4096


class GeometryStage:
    def __init__(self, config: StreamConfig, heads: tuple[str, ...], point_tracks: bool, log: logging.Logger,
                 live: bool = False):
        """`live`: frames arrive in real time (the node): bundle adjustments are solved in a child process, and
        when a frame has waited more than `MAX_TRACKING_LAG_S` since it was received (a queue in the subscription
        or behind the tracking), it is not tracked on arrival but interpolated with its window, so no queue
        builds."""
        self.config, self.log, self.live = config, log, live
        geometric = config.egomotion != "readout" and "pose" in heads
        self.odometry = GeometricOdometry(config.odometry, config.egomotion, log, live) if geometric else None
        self._placed: tuple | None = None  # the last tracked estimate given to a window's frame: it, stamp, epoch
        # The readout a fused pose blends in is only there once the window is back.
        self.on_arrival = geometric and config.odometry.on_arrival and config.egomotion == "geometric"
        self.lock = threading.Lock()  # on arrival: tracking (the camera's thread) and the map's update (the worker)
        self._tracked: OrderedDict[tuple[int, int], MotionEstimate] = OrderedDict()  # (epoch, seq) -> estimate
        self._tracking_epoch: int | None = None
        self.refiner = PointRefiner(config.point_visibility) if config.refine_points and point_tracks else None
        fuse = geometric and config.fuse_depth and "depth" in heads
        self.fusion = DepthFusion(config.depth_fusion) if fuse else None
        self.flow_depth = FlowDepth(config.flow_depth) if fuse else None
        self.depth_points = DepthPoints() if fuse else None
        self._last_geometry_stamp = 0
        self._last_fused_ns: int | None = None  # the last frame whose depth was fused
        self._nominal_reported = False
        self._model_grid_cache: tuple | None = None  # (key, geometry pixels x, y of the model's pixel centres)

    @property
    def needs_frames(self) -> bool:
        """Whether the intake keeps grey frames for this stage."""
        return self.odometry is not None or self.refiner is not None

    def reset(self) -> None:
        """A new stream's first window (on arrival, the odometry started over with the stream's first frame)."""
        self._last_fused_ns = None
        odometry = None if self.on_arrival else self.odometry
        for part in (odometry, self.refiner, self.fusion, self.flow_depth, self.depth_points):
            if part is not None:
                part.reset()

    def close(self) -> None:
        if self.odometry is not None:
            self.odometry.close()

    def track(self, arrival: Window, received_ns: int) -> FrameOutput | None:
        """On arrival: the pose of the newest frame (`FrameIntake.arrival`), tracked against the local map before
        its window has been through the model; None for a frame left to its window (live and behind: it was
        received, system clock, at `received_ns`, more than `MAX_TRACKING_LAG_S` ago). The receive time, not the
        stamps: a queue shows, a bag replayed slower than its stamps does not."""
        info, k = arrival.infos[0], self._camera_matrix(arrival)
        late_s = (time.time_ns() - received_ns) * 1e-9
        if self.live and arrival.epoch == self._tracking_epoch and late_s > MAX_TRACKING_LAG_S:
            return None
        with self.lock:
            if arrival.epoch != self._tracking_epoch:  # a restarted stream: a new map from its first frame
                self._tracking_epoch = arrival.epoch
                self.odometry.reset()
            estimate = self.odometry.step(info.seq, info.stamp_ns, arrival.grey[0], k)
            self._tracked[(arrival.epoch, info.seq)] = estimate
            while len(self._tracked) > TRACKED_KEPT:
                self._tracked.popitem(last=False)
        out = FrameOutput(info, arrival.pixel_map, arrival.source_size)
        self._set_pose(out, estimate)
        return out

    def published_on_arrival(self, out: FrameOutput) -> bool:
        """Whether `out`'s pose went to `on_motion` as the frame arrived (`track`). A frame left to its window (live
        and behind, or its tracking failed) gets its interpolated pose published late, with its window: every frame
        has its odometry, and a fuser can judge a late one by its stamp."""
        return self.on_arrival and out.egomotion_source != "interpolated"

    def run(self, window: Window, result: ModelResult) -> None:
        """Poses, depth and point tracks of the window's new frames (`result.outputs`), corrected in place."""
        if self.odometry is not None and result.readout_poses is not None:
            k = self._camera_matrix(window)
            if self.on_arrival:
                self._place(window, result)
            else:
                self._poses(window, result, k)
            if self.fusion is not None and result.depth is not None and result.outputs:
                self._fuse_depth(window, result, k)
        if self.refiner is not None and result.point_frames:
            frames = result.point_frames
            self.refiner.refine(frames, [info.seq for info in window.infos], window.grey, window.geometry_map,
                                result.point_starts)
            # The next window queries the model at the refined position.
            last = frames[-1]
            x, y = window.pixel_map.to_model(last.source_values[:, 0], last.source_values[:, 1])
            result.points.move_to(last.ids, np.stack([x, y], 1))
        for out in result.outputs:  # frames no measurement reached: the model's prior alone
            if out.depth is not None and out.depth_confidence is None:
                out.depth_confidence = depth_confidence(out.depth, self.config.depth_fusion, out.window_frames,
                                                        self.config.window_len)

    def _poses(self, window: Window, result: ModelResult, k: np.ndarray) -> None:
        """Each new frame's pose from the geometric stage, in the order the frames came.

        After the first window, at most `window_hop` frames a window go through the geometry (evenly spaced, the
        newest always): when windows were dropped under load, the frames between are interpolated, so the
        stage's cost per window stays what it is at the configured hop instead of growing with the backlog.
        """
        outputs, depth = result.outputs, result.depth
        count = len(outputs)
        budget = count if self.odometry.last is None else max(1, self.config.window_hop)
        chosen = set(np.unique(np.round(np.linspace(count - 1, 0, min(budget, count))[::-1]).astype(int)).tolist())
        previous = (self.odometry.last, self._last_geometry_stamp) if self.odometry.last is not None else None
        pending: list[FrameOutput] = []
        for n, (o, i) in enumerate(zip(outputs, range(result.first, len(window.infos)))):
            if n not in chosen:
                pending.append(o)
                continue

            depth_at = _depth_at(window, depth, i)
            estimate = self.odometry.step(o.info.seq, o.info.stamp_ns, window.grey[i], k, depth_at,
                                          result.readout_poses[o.info.seq])
            self._set_pose(o, estimate)
            for skipped in pending:  # the step's velocity held over the frames it spans
                start_pose, start_stamp = previous if previous is not None else (estimate, o.info.stamp_ns)
                fraction = (skipped.info.stamp_ns - start_stamp) / max(o.info.stamp_ns - start_stamp, 1)
                skipped.world_from_camera = interpolate_pose(start_pose.world_from_camera, estimate.world_from_camera,
                                                             fraction)
                skipped.pose_covariance, skipped.egomotion_source = o.pose_covariance, "interpolated"
                skipped.twist, skipped.twist_covariance = estimate.twist, estimate.twist_covariance
            pending = []
            previous = (estimate, o.info.stamp_ns)
            self._last_geometry_stamp = o.info.stamp_ns

    def _set_pose(self, out: FrameOutput, estimate: MotionEstimate) -> None:
        out.world_from_camera, out.egomotion_source = estimate.world_from_camera, estimate.source
        out.pose_covariance = with_scale(estimate.covariance, estimate.world_from_camera[:3, 3],
                                         self.config.odometry.metric_scale_sigma)
        out.twist, out.twist_covariance = estimate.twist, estimate.twist_covariance

    def _place(self, window: Window, result: ModelResult) -> None:
        """On arrival: the new frames' poses are those they were published with; the model's depth of every frame
        of the window joins the local map (`GeometricOdometry.place`), for the next keyframe's adjustment."""
        with self.lock:
            self._arrived_poses(window, result.outputs)
            if window.epoch != self._tracking_epoch:
                self._forget_emitted(window, result.outputs)
                return  # the stream has restarted since: its map is not this window's
            for i, info in enumerate(window.infos):
                readout = result.readout_poses.get(info.seq)
                if readout is not None:
                    self.odometry.place(info.seq, _depth_at(window, result.depth, i), readout)
            # The newest depth the tracking can carry: that of the window's newest tracked frame (live and behind,
            # the newest frames may have been left untracked).
            newest = next(((i, e) for i in range(len(window.infos) - 1, -1, -1)
                           if (e := self._tracked.get((window.epoch, window.infos[i].seq))) is not None), None)
            if newest is not None:
                self.odometry.window_placed(window.infos[0].seq, newest[1].world_from_camera,
                                            _depth_at(window, result.depth, newest[0]), window.grey.shape[1:])
            self._forget_emitted(window, result.outputs)

    def _forget_emitted(self, window: Window, outputs: list[FrameOutput]) -> None:
        """Tracked poses of frames emitted before this window's new ones (frames are emitted once, in order), and of
        older streams, are needed no more."""
        if not outputs:
            return
        first = (window.epoch, outputs[0].info.seq)
        while self._tracked and next(iter(self._tracked)) < first:
            self._tracked.popitem(last=False)

    def _arrived_poses(self, window: Window, outputs: list[FrameOutput]) -> None:
        """Each new frame's pose as it was published; a frame not tracked on arrival (live and behind) between the
        tracked ones around it, or held at the last one's pose."""
        tracked = [self._tracked.get((window.epoch, o.info.seq)) for o in outputs]
        placed = self._placed if self._placed is not None and self._placed[2] == window.epoch else None
        for n, (o, estimate) in enumerate(zip(outputs, tracked)):
            if estimate is not None:
                self._set_pose(o, estimate)
                placed = (estimate, o.info.stamp_ns, window.epoch)
                continue
            after = next(((e, later.info.stamp_ns) for e, later in zip(tracked[n:], outputs[n:]) if e is not None),
                         None)
            before = placed[:2] if placed is not None else after
            if before is None:
                continue
            after = after or before
            fraction = (o.info.stamp_ns - before[1]) / max(after[1] - before[1], 1)
            self._set_pose(o, after[0])
            o.world_from_camera = interpolate_pose(before[0].world_from_camera, after[0].world_from_camera,
                                                   min(max(fraction, 0.0), 1.0))
            o.egomotion_source = "interpolated"
        self._placed = placed

    def _fuse_depth(self, window: Window, result: ModelResult, k: np.ndarray) -> None:
        """Each new frame's depth with the correction of `depth_fusion.py` from the triangulated points that
        project into it (`depth_points.py`). The newest frame of the window is measured (`flow_depth.py`): flow
        to remembered earlier frames and the motion between them; once a window, so the cost does not grow with
        the hop. Without points in view, the last correction, aged."""
        depth, outputs = result.depth, result.outputs
        x, y = self._model_grid(depth.shape[1:], window)
        newest, last = len(window.infos) - 1, outputs[-1]
        new = list(zip(range(result.first, len(window.infos)), outputs))
        # The window's frames are references before the newest is measured: the nearest frame that gives the
        # baseline keeps the flow short (a fast camera moves tens of pixels a frame).
        for i, out in new:
            if out.egomotion_source in ("geometry", "fused"):
                self.flow_depth.remember(window.grey[i], out.world_from_camera)
        # Only a measured translation triangulates: a pure rotation's pose has none by construction.
        if last.egomotion_source in ("geometry", "fused") and self.flow_depth.fine_enough(k):
            references = self.flow_depth.references(last.world_from_camera, float(np.nanmedian(depth[newest])))
            measurement = self.flow_depth.consistent_depth(window.grey[newest], references, k, last.world_from_camera,
                                                           x, y) if references else None
            if measurement is not None:
                self.depth_points.add(*measurement, x, y, k, last.world_from_camera, last.info.stamp_ns)
        to_model = lambda u, v: window.pixel_map.to_model(*window.geometry_map.to_source(u, v))  # noqa: E731
        for i, out in new:
            stamp = out.info.stamp_ns
            self.depth_points.forget_before(stamp - int(self.fusion.config.horizon_s * 1e9))
            projected = self.depth_points.project(out.world_from_camera, k, to_model, depth.shape[1:])
            fresh = projected is not None and self.fusion.update(
                depth[i], *projected, window.pixel_map.scale_y / window.pixel_map.scale_x, self.depth_points.stamp_ns)
            if not fresh and out.egomotion_source != "standing" and self._last_fused_ns is not None:
                self.fusion.moved(max(stamp - self._last_fused_ns, 0) * 1e-9)
            self._last_fused_ns = stamp
            self.fusion.apply(out.depth, stamp)  # in place: out.depth is this frame's slice of the window's depth
            out.depth_confidence = self.fusion.confidence(out.depth, stamp, out.window_frames, self.config.window_len)

    def _model_grid(self, shape: tuple[int, int], window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Geometry pixels of the model's pixel centres (computed once per stream geometry)."""
        key = (shape, window.pixel_map, window.geometry_map)
        if self._model_grid_cache is None or self._model_grid_cache[0] != key:
            y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
            x, y = window.pixel_map.to_source(x, y)
            self._model_grid_cache = (key, *window.geometry_map.to_model(x, y))
        return self._model_grid_cache[1:]

    def _camera_matrix(self, window: Window) -> np.ndarray:
        """The camera matrix at geometry resolution; without camera_info, a nominal pinhole."""
        k = window.camera_matrix
        if k is None:
            k = pinhole(*window.source_size, NOMINAL_FOV_DEG)
            if not self._nominal_reported:
                self._nominal_reported = True
                self.log.warning(f"no camera intrinsics (camera_info missing or with zero focal length): egomotion "
                                 f"assumes a {NOMINAL_FOV_DEG:.0f}-degree horizontal field of view")
        return window.geometry_map.intrinsics_to_model(k)


def _depth_at(window: Window, depth: np.ndarray | None, i: int):
    """The model's depth of the window's frame `i` at geometry pixels `(N, 2)` (NaN where unknown)."""
    def depth_at(points: np.ndarray) -> np.ndarray:
        if depth is None or not len(points):
            return np.full(len(points), np.nan)
        x, y = window.geometry_map.to_source(points[:, 0], points[:, 1])
        x, y = window.pixel_map.to_model(x, y)
        return depth_at_pixels(depth[i], x, y)
    return depth_at
