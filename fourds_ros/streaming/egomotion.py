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

from .klt import LucasKanade

MODES = ("geometric", "readout", "fused")
# Covariance of a readout-only step: the readout is a coarse prior (tens of degrees of drift a minute on
# real footage), so anything geometric outweighs it.
READOUT_ROTATION_SIGMA_RAD = np.radians(2.0)
READOUT_TRANSLATION_SIGMA = 0.05  # in the stream's (depth) scale, plus half the step's length


@dataclass
class EgomotionConfig:
    mode: str = "geometric"
    features: int = 120  # tracked per keyframe
    # A camera whose features moved less than this angle from the keyframe stands still (vibration, tracking
    # noise); the motion is not lost if it continues: it is measured against the keyframe once it is larger.
    standing_deg: float = 0.25
    keyframe_deg: float = 2.0  # rotation-compensated parallax (as an angle) that starts a new keyframe
    # While the camera stands, a track displaced by more than this many times the standing threshold is on
    # an object moving by itself and is dropped.
    moving_factor: float = 4.0
    # A standing camera is taken to move only once its view stays displaced beyond `standing_deg` for this many
    # geometry frames in a row, or at once beyond `leave_standing_factor` times it: a standing robot vibrates
    # (motors, a settling suspension, wind), and its view swings out and back by about that angle; a camera that
    # starts moving keeps going, and loses nothing by the wait (its motion is measured against the keyframe).
    leave_standing_frames: int = 3
    leave_standing_factor: float = 2.0
    settled_frames: int = 5  # frames a track stood still (the camera standing) before it speaks for the scene
    min_settled: int = 5  # settled tracks enough to speak for the scene (a body close by may hide the rest)
    # A standing camera whose settled tracks were all hidden is taken to stand for this many frames (half a
    # second at 30 Hz): a body passing right in front of the lens; real motion is measured after it.
    hidden_standing_frames: int = 15
    max_gap_frames: int = 16  # frames between two tracked frames beyond which tracking restarts
    pnp_below_deg: float = 1.0  # below this parallax the depth-lifted tracks (PnP) give the motion, not E
    min_inliers: int = 15
    ransac_px: float = 1.0
    forward_backward_px: float = 1.0
    # The speed gate: a step may be this many times the median speed of the last `speed_history` measured steps,
    # plus the length this angle spans at the recent keyframes' median depth (per frame). 0 turns the gate off.
    speed_gate: float = 3.0
    speed_floor_deg: float = 0.5
    speed_history: int = 8

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"egomotion must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.speed_gate < 0 or self.speed_floor_deg < 0 or self.speed_history < 1:
            raise ValueError("speed_gate and speed_floor_deg must be at least 0 and speed_history at least 1, got "
                             f"{self.speed_gate}, {self.speed_floor_deg} and {self.speed_history}")
        if self.leave_standing_frames < 1 or self.leave_standing_factor < 1.0:
            raise ValueError("leave_standing_frames must be at least 1 and leave_standing_factor at least 1.0, got "
                             f"{self.leave_standing_frames} and {self.leave_standing_factor}")


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
class EgomotionStats:
    frames: int = 0
    by_source: dict = field(default_factory=lambda: {"standing": 0, "geometry": 0, "rotation": 0, "readout": 0,
                                                     "fused": 0})  # frames each stage answered
    last_inliers: int = 0
    keyframes: int = 0
    clamped: int = 0  # frames whose step the speed gate shortened
    seconds: float = 0.0


def _inverse(pose: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = pose[:3, :3].T
    out[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
    return out


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

    def __init__(self, config: EgomotionConfig, log: logging.Logger | None = None):
        config.validate()
        self.config = config
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
        self.measured: tuple[int, np.ndarray] | None = None  # (seq, position) of the last measured translation
        self.speeds: deque[float] = deque(maxlen=self.config.speed_history)  # recent measured steps, per frame
        self.scene_depths: deque[float] = deque(maxlen=self.config.speed_history)  # recent keyframes' median depth
        self._new_keyframe_next = False

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
        # Speeds come from measured translations only: a pure rotation's pose keeps the keyframe's position (its
        # translation is too small to measure, not zero), and the readout's motion is a coarse guess.
        if estimate.source in ("geometry", "fused", "standing"):
            position = estimate.world_from_camera[:3, 3].copy()
            if self.measured is not None:
                self.speeds.append(float(np.linalg.norm(position - self.measured[1])) / max(1, seq - self.measured[0]))
            self.measured = (seq, position)
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
        kf = self.keyframe
        ids = np.flatnonzero(self.alive)
        if len(ids) < self.config.min_inliers:
            return self._readout_step(seq, grey, depth_at, readout, f"only {len(ids)} tracks left")
        moved, ok = self._track(self.previous[1], grey, self.previous[2][ids])
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
        a, b = kf.points[ids], positions[ids]
        standing_px = self._standing_px(k)
        displacement = np.linalg.norm(b - a, axis=1)
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
        e, mask = cv2.findEssentialMat(a, b, k, method=cv2.USAC_ACCURATE, prob=0.999, threshold=self.config.ransac_px)
        # The background must carry the fit: an essential matrix that explains under half of the tracks is a
        # degenerate fit (too little baseline) or one of a moving object, not the camera's motion.
        inlier = mask.ravel() > 0 if e is not None and e.shape == (3, 3) else np.zeros(len(a), bool)
        if inlier.sum() < max(self.config.min_inliers, len(a) // 2):
            r_only, keep = self._robust_rotation(a, b, k)
            if self._parallax(a[keep], b[keep], r_only, k) < standing_px:
                self.alive[ids[~keep]] = False
                r, t, source, parallax = r_only, np.zeros(3), "rotation", 0.0
                inliers, residual = int(keep.sum()), self._parallax(a[keep], b[keep], r_only, k)
            else:
                return self._readout_step(seq, grey, depth_at, readout, f"{inlier.sum()} of {len(a)} tracks fit")
        else:
            # A generous distance limit: with a short baseline every point is far in baseline units.
            inliers, r, t, pose_mask, _ = cv2.recoverPose(e, a, b, k, distanceThresh=1e6, mask=mask.copy())
            self.alive[ids[~inlier]] = False  # outliers (moving objects, bad tracks) are not tracked on
            depth = kf.depth[ids][inlier]
            a, b = a[inlier], b[inlier]
            r_only = self._procrustes(a, b, k)
            if self._parallax(a, b, r_only, k) < standing_px:  # a rotation explains every displacement
                r, t, source, parallax = r_only, np.zeros(3), "rotation", 0.0
                inliers, residual = len(a), self._parallax(a, b, r_only, k)
            elif self._parallax(a, b, r_only, k) < self._angle_px(k, self.config.pnp_below_deg) and \
                    (pnp := self._pnp(a, b, k, depth)) is not None:
                # Short baseline: the essential matrix cannot yet tell translation from rotation; the 4DS depth
                # lifts the keyframe's tracks to 3D and PnP resolves it (DF-VO's choice at low parallax).
                r, t, inliers, residual = pnp
                source, parallax = "geometry", self._parallax(a, b, r, k)
            else:
                in_front = pose_mask.ravel()[inlier] > 0
                if in_front.sum() < self.config.min_inliers:
                    return self._readout_step(seq, grey, depth_at, readout, f"{in_front.sum()} points in front")
                parallax = self._parallax(a, b, r, k)
                residual = self._residual(e, a, b, k)
                scale = self._scale(a[in_front], b[in_front], r, t.ravel(), k, depth[in_front])
                if scale is None:
                    return self._readout_step(seq, grey, depth_at, readout, "no depth to scale the translation")
                t, source, inliers = t.ravel() * scale, "geometry", int(in_front.sum())
        # x_current = R x_keyframe + t: the camera moved by the inverse.
        points_motion = np.eye(4)
        points_motion[:3, :3], points_motion[:3, 3] = r, t
        relative = _inverse(points_motion)
        relative_cov = self._fit_covariance(residual, parallax, len(a), k, float(np.linalg.norm(t)))
        if self.config.mode == "fused":
            readout_step = _inverse(kf.readout_world_from_camera) @ readout
            relative, relative_cov = blend(relative, relative_cov, readout_step, _readout_covariance(readout_step))
            source = "fused"
        pose = kf.world_from_camera @ relative
        if source == "rotation":  # no translation measured: nothing to gate, and the position may lag
            relative_cov = self._held_position_covariance(seq, relative_cov)
        else:
            pose, relative_cov = self._speed_gate(seq, pose, relative_cov)
        estimate = self._estimate(pose, kf.covariance + relative_cov, source, int(inliers), residual)
        if parallax > self._angle_px(k, self.config.keyframe_deg) or inliers < self._renew_below(kf):
            self._start_keyframe(seq, grey, depth_at, pose, readout, estimate.covariance, source, keep=positions)
        return estimate

    # Parts ------------------------------------------------------------------------
    def _speed_gate(self, seq: int, pose: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`pose` with its step from the last measured position clamped to the plausible length (see the module's
        text). `pose` and `covariance` are this frame's own and are changed in place."""
        if not self.config.speed_gate or self.measured is None or not self.scene_depths:
            return pose, covariance
        frames = max(1, seq - self.measured[0])
        # Over several keyframes: one keyframe whose depth is wrong (the fault the gate is for) cannot lift it.
        floor = float(np.median(self.scene_depths)) * np.tan(np.radians(self.config.speed_floor_deg))
        speed = float(np.median(self.speeds)) if self.speeds else 0.0
        limit = (self.config.speed_gate * speed + floor) * frames
        start = self.measured[1]
        step = pose[:3, 3] - start
        length = float(np.linalg.norm(step))
        if length <= limit:
            return pose, covariance
        self.stats.clamped += 1
        pose[:3, 3] = start + step * (limit / length)
        return pose, _grow_translation_variance(covariance, length - limit)

    def _held_position_covariance(self, seq: int, covariance: np.ndarray) -> np.ndarray:
        """`covariance` of a pure rotation's frame, which keeps the keyframe's position, grown by how far a camera
        moving at its recent median speed would have gone since: from the keyframe to the last measured position,
        and on from there for the frames since. A camera that stood before it turned adds nothing; one that walks
        steadily (whose frames right after a keyframe show too little parallax to measure) says that its
        position is held, not known. `covariance` is this frame's own and is changed in place."""
        if self.measured is None or not self.speeds:
            return covariance
        lag = float(np.linalg.norm(self.measured[1] - self.keyframe.world_from_camera[:3, 3]))
        lag += float(np.median(self.speeds)) * (seq - self.measured[0])
        return _grow_translation_variance(covariance, lag)

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

    def _track(self, reference: np.ndarray, current: np.ndarray, points: np.ndarray):
        return self.tracker.track(reference, current, points)

    def _renew_below(self, kf: _Keyframe) -> int:
        """A keyframe with fewer usable tracks than this is replaced."""
        return max(self.config.min_inliers * 2, len(kf.points) // 3)

    def _standing_px(self, k: np.ndarray) -> float:
        return self._angle_px(k, self.config.standing_deg)

    @staticmethod
    def _angle_px(k: np.ndarray, degrees: float) -> float:
        return float(k[0, 0] * np.tan(np.radians(degrees)))

    def _pnp(self, a, b, k, depth) -> tuple[np.ndarray, np.ndarray, int, float] | None:
        """(R, t, inliers, median reprojection error px) moving keyframe points (lifted with `depth`) onto `b`."""
        usable = np.isfinite(depth) & (depth > 0)
        if usable.sum() < self.config.min_inliers:
            return None
        ki = np.linalg.inv(k)
        points = (ki @ np.column_stack([a[usable], np.ones(usable.sum())]).T).T * depth[usable, None]
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(points, b[usable].astype(np.float64), k, None,
                                                     reprojectionError=2 * self.config.ransac_px,
                                                     iterationsCount=100, flags=cv2.SOLVEPNP_EPNP)
        if not ok or inliers is None or len(inliers) < max(self.config.min_inliers, usable.sum() // 2):
            return None
        index = inliers.ravel()
        ok, rvec, tvec = cv2.solvePnP(points[index], b[usable][index].astype(np.float64), k, None, rvec, tvec,
                                      useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok:
            return None
        projected, _ = cv2.projectPoints(points[index], rvec, tvec, k, None)
        residual = float(np.median(np.linalg.norm(projected.reshape(-1, 2) - b[usable][index], axis=1)))
        return cv2.Rodrigues(rvec)[0], tvec.ravel(), len(index), residual

    @staticmethod
    def _procrustes(a: np.ndarray, b: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The rotation that best maps the bearing vectors of `a` onto those of `b` (orthogonal Procrustes)."""
        ki = np.linalg.inv(k)
        fa = ki @ np.column_stack([a, np.ones(len(a))]).T
        fb = ki @ np.column_stack([b, np.ones(len(b))]).T
        fa, fb = fa / np.linalg.norm(fa, axis=0), fb / np.linalg.norm(fb, axis=0)
        u, _, vt = np.linalg.svd(fb @ fa.T)
        return u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt

    def _robust_rotation(self, a: np.ndarray, b: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Procrustes rotation refitted twice on the tracks it explains best (moving objects drop out)."""
        keep = np.ones(len(a), bool)
        r = self._procrustes(a, b, k)
        for _ in range(2):
            error = self._left_by_rotation(a, b, r, k)
            keep = error <= max(np.percentile(error, 70), self.config.ransac_px)
            if keep.sum() < self.config.min_inliers:
                break
            r = self._procrustes(a[keep], b[keep], k)
        return r, keep

    @staticmethod
    def _left_by_rotation(a: np.ndarray, b: np.ndarray, r: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Each track's displacement left once the rotation `r` is taken out (what translation must explain)."""
        rotated = cv2.perspectiveTransform(a.reshape(-1, 1, 2).astype(np.float64), k @ r @ np.linalg.inv(k))
        return np.linalg.norm(b - rotated.reshape(-1, 2), axis=1)

    def _parallax(self, a: np.ndarray, b: np.ndarray, r: np.ndarray, k: np.ndarray) -> float:
        """Median displacement left once the rotation `r` is taken out."""
        return float(np.median(self._left_by_rotation(a, b, r, k)))

    @staticmethod
    def _residual(e: np.ndarray, a: np.ndarray, b: np.ndarray, k: np.ndarray) -> float:
        """Median Sampson distance of the inliers, in pixels."""
        ki = np.linalg.inv(k)
        xa = (ki @ np.column_stack([a, np.ones(len(a))]).T)
        xb = (ki @ np.column_stack([b, np.ones(len(b))]).T)
        ea, etb = e @ xa, e.T @ xb
        numerator = np.sum(xb * ea, axis=0) ** 2
        denominator = ea[0] ** 2 + ea[1] ** 2 + etb[0] ** 2 + etb[1] ** 2
        return float(np.median(np.sqrt(numerator / np.maximum(denominator, 1e-18))) * k[0, 0])

    @staticmethod
    def _scale(a, b, r, t, k, depth) -> float | None:
        """Translation length that makes the triangulated points agree with the model's depth (median ratio)."""
        p0 = k @ np.hstack([np.eye(3), np.zeros((3, 1))])
        p1 = k @ np.hstack([r, t.reshape(3, 1)])
        x = cv2.triangulatePoints(p0, p1, a.T.astype(np.float64), b.T.astype(np.float64))
        z = x[2] / x[3]
        usable = np.isfinite(z) & (z > 1e-6) & np.isfinite(depth) & (depth > 0)
        if usable.sum() < 5:
            return None
        scale = float(np.median(depth[usable] / z[usable]))
        return scale if np.isfinite(scale) and scale > 0 else None

    @staticmethod
    def _fit_covariance(residual: float, parallax: float, inliers: int, k: np.ndarray, length: float) -> np.ndarray:
        """Grows with the fit's residual and shrinks with inliers and parallax (first-order, per axis)."""
        residual = residual if np.isfinite(residual) else 1.0
        pixel = max(residual, 0.1) / k[0, 0]  # angular noise of one track
        sigma_r = pixel / np.sqrt(inliers)
        sigma_t = length * (max(residual, 0.1) / max(parallax, 0.1)) / np.sqrt(inliers) + 1e-4
        return np.diag([sigma_t ** 2] * 3 + [sigma_r ** 2] * 3)

    def _estimate(self, pose, covariance, source, inliers, residual) -> MotionEstimate:
        self.stats.last_inliers = inliers
        return MotionEstimate(pose, covariance, source, inliers, residual)

    def _readout_step(self, seq, grey, depth_at, readout, reason: str) -> MotionEstimate:
        """The readout's motion since the keyframe; the frame becomes the next keyframe."""
        kf = self.keyframe
        step = _inverse(kf.readout_world_from_camera) @ readout
        pose = kf.world_from_camera @ step
        covariance = kf.covariance + _readout_covariance(step)
        now = time.monotonic()
        self.last_fallback_reason = reason
        if now - self._last_fallback_log > 5.0:  # at a bounded rate
            self._last_fallback_log = now
            self.log.info(f"egomotion: geometry degenerate ({reason}); the pose readout answers for frame {seq}")
        return self._start_keyframe(seq, grey, depth_at, pose, readout, covariance, "readout")

    def _start_keyframe(self, seq, grey, depth_at, pose, readout, covariance, source, keep=None) -> MotionEstimate:
        existing = keep[self.alive] if keep is not None and self.alive is not None else np.zeros((0, 2))
        mask = np.full(grey.shape, 255, np.uint8)
        spacing = max(4, int(min(grey.shape) / 25))
        for x, y in existing:
            cv2.circle(mask, (int(round(x)), int(round(y))), spacing, 0, -1)
        want = self.config.features - len(existing)
        corners = cv2.goodFeaturesToTrack(grey, maxCorners=max(want, 1), qualityLevel=0.01, minDistance=spacing,
                                          mask=mask) if want > 0 else None
        fresh = corners.reshape(-1, 2) if corners is not None else np.zeros((0, 2), np.float32)
        points = np.concatenate([existing, fresh]).astype(np.float32)
        # How long each track has stood still carries over while the camera stands; motion resets it.
        standing = keep is not None and source == "standing"
        still = self.still_frames[self.alive] if standing else np.zeros(len(existing), int)
        self.still_frames = np.concatenate([still, np.zeros(len(fresh), int)])
        depth = np.asarray(depth_at(points) if len(points) else np.zeros(0), np.float64)
        if (known := np.isfinite(depth) & (depth > 0)).any():
            self.scene_depths.append(float(np.median(depth[known])))
        self.keyframe = _Keyframe(seq, pose, readout, covariance, points, depth)
        self.previous = (seq, grey, points.copy())
        self.alive = np.ones(len(points), bool)
        self.stats.keyframes += 1
        return self._estimate(pose, covariance, source, len(points), 0.0)
