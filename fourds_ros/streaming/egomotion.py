"""Camera motion from feature tracks, a local map and the 4DS depth (after ORB-SLAM's tracking and local
mapping, with DF-VO's use of a learned depth).

Per frame, the tracks are followed with pyramidal Lucas-Kanade (forward-backward checked) on grey frames of at
most `geometry_pixels`, searched from where the constant-velocity motion model puts their map points:
- the camera stands when the tracks that speak for the standing scene moved less than `standing_deg` from the
  keyframe (`standing.py`: a crowd close by must not move it, vibration that swings back neither);
- otherwise the frame is located against the local map (`local_map.py`): the pose that reprojects the tracked
  points best, from the motion model's prediction, with a Huber loss, outliers beyond the chi-square bound
  dropped and the pose refitted (ORB-SLAM's motion-only bundle adjustment). Where the prediction cannot be
  right (under half the points agree), RANSAC PnP starts over. Every point's position comes from the 4DS depth
  where its track started, refined by bundle adjustment, so the translation has the depth's metric scale from
  the first frame on and rotation and translation are one fit (no two-view degeneracy in forward motion); a
  point whose depth is not there yet counts by its epipolar line (`location.SCENE_LOG_SIGMA`);
- a new keyframe is taken when the rotation-compensated parallax since the last passes `keyframe_deg` or too
  few of its tracks are left; fresh corners fill the image (spread over a grid), and the recent keyframes and
  their points are bundle-adjusted (`bundle_adjustment.py`) with the 4DS depth as each point's prior;
- too few tracks, a failed fit or a long gap: the 4DS pose readout's motion since the keyframe answers (on
  arrival, before the readout is back: the motion model's prediction), with a large covariance, and the frame
  starts a new keyframe.

On arrival (`odometry.on_arrival`, the default): each frame is tracked and located as it arrives, so its pose is
published without waiting for its window; a keyframe made then starts its points at the newest depth carried
into its view (`keyframe_depth.py`) and is bundle-adjusted at once; its points take the model's depth of their
own frame as their prior when its window comes back (`place`; only those no later keyframe saw move to it),
which the next keyframe's adjustment builds on.

Modes: `geometric` (the above), `readout` (the pose readout alone, composed across windows), `fused` (per
frame, the located motion since the keyframe and the readout's blended by their covariances).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from . import location, two_view
from .geometry import angle_px, inverse, world_to_pixels
from .keyframe_depth import RecentDepth
from .klt import LucasKanade
from .local_map import Keyframe, LocalMap
from .adjustment_process import Adjuster
from .settings import EGOMOTION_MODES, EgomotionConfig
from .standing import StandingJudge
from .twist import MotionModel, readout_covariance

GRID_CELLS = 48  # cells new corners are spread over (8 x 6 on a 4:3 image)


@dataclass
class MotionEstimate:
    world_from_camera: np.ndarray  # (4, 4)
    covariance: np.ndarray  # (6, 6): x, y, z, rotation about x, y, z
    source: str  # standing | geometry | readout | fused | predicted
    inliers: int = 0
    residual_px: float = float("nan")
    location_covariance: np.ndarray | None = None  # (6, 6) of the pose against the local map (world frame)
    twist: np.ndarray | None = None  # (6,) velocity since the last frame: m/s, then rad/s, camera frame (`twist.py`)
    twist_covariance: np.ndarray | None = None  # (6, 6)


@dataclass
class EgomotionStats:
    frames: int = 0
    by_source: dict = field(default_factory=lambda: {"standing": 0, "geometry": 0, "readout": 0, "fused": 0,
                                                                  "predicted": 0})
    last_inliers: int = 0
    keyframes: int = 0
    bundle_adjustments: int = 0
    seconds: float = 0.0  # tracking, standing and location (bundle adjustment apart)
    adjustment_seconds: float = 0.0


def blend(a: np.ndarray, cov_a: np.ndarray, b: np.ndarray, cov_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-covariance weighted mean of two relative motions (translation, rotation vector)."""
    def vec(pose):
        return np.concatenate([pose[:3, 3], Rotation.from_matrix(pose[:3, :3]).as_rotvec()])
    info_a, info_b = np.linalg.inv(cov_a), np.linalg.inv(cov_b)
    cov = np.linalg.inv(info_a + info_b)
    mean = cov @ (info_a @ vec(a) + info_b @ vec(b))
    out = np.eye(4)
    out[:3, :3] = Rotation.from_rotvec(mean[3:]).as_matrix()
    out[:3, 3] = mean[:3]
    return out, cov


@dataclass
class _Tracks:
    """The live tracks: where they are now, where they were on the current keyframe, their map points and how
    long each has stood still (seconds, while the camera stood). `mapped` is this frame's look-up of their points
    (`LocalMap.positions`: world, usable, origin, views), made once a frame and kept in step with the tracks."""
    now: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    on_keyframe: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    point: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    still_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mapped: tuple | None = None

    def look_up(self, local_map: LocalMap) -> None:
        self.mapped = local_map.positions(self.point)

    def keep(self, mask: np.ndarray) -> None:
        self.now, self.on_keyframe, self.point, self.still_s = \
            self.now[mask], self.on_keyframe[mask], self.point[mask], self.still_s[mask]
        if self.mapped is not None:
            self.mapped = tuple(part[mask] for part in self.mapped)

    def __len__(self) -> int:
        return len(self.now)


class GeometricOdometry:
    """Feed frames in order with `step`; `reset` when the stream restarts."""

    def __init__(self, config: EgomotionConfig, mode: str = "geometric", log: logging.Logger | None = None,
                 adjustment_process: bool = False):
        """`adjustment_process`: bundle adjustments run in a child process while frames are tracked (the node);
        else here, at once (offline scoring and tests: the same frames give the same poses)."""
        config.validate()
        if mode not in EGOMOTION_MODES:
            raise ValueError(f"egomotion must be one of {', '.join(EGOMOTION_MODES)}, got {mode!r}")
        self.config, self.mode = config, mode
        self.log = log or logging.getLogger("fourds_ros.egomotion")
        self.stats = EgomotionStats()
        self.tracker = LucasKanade(window=15, forward_backward_px=config.forward_backward_px)
        self._last_fallback_log = 0.0
        self.adjuster = Adjuster(config, self.stats, self.log, adjustment_process)
        self.reset()

    def close(self) -> None:
        self.adjuster.close()

    def reset(self) -> None:
        self.map = LocalMap(self.config.window_keyframes)
        self.keyframe: Keyframe | None = None
        self._keyframe_tracks = 0  # tracks the keyframe started with
        self.previous: tuple | None = None  # (seq, stamp ns, grey image)
        self.tracks = _Tracks()
        self.k: np.ndarray | None = None
        self.standing = StandingJudge(self.config)
        self.last: MotionEstimate | None = None
        self.motion = MotionModel(self.config)
        self._scene_depth = float("nan")  # median depth of the last keyframe's fresh corners (m)
        self.recent_depth = RecentDepth()  # on arrival: the newest depth, for keyframes made before theirs is back

    # One frame ------------------------------------------------------------------
    def step(self, seq: int, stamp_ns: int, grey: np.ndarray, k: np.ndarray, depth_at=None,
             readout_world_from_camera: np.ndarray | None = None) -> MotionEstimate:
        """Motion of frame `seq` (stamped `stamp_ns`): `grey` at geometry resolution with camera matrix `k`;
        `depth_at(points)` gives the model's depth at geometry pixels `(N, 2)` (NaN where unknown); the readout's
        pose of this frame. On arrival both are None (they come later, through `place`)."""
        started, adjusting = time.perf_counter(), self.adjuster.seconds_here
        if self.k is not None and not np.allclose(self.k, k):
            self.log.info("egomotion: the camera matrix changed; the local map starts over")
            last = self.last
            self.reset()
            self.last = last
        self.k = np.asarray(k, np.float64)
        self.adjuster.collect(self.map, self.k, self.tracks.point)
        previous = self._previous_pose()
        try:
            readout = None if readout_world_from_camera is None else np.asarray(readout_world_from_camera, np.float64)
            estimate = self._step(seq, stamp_ns, grey, depth_at, readout, previous)
        finally:  # the bundle adjustment is counted on its own
            self.stats.seconds += time.perf_counter() - started - (self.adjuster.seconds_here - adjusting)
        self.stats.frames += 1
        self.stats.by_source[estimate.source] += 1
        self.motion.update(self.last, estimate, previous, stamp_ns, self._scene_depth)
        self.last = estimate
        return estimate

    def _step(self, seq, stamp_ns, grey, depth_at, readout, previous: np.ndarray | None) -> MotionEstimate:
        if self.keyframe is None or self.previous is None:
            start = np.eye(4) if self.last is None else self.last.world_from_camera
            covariance = np.zeros((6, 6)) if self.last is None else self.last.covariance
            return self._new_keyframe(seq, stamp_ns, grey, depth_at, start, covariance, readout, "standing")
        gap_s = (stamp_ns - self.previous[1]) * 1e-9
        # From the last frame's pose as the map now has it (`previous`): live, an adjustment that came back since
        # moved it.
        predicted = self.motion.predict(previous, stamp_ns)
        if gap_s > self.config.max_gap_s:
            return self._fallback(seq, stamp_ns, grey, depth_at, readout, predicted, f"a gap of {gap_s:.2f} s")
        self._track(grey, predicted)
        self.previous = (seq, stamp_ns, grey)
        if self.standing.stands(self.tracks, self.k, self.last.source == "standing", stamp_ns, gap_s):
            return self._stand(seq, stamp_ns, grey, depth_at)
        located = self._locate(predicted)
        if isinstance(located, str):
            return self._fallback(seq, stamp_ns, grey, depth_at, readout, predicted, located, tracked=True)
        return self._compose(seq, stamp_ns, grey, depth_at, readout, *located)

    # The last frame and tracking ---------------------------------------------------------
    def _previous_pose(self) -> np.ndarray | None:
        """The last frame's pose as the map now has it: a keyframe's, moved by the bundle adjustment that followed
        it (the twist is the motion between frames, not the adjustment's correction)."""
        if self.last is None:
            return None
        if self.keyframe is not None and self.previous is not None and self.keyframe.seq == self.previous[0]:
            return self.keyframe.world_from_camera
        return self.last.world_from_camera

    def _track(self, grey: np.ndarray, predicted: np.ndarray) -> None:
        """Follow the tracks into `grey`, searched first where the predicted pose puts their points (a car at 10 Hz
        moves them tens of pixels), then, for those that fail, from where they were."""
        tracks, previous = self.tracks, self.previous[2]
        tracks.look_up(self.map)
        if not len(tracks):
            return
        guess = tracks.now
        if self.motion.velocity is not None:
            world, usable, _, views = tracks.mapped
            usable = usable & (views > 0)  # a point on its ray alone has no place to predict
            pixels, depth = world_to_pixels(predicted, self.k, world[usable])
            ahead = depth > 1e-6
            guess = tracks.now.copy()
            guess[np.flatnonzero(usable)[ahead]] = pixels[ahead]
        moved, ok = self.tracker.track(previous, grey, tracks.now, guess)
        if (retry := np.flatnonzero(~ok)).size and self.motion.velocity is not None:
            moved[retry], ok[retry] = self.tracker.track(previous, grey, tracks.now[retry])
        tracks.now = moved
        tracks.keep(ok)

    # Standing ---------------------------------------------------------------------
    def _stand(self, seq, stamp_ns, grey, depth_at) -> MotionEstimate:
        """The camera stands: exactly the keyframe's pose; the keyframe is renewed in place (what stood still
        stays settled) when too few of its tracks are left."""
        kf = self.keyframe
        estimate = MotionEstimate(kf.world_from_camera.copy(), kf.covariance.copy(), "standing", len(self.tracks), 0.0)
        if len(self.tracks) < self._renew_below():
            self._new_keyframe(seq, stamp_ns, grey, depth_at, kf.world_from_camera, kf.covariance,
                               kf.readout_world_from_camera, "standing")
        return estimate

    # Location against the map -------------------------------------------------------
    def _locate(self, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float] | str:
        """(world-from-camera, its covariance, inliers, median error px) of this frame against the map points
        of its tracks, or why it cannot be located. Outlier tracks are dropped."""
        world, usable, origin, views = self.tracks.mapped
        if (placed := int((usable & (views > 0)).sum())) < self.config.min_inliers:
            return f"only {placed} tracks with a map point placed in depth"
        located = location.locate(world[usable], self.tracks.now[usable].astype(np.float64), origin[usable],
                                  views[usable], predicted, self.k, self.config)
        if isinstance(located, str):
            return located
        pose, covariance, inlier, residual = located
        keep = np.ones(len(self.tracks), bool)
        keep[np.flatnonzero(usable)[~inlier]] = False  # movers and tracks that slid are not followed further
        self.tracks.keep(keep)
        return pose, covariance, int(inlier.sum()), residual

    def _compose(self, seq, stamp_ns, grey, depth_at, readout, pose, covariance, inliers, residual) -> MotionEstimate:
        """The located frame's estimate, and a new keyframe where the view moved on."""
        kf, source = self.keyframe, "geometry"
        if self.mode == "fused":
            relative = inverse(kf.world_from_camera) @ pose
            readout_step = inverse(kf.readout_world_from_camera) @ readout
            relative, covariance = blend(relative, covariance, readout_step, readout_covariance(readout_step))
            pose, source = kf.world_from_camera @ relative, "fused"
        located, covariance = covariance, kf.covariance + covariance
        # Parallax left once the rotation between the keyframe and this frame is taken out.
        rotation = pose[:3, :3].T @ kf.world_from_camera[:3, :3]
        parallax = two_view.parallax(self.tracks.on_keyframe, self.tracks.now, rotation, self.k)
        if parallax > angle_px(self.k, self.config.keyframe_deg) or len(self.tracks) < self._renew_below():
            estimate = self._new_keyframe(seq, stamp_ns, grey, depth_at, pose, covariance, readout, source, inliers)
        else:
            self.stats.last_inliers = inliers
            estimate = MotionEstimate(pose, covariance, source, inliers, residual)
        estimate.location_covariance = located
        return estimate

    # Keyframes ----------------------------------------------------------------------
    def _renew_below(self) -> int:
        """A keyframe left with fewer tracks than this (a third of those it started with) is replaced."""
        return max(self.config.min_inliers * 2, self._keyframe_tracks // 3)

    def _fallback(self, seq, stamp_ns, grey, depth_at, readout, predicted, reason: str,
                  tracked: bool = False) -> MotionEstimate:
        """The geometry cannot place this frame: the readout's motion since the keyframe, or on arrival (no
        readout yet) the motion model's prediction, with a coarse step's covariance. The frame starts a new map
        (points placed from a guessed pose would not agree with the old ones), except while the keyframe still
        waits for its own depth and the frame was tracked: its points will place the frames to come."""
        kf = self.keyframe
        if readout is not None:
            pose = kf.world_from_camera @ inverse(kf.readout_world_from_camera) @ readout
        else:
            pose = predicted
        covariance = kf.covariance + readout_covariance(inverse(kf.world_from_camera) @ pose)
        source = "readout" if readout is not None else "predicted"
        now = time.monotonic()
        if now - self._last_fallback_log > 5.0:  # at a bounded rate
            self._last_fallback_log = now
            self.log.info(f"egomotion: geometry degenerate ({reason}); the "
                          f"{'pose readout' if readout is not None else 'motion model'} answers for frame {seq}")
        if tracked and not kf.placed:
            return MotionEstimate(pose, covariance, source, len(self.tracks))
        self.map, self.tracks = LocalMap(self.config.window_keyframes), _Tracks()
        return self._new_keyframe(seq, stamp_ns, grey, depth_at, pose, covariance, readout, source)

    def _new_keyframe(self, seq, stamp_ns, grey, depth_at, pose, covariance, readout, source,
                      inliers: int = 0) -> MotionEstimate:
        """This frame as a keyframe: its tracks observe their points, fresh corners start new points at the model's
        depth, and the recent keyframes are bundle-adjusted (not while the camera stands: nothing new to see)."""
        tracks, placed = self.tracks, depth_at is not None
        kf = self.map.add_keyframe(seq, stamp_ns, pose, covariance, readout, placed)
        self.map.observe(kf, tracks.point, tracks.now)
        fresh = _corners(grey, tracks.now, self.config.features - len(tracks))
        if not len(fresh):
            depth = np.zeros(0)
        elif placed:
            depth = np.asarray(depth_at(fresh), np.float64)
        else:  # on arrival: the newest depth there is, carried into this view
            depth = self.recent_depth.depth(fresh, pose, self.k, grey.shape)
        if np.isfinite(depth).any():
            self._scene_depth = float(np.nanmedian(depth))
        ids = self.map.add_points(kf, fresh, depth, self.k)
        standing = source == "standing"
        tracks.now = np.concatenate([tracks.now, fresh]).astype(np.float32)
        tracks.on_keyframe = tracks.now.copy()
        tracks.point = np.concatenate([tracks.point, ids])
        tracks.still_s = np.concatenate([tracks.still_s if standing else np.zeros(len(tracks.point) - len(ids)),
                                         np.zeros(len(ids))])
        tracks.mapped = None  # looked up again on the next frame
        self.keyframe, self._keyframe_tracks = kf, len(tracks)
        self.previous = (seq, stamp_ns, grey)
        self.stats.keyframes += 1
        if source in ("geometry", "fused") and len(self.map.keyframes) > 1:
            self.adjuster.request(self.map, self.k)
        self.map.prune(tracks.point)
        self.stats.last_inliers = inliers or len(tracks)
        return MotionEstimate(kf.world_from_camera.copy(), covariance, source, self.stats.last_inliers, 0.0)

    # The model's outputs of frames tracked on arrival ----------------------------------
    def place(self, seq: int, depth_at, readout_world_from_camera: np.ndarray) -> None:
        """Frame `seq`'s window came back: a keyframe made on it takes the model's depth of its own frame."""
        kf = self.map.keyframe_at(seq)
        if kf is not None and not kf.placed and self.k is not None:
            self.map.place(kf, depth_at, self.k)
            kf.readout_world_from_camera = np.asarray(readout_world_from_camera, np.float64)

    def window_placed(self, first_seq: int, world_from_camera: np.ndarray, depth_at, size: tuple[int, int]) -> None:
        """After `place` for each frame of a window (the first `first_seq`; `world_from_camera` and `depth_at` of
        its newest): keyframes older than the window will not get their own depth, and the newest depth is kept
        for the keyframes to come."""
        if self.k is None:
            return
        for kf in self.map.keyframes.values():
            kf.placed = kf.placed or kf.seq < first_seq
        self.recent_depth.remember(world_from_camera, depth_at, self.k, size)


def _corners(grey: np.ndarray, existing: np.ndarray, want: int) -> np.ndarray:
    """Up to `want` new Shi-Tomasi corners of `grey`, spaced from each other and from the `existing` tracks, and
    spread over a grid of `GRID_CELLS` cells (a textured corner of the view does not take them all)."""
    if want <= 0:
        return np.zeros((0, 2), np.float32)
    h, w = grey.shape
    spacing = max(3, int(np.sqrt(h * w / (4.0 * (len(existing) + want)))))
    mask = np.full(grey.shape, 255, np.uint8)
    for x, y in existing:
        cv2.circle(mask, (int(round(x)), int(round(y))), spacing, 0, -1)
    found = cv2.goodFeaturesToTrack(grey, maxCorners=4 * want, qualityLevel=0.01, minDistance=spacing, mask=mask)
    if found is None:
        return np.zeros((0, 2), np.float32)
    found = found.reshape(-1, 2)
    cols = max(1, int(round(np.sqrt(GRID_CELLS * w / h))))
    rows = max(1, GRID_CELLS // cols)
    cell = lambda p: (np.minimum((p[:, 1] * rows / h).astype(int), rows - 1) * cols  # noqa: E731
                      + np.minimum((p[:, 0] * cols / w).astype(int), cols - 1))
    count = np.bincount(cell(existing), minlength=rows * cols) if len(existing) else np.zeros(rows * cols, int)
    quota = int(np.ceil((len(existing) + want) / (rows * cols)))
    chosen = []
    for i, c in enumerate(cell(found)):  # strongest first (goodFeaturesToTrack's order)
        if count[c] < quota:
            count[c] += 1
            chosen.append(i)
            if len(chosen) == want:
                break
    if len(chosen) < want:  # a textureless part of the view: the rest of the corners fill in
        rest = np.setdiff1d(np.arange(len(found)), chosen)[:want - len(chosen)]
        chosen += rest.tolist()
    return found[chosen].astype(np.float32)
