"""Camera motion from feature tracks and the 4DS depth, through keyframes (after DF-VO, Zhan et al. 2020).

Per frame, features of the current keyframe are tracked with pyramidal Lucas-Kanade (forward-backward
checked) at a reduced "geometry" resolution. Their two-view geometry against the keyframe gives the motion:
- median feature displacement below `standing_px` (the angle `standing_deg` at the focal length): the camera
  stands; the pose is exactly the keyframe's. A standing camera starts moving only when its view stays
  displaced for a few frames or moves well beyond the threshold at once (hysteresis: vibration swings back).
  Once enough tracks have stood still for `settled_frames`, the median is theirs: a person walking close to a
  standing camera can bring most of the features and move them alike, and must not move the camera. While it
  stands, tracks that move far are dropped (movers);
- otherwise the essential matrix with RANSAC (tracks on independently moving objects fall out as outliers)
  gives rotation and translation direction; if a rotation alone explains the inliers' displacement (the
  Procrustes rotation of their bearing vectors leaves under `standing_px`) the motion is a pure rotation: the
  frame keeps the keyframe's position, with a position variance grown by how far the camera's recent speed
  would have carried it since its translation was last measured (a walking camera's frames right after a
  keyframe often look like this);
- the translation's length comes from the 4DS depth: points triangulated with a unit baseline, compared
  with the (stitched) depth the model gives at the keyframe, median ratio (DF-VO's scale recovery), so
  odometry and published depth share one scale;
- too few tracks, a failed fit or no usable depth: the 4DS pose readout's motion since the keyframe answers,
  with a large covariance, and the next frame starts a new keyframe.
A new keyframe is taken when the rotation-compensated parallax passes `keyframe_px` or too few tracks
survive, so a standing or slowly moving camera does not integrate noise from frame to frame.

A speed gate after the fit (a constant-velocity motion model, as trackers like ORB-SLAM use one): a camera does
not triple its speed from one frame to the next, but a two-view fit can. On real footage the translation's
length spikes where the keyframe is short and the rotation large: PnP on depth that is wrong by a quarter
trades rotation for translation, and the depth-ratio scale of a barely triangulated essential matrix swings.
Steps are taken between measured translations (a pure rotation's frame measures none: after it, one step
spans both frames). A step longer than `speed_gate` times the recent median speed (plus the length
`speed_floor_deg` spans at the recent keyframes' median depth, which lets a camera start from rest) keeps its
direction and is clamped to that length, with the clamped length added to its covariance. The tracks, the fit
and every decision above stay as they were; only the length of an implausible step changes.

Modes: `geometric` (the above), `readout` (the pose readout alone, composed across windows), `fused` (per
frame, geometry and readout blended by their covariances in the tangent space).
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from . import two_view
from .geometry import angle_px, inverse
from .klt import LucasKanade
from .settings import EGOMOTION_MODES, EgomotionConfig

# Covariance of a readout-only step: the readout is a coarse prior (tens of degrees of drift a minute on
# real footage), so anything geometric outweighs it.
READOUT_ROTATION_SIGMA_RAD = np.radians(2.0)
READOUT_TRANSLATION_SIGMA = 0.05  # in the stream's (depth) scale, plus half the step's length


@dataclass
class MotionEstimate:
    world_from_camera: np.ndarray  # (4, 4)
    covariance: np.ndarray  # (6, 6): x, y, z, rotation about x, y, z
    source: str  # standing | geometry | rotation | readout | fused
    inliers: int = 0
    residual_px: float = float("nan")


@dataclass
class _Keyframe:
    seq: int
    world_from_camera: np.ndarray
    readout_world_from_camera: np.ndarray
    covariance: np.ndarray
    points: np.ndarray  # (N, 2) geometry pixels on the keyframe
    depth: np.ndarray  # (N,) model depth at the points (NaN unknown)


@dataclass
class _Fit:
    """A motion fitted to the keyframe's tracks (`two_view` conventions: x_current = R x_keyframe + t)."""
    r: np.ndarray
    t: np.ndarray
    source: str  # geometry | rotation
    parallax: float  # px left once the rotation is taken out (0 for a rotation)
    inliers: int
    residual: float  # px
    tracks: int  # tracks the fit's covariance counts


@dataclass
class EgomotionStats:
    frames: int = 0
    by_source: dict = field(default_factory=lambda: {"standing": 0, "geometry": 0, "rotation": 0, "readout": 0,
                                                     "fused": 0})  # frames each stage answered
    last_inliers: int = 0
    keyframes: int = 0
    clamped: int = 0  # frames whose step the speed gate shortened
    seconds: float = 0.0


def _readout_covariance(step: np.ndarray) -> np.ndarray:
    sigma_t = READOUT_TRANSLATION_SIGMA + 0.5 * float(np.linalg.norm(step[:3, 3]))
    return np.diag([sigma_t ** 2] * 3 + [READOUT_ROTATION_SIGMA_RAD ** 2] * 3)


def _grow_translation_variance(covariance: np.ndarray, length: float) -> np.ndarray:
    """`covariance` (changed in place) with `length` of doubt added to each axis of its translation."""
    covariance[:3, :3] += np.eye(3) * length ** 2
    return covariance


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


class GeometricOdometry:
    """Feed frames in order with `step`; `reset` when the stream restarts."""

    def __init__(self, config: EgomotionConfig, mode: str = "geometric", log: logging.Logger | None = None):
        config.validate()
        if mode not in EGOMOTION_MODES:
            raise ValueError(f"egomotion must be one of {', '.join(EGOMOTION_MODES)}, got {mode!r}")
        self.config, self.mode = config, mode
        self.log = log or logging.getLogger("fourds_ros.egomotion")
        self.stats = EgomotionStats()
        self.tracker = LucasKanade(window=15, forward_backward_px=config.forward_backward_px)
        self._last_fallback_log = 0.0
        self.reset()

    def reset(self) -> None:
        self.keyframe: _Keyframe | None = None
        self.previous: tuple | None = None  # (seq, grey image, point positions)
        self.alive: np.ndarray | None = None
        self.still_frames = np.zeros(0, int)  # per keyframe track: frames it stood still while the camera stood
        self.hold_frames = 0  # frames the camera may still be taken to stand with its settled tracks hidden
        self.displaced_frames = 0  # geometry frames in a row a standing camera's view was displaced
        self.last: MotionEstimate | None = None
        self.motion = MotionModel(self.config)

    # One frame ------------------------------------------------------------------
    def step(self, seq: int, grey: np.ndarray, k: np.ndarray, depth_at, readout_world_from_camera: np.ndarray
             ) -> MotionEstimate:
        """Motion of frame `seq`: `grey` at geometry resolution with camera matrix `k`; `depth_at(points)` gives
        the model's depth at geometry pixels `(N, 2)` (NaN where unknown); the readout's pose of this frame."""
        started = time.perf_counter()
        try:
            estimate = self._step(seq, grey, k, depth_at, np.asarray(readout_world_from_camera, np.float64))
        finally:
            self.stats.seconds += time.perf_counter() - started
        self.stats.frames += 1
        self.stats.by_source[estimate.source] += 1
        self.motion.record(seq, estimate)
        self.last = estimate
        return estimate

    def _step(self, seq, grey, k, depth_at, readout) -> MotionEstimate:
        if self.keyframe is None or self.previous is None:
            start = np.eye(4) if self.last is None else self.last.world_from_camera
            covariance = np.zeros((6, 6)) if self.last is None else self.last.covariance
            return self._start_keyframe(seq, grey, depth_at, start, readout, covariance, "standing")
        # Frames skipped under load are no problem for pyramidal tracking; a long gap (a stream that stalled)
        # is, and the readout bridges it.
        if seq - self.previous[0] > self.config.max_gap_frames:
            return self._readout_step(seq, grey, depth_at, readout, f"a gap of {seq - self.previous[0]} frames")
        ids = np.flatnonzero(self.alive)
        if len(ids) < self.config.min_inliers:
            return self._readout_step(seq, grey, depth_at, readout, f"only {len(ids)} tracks left")
        moved, ok = self.tracker.track(self.previous[1], grey, self.previous[2][ids])
        positions = self.previous[2].copy()
        positions[ids[ok]] = moved[ok]
        self.alive[ids[~ok]] = False
        self.previous = (seq, grey, positions)
        ids = np.flatnonzero(self.alive)
        if len(ids) < self.config.min_inliers and self.last.source == "standing" and self.hold_frames > 0:
            # A standing camera whose view was suddenly hidden (a body right in front of the lens) still stands.
            self.hold_frames -= 1
            return self._stand(seq, grey, depth_at, positions, len(ids))
        if len(ids) < self.config.min_inliers:
            return self._readout_step(seq, grey, depth_at, readout, f"only {len(ids)} tracks survived")
        a, b = self.keyframe.points[ids], positions[ids]
        standing_px = self._standing_px(k)
        standing = self._judge_standing(seq, grey, depth_at, positions, ids, np.linalg.norm(b - a, axis=1), standing_px)
        if standing is not None:
            return standing
        fit = self._fit(ids, a, b, k, standing_px)
        if isinstance(fit, str):
            return self._readout_step(seq, grey, depth_at, readout, fit)
        return self._compose(seq, grey, depth_at, readout, positions, fit, k)

    def _judge_standing(self, seq, grey, depth_at, positions, ids, displacement, standing_px) -> MotionEstimate | None:
        """This frame's estimate if the camera stands, else None (the motion is fitted)."""
        # Tracks that have stood still for a while are the standing scene; they decide whether the camera
        # still stands (a person walking close can bring most of the features, and move them all alike).
        settled = self.still_frames[ids] >= self.config.settled_frames
        if settled.sum() >= self.config.min_settled:
            judged, self.hold_frames = displacement[settled], self.config.hidden_standing_frames
        elif self.last.source == "standing" and self.hold_frames > 0:
            # The settled tracks were just hidden (a body right in front of the lens): the camera is taken to
            # stand for a few frames, while fresh tracks settle and movers drop out; a camera that really
            # started moving is measured from the next keyframe on, a few frames late.
            judged, self.hold_frames = np.zeros(1), self.hold_frames - 1
        else:
            judged, self.hold_frames = displacement, 0
        judged_px = float(np.median(judged))
        if self.last.source == "standing" and self._still_standing(judged_px, standing_px):
            return self._stand(seq, grey, depth_at, positions, len(ids))
        if judged_px < standing_px:
            # Most of the view stands: what moved well beyond the noise is an object moving on its own
            # (people walking by), not tracked further; the keyframe is renewed in place when too few remain.
            moving = displacement > self.config.moving_factor * standing_px
            self.alive[ids[moving]] = False
            self.still_frames[ids[~moving]] += 1
            return self._stand(seq, grey, depth_at, positions, int((~moving).sum()))
        return None

    def _fit(self, ids, a, b, k, standing_px: float) -> _Fit | str:
        """The motion from the keyframe's tracks `a` to `b`, or why the geometry cannot give it."""
        e, mask = cv2.findEssentialMat(a, b, k, method=cv2.USAC_ACCURATE, prob=0.999, threshold=self.config.ransac_px)
        # The background must carry the fit: an essential matrix that explains under half of the tracks is a
        # degenerate fit (too little baseline) or one of a moving object, not the camera's motion.
        inlier = mask.ravel() > 0 if e is not None and e.shape == (3, 3) else np.zeros(len(a), bool)
        if inlier.sum() < max(self.config.min_inliers, len(a) // 2):
            r_only, keep = two_view.robust_rotation(a, b, k, self.config.ransac_px, self.config.min_inliers)
            left = two_view.parallax(a[keep], b[keep], r_only, k)
            if left >= standing_px:
                return f"{inlier.sum()} of {len(a)} tracks fit"
            self.alive[ids[~keep]] = False
            return _Fit(r_only, np.zeros(3), "rotation", 0.0, int(keep.sum()), left, len(a))
        # A generous distance limit: with a short baseline every point is far in baseline units.
        inliers, r, t, pose_mask, _ = cv2.recoverPose(e, a, b, k, distanceThresh=1e6, mask=mask.copy())
        self.alive[ids[~inlier]] = False  # outliers (moving objects, bad tracks) are not tracked on
        depth = self.keyframe.depth[ids][inlier]
        a, b = a[inlier], b[inlier]
        r_only = two_view.procrustes(a, b, k)
        left = two_view.parallax(a, b, r_only, k)  # what a rotation alone leaves unexplained
        if left < standing_px:  # a rotation explains every displacement
            return _Fit(r_only, np.zeros(3), "rotation", 0.0, len(a), left, len(a))
        if left < angle_px(k, self.config.pnp_below_deg) and \
                (pnp := two_view.pnp(a, b, k, depth, 2 * self.config.ransac_px, self.config.min_inliers)) is not None:
            # Short baseline: the essential matrix cannot yet tell translation from rotation; the 4DS depth
            # lifts the keyframe's tracks to 3D and PnP resolves it (DF-VO's choice at low parallax).
            r, t, inliers, residual = pnp
            return _Fit(r, t, "geometry", two_view.parallax(a, b, r, k), inliers, residual, len(a))
        in_front = pose_mask.ravel()[inlier] > 0
        if in_front.sum() < self.config.min_inliers:
            return f"{in_front.sum()} points in front"
        parallax = two_view.parallax(a, b, r, k)
        residual = two_view.sampson_residual(e, a, b, k)
        scale = two_view.depth_ratio_scale(a[in_front], b[in_front], r, t.ravel(), k, depth[in_front])
        if scale is None:
            return "no depth to scale the translation"
        return _Fit(r, t.ravel() * scale, "geometry", parallax, int(in_front.sum()), residual, len(a))

    def _compose(self, seq, grey, depth_at, readout, positions, fit: _Fit, k) -> MotionEstimate:
        """The world pose of a fitted frame, its covariance, and a new keyframe where the view moved on."""
        kf = self.keyframe
        # x_current = R x_keyframe + t: the camera moved by the inverse.
        points_motion = np.eye(4)
        points_motion[:3, :3], points_motion[:3, 3] = fit.r, fit.t
        relative = inverse(points_motion)
        relative_cov = two_view.fit_covariance(fit.residual, fit.parallax, fit.tracks, k, float(np.linalg.norm(fit.t)))
        source = fit.source
        if self.mode == "fused":
            readout_step = inverse(kf.readout_world_from_camera) @ readout
            relative, relative_cov = blend(relative, relative_cov, readout_step, _readout_covariance(readout_step))
            source = "fused"
        pose = kf.world_from_camera @ relative
        if source == "rotation":  # no translation measured: nothing to gate, and the position may lag
            relative_cov = self.motion.held_position_covariance(seq, relative_cov, kf.world_from_camera[:3, 3])
        elif self.motion.gate(seq, pose, relative_cov):
            self.stats.clamped += 1
        estimate = self._estimate(pose, kf.covariance + relative_cov, source, int(fit.inliers), fit.residual)
        if fit.parallax > angle_px(k, self.config.keyframe_deg) or fit.inliers < self._renew_below(kf):
            self._start_keyframe(seq, grey, depth_at, pose, readout, estimate.covariance, source, keep=positions)
        return estimate

    # Parts ------------------------------------------------------------------------
    def _still_standing(self, displacement: float, standing_px: float) -> bool:
        """A standing camera whose view is displaced beyond the standing threshold, but not yet for
        `leave_standing_frames` frames nor by `leave_standing_factor` times it, is vibrating, not moving."""
        if displacement < standing_px:
            self.displaced_frames = 0
            return False  # standing, judged as always (movers dropped, tracks settle)
        self.displaced_frames += 1
        return (self.displaced_frames < self.config.leave_standing_frames
                and displacement < self.config.leave_standing_factor * standing_px)

    def _stand(self, seq, grey, depth_at, positions, tracks: int) -> MotionEstimate:
        """The camera stands: exactly the keyframe's pose; the keyframe is renewed in place (what stood still
        stays settled) when too few of its tracks are left."""
        kf = self.keyframe
        estimate = self._estimate(kf.world_from_camera.copy(), kf.covariance.copy(), "standing", tracks, 0.0)
        if tracks < self._renew_below(kf):
            self._start_keyframe(seq, grey, depth_at, kf.world_from_camera, kf.readout_world_from_camera,
                                 kf.covariance, "standing", keep=positions)
        return estimate

    def _renew_below(self, kf: _Keyframe) -> int:
        """A keyframe with fewer usable tracks than this is replaced."""
        return max(self.config.min_inliers * 2, len(kf.points) // 3)

    def _standing_px(self, k: np.ndarray) -> float:
        return angle_px(k, self.config.standing_deg)

    def _estimate(self, pose, covariance, source, inliers, residual) -> MotionEstimate:
        self.stats.last_inliers = inliers
        return MotionEstimate(pose, covariance, source, inliers, residual)

    def _readout_step(self, seq, grey, depth_at, readout, reason: str) -> MotionEstimate:
        """The readout's motion since the keyframe; the frame becomes the next keyframe."""
        kf = self.keyframe
        step = inverse(kf.readout_world_from_camera) @ readout
        pose = kf.world_from_camera @ step
        covariance = kf.covariance + _readout_covariance(step)
        now = time.monotonic()
        if now - self._last_fallback_log > 5.0:  # at a bounded rate
            self._last_fallback_log = now
            self.log.info(f"egomotion: geometry degenerate ({reason}); the pose readout answers for frame {seq}")
        return self._start_keyframe(seq, grey, depth_at, pose, readout, covariance, "readout")

    def _start_keyframe(self, seq, grey, depth_at, pose, readout, covariance, source, keep=None) -> MotionEstimate:
        existing = keep[self.alive] if keep is not None and self.alive is not None else np.zeros((0, 2))
        fresh = _corners(grey, existing, self.config.features - len(existing))
        points = np.concatenate([existing, fresh]).astype(np.float32)
        # How long each track has stood still carries over while the camera stands; motion resets it.
        standing = keep is not None and source == "standing"
        still = self.still_frames[self.alive] if standing else np.zeros(len(existing), int)
        self.still_frames = np.concatenate([still, np.zeros(len(fresh), int)])
        depth = np.asarray(depth_at(points) if len(points) else np.zeros(0), np.float64)
        if (known := np.isfinite(depth) & (depth > 0)).any():
            self.motion.scene_depths.append(float(np.median(depth[known])))
        self.keyframe = _Keyframe(seq, pose, readout, covariance, points, depth)
        self.previous = (seq, grey, points.copy())
        self.alive = np.ones(len(points), bool)
        self.stats.keyframes += 1
        return self._estimate(pose, covariance, source, len(points), 0.0)


def _corners(grey: np.ndarray, existing: np.ndarray, want: int) -> np.ndarray:
    """Up to `want` new Shi-Tomasi corners of `grey`, spaced from each other and from the `existing` tracks."""
    mask = np.full(grey.shape, 255, np.uint8)
    spacing = max(4, int(min(grey.shape) / 25))
    for x, y in existing:
        cv2.circle(mask, (int(round(x)), int(round(y))), spacing, 0, -1)
    corners = cv2.goodFeaturesToTrack(grey, maxCorners=max(want, 1), qualityLevel=0.01, minDistance=spacing,
                                      mask=mask) if want > 0 else None
    return corners.reshape(-1, 2) if corners is not None else np.zeros((0, 2), np.float32)


class MotionModel:
    """The recent speed of the camera, from its measured translations: the speed gate and the doubt of a held
    position (see the module's text)."""

    def __init__(self, config: EgomotionConfig):
        self.config = config
        self.measured: tuple[int, np.ndarray] | None = None  # (seq, position) of the last measured translation
        self.speeds: deque[float] = deque(maxlen=config.speed_history)  # recent measured steps, per frame
        self.scene_depths: deque[float] = deque(maxlen=config.speed_history)  # recent keyframes' median depth

    def record(self, seq: int, estimate: MotionEstimate) -> None:
        # Speeds come from measured translations only: a pure rotation's pose keeps the keyframe's position (its
        # translation is too small to measure, not zero), and the readout's motion is a coarse guess.
        if estimate.source in ("geometry", "fused", "standing"):
            position = estimate.world_from_camera[:3, 3].copy()
            if self.measured is not None:
                self.speeds.append(float(np.linalg.norm(position - self.measured[1])) / max(1, seq - self.measured[0]))
            self.measured = (seq, position)

    def gate(self, seq: int, pose: np.ndarray, covariance: np.ndarray) -> bool:
        """Clamp `pose`'s step from the last measured position to the plausible length, growing `covariance` by
        what was cut (both this frame's own, changed in place); whether it was clamped."""
        if not self.config.speed_gate or self.measured is None or not self.scene_depths:
            return False
        frames = max(1, seq - self.measured[0])
        # Over several keyframes: one keyframe whose depth is wrong (the fault the gate is for) cannot lift it.
        floor = float(np.median(self.scene_depths)) * np.tan(np.radians(self.config.speed_floor_deg))
        speed = float(np.median(self.speeds)) if self.speeds else 0.0
        limit = (self.config.speed_gate * speed + floor) * frames
        start = self.measured[1]
        step = pose[:3, 3] - start
        length = float(np.linalg.norm(step))
        if length <= limit:
            return False
        pose[:3, 3] = start + step * (limit / length)
        _grow_translation_variance(covariance, length - limit)
        return True

    def held_position_covariance(self, seq: int, covariance: np.ndarray, keyframe_position: np.ndarray) -> np.ndarray:
        """`covariance` of a pure rotation's frame, which keeps the keyframe's position, grown by how far a camera
        moving at its recent median speed would have gone since: from the keyframe to the last measured position,
        and on from there for the frames since. A camera that stood before it turned adds nothing; one that walks
        steadily (whose frames right after a keyframe show too little parallax to measure) says that its
        position is held, not known. `covariance` is this frame's own and is changed in place."""
        if self.measured is None or not self.speeds:
            return covariance
        lag = float(np.linalg.norm(self.measured[1] - keyframe_position))
        lag += float(np.median(self.speeds)) * (seq - self.measured[0])
        return _grow_translation_variance(covariance, lag)
