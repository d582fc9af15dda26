"""The camera's motion from one frame to the next: the constant-velocity motion model the tracking searches from,
and the velocity published as nav_msgs/Odometry's twist, with a covariance a filter can fuse.

robot_localization and its kind fuse odometry differentially: what matters is the covariance of each frame's motion,
not of the pose since the start. The covariance here is built from what can be wrong, each part by construction:

- tracking: the two frames' location covariances against the local map (`location.py`), added: the map's own
  error is common to both and cancels in their difference, the pixel noise does not;
- metric scale: every translation takes its scale from the 4DS depth, and a monocular model only guesses metres
  from what the room looks like. Its error is common to all axes, so it lies along the translation itself:
  `metric_scale_sigma**2 * t t^T` (one sigma of the log scale, calibrated by `benchmarks/metric_scale.py`);
- standing: a camera judged to stand is exactly still in the estimate, while the judgement lets a view move by
  up to `standing_deg` for `leave_standing_s`: that rate bounds the motion it can hide (turning, or moving the
  scene's median depth sideways by the same angle);
- timing: a frame is not seen at one instant (a rolling shutter reads rows over tens of milliseconds, exposure
  takes time, stamps jitter), so each pose is off by about the velocity times `timing_error_s`, per axis;
- leaving standing: the frame that ends a standing spell releases the motion the judgement held back, which may
  have happened on any frame of the spell (forward motion barely displaces the view at first): the step itself,
  along itself, is its uncertainty;
- the pose readout's steps carry the readout's own covariance.

Twist and covariance are in the child (camera) frame, linear then angular, as nav_msgs/Odometry orders them.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from .geometry import inverse
from .settings import EgomotionConfig

# Covariance of a readout-only step: the readout is a coarse prior (tens of degrees of drift a minute on
# real footage), so anything geometric outweighs it.
READOUT_ROTATION_SIGMA_RAD = np.radians(2.0)
READOUT_TRANSLATION_SIGMA = 0.05  # in the stream's (depth) scale, plus half the step's length


class MotionModel:
    """The last step's velocity (the prediction of the next frame's pose) and each frame's twist."""

    def __init__(self, config: EgomotionConfig):
        self.config = config
        self.reset()

    def reset(self) -> None:
        self.velocity: np.ndarray | None = None  # (6,) rotation vector and translation per second, camera frame
        self.stamp_ns = 0  # the last frame's

    def predict(self, last_pose: np.ndarray, stamp_ns: int) -> np.ndarray:
        """The pose the constant-velocity motion model gives the frame stamped `stamp_ns`."""
        if self.velocity is None:
            return last_pose.copy()
        dt = (stamp_ns - self.stamp_ns) * 1e-9
        step = np.eye(4)
        step[:3, :3] = Rotation.from_rotvec(self.velocity[:3] * dt).as_matrix()
        step[:3, 3] = self.velocity[3:] * dt
        return last_pose @ step

    def update(self, last, estimate, previous: np.ndarray | None, stamp_ns: int, scene_depth_m: float) -> None:
        """After frame `estimate` (an egomotion `MotionEstimate`; `last` the frame's before, None on a stream's first
        and `previous` its pose as the map now has it): its twist, and the velocity for the next prediction."""
        seconds = (stamp_ns - self.stamp_ns) * 1e-9
        if last is not None and 0 < seconds <= self.config.max_gap_s:
            estimate.twist, estimate.twist_covariance = self._twist(last, estimate, previous, seconds, scene_depth_m)
        if last is None or estimate.source == "readout" or seconds <= 0:
            self.velocity = None
        else:
            step = inverse(last.world_from_camera) @ estimate.world_from_camera
            self.velocity = np.concatenate([Rotation.from_matrix(step[:3, :3]).as_rotvec(), step[:3, 3]]) / seconds
        self.stamp_ns = stamp_ns

    def _twist(self, last, estimate, previous, seconds, scene_depth_m) -> tuple[np.ndarray, np.ndarray]:
        config = self.config
        step = step_vector(previous, estimate.world_from_camera)
        if estimate.source == "standing":
            covariance = standing_rate_covariance(config.standing_deg, config.leave_standing_s, scene_depth_m,
                                                  seconds)
        elif estimate.location_covariance is not None:
            before = last.location_covariance if last.location_covariance is not None else np.zeros((6, 6))
            covariance = to_camera(before + estimate.location_covariance, previous)
        else:  # the readout answered
            covariance = readout_covariance(inverse(previous) @ estimate.world_from_camera)
        covariance = (covariance + scale_covariance(step[:3], config.metric_scale_sigma)
                      + timing_covariance(step, seconds, config.timing_error_s))
        if last.source == "standing" and estimate.source != "standing":
            covariance = covariance + released_covariance(step)
        return step / seconds, covariance / seconds ** 2


def readout_covariance(step: np.ndarray) -> np.ndarray:
    """The covariance of a step (4x4) the pose readout alone gave."""
    sigma_t = READOUT_TRANSLATION_SIGMA + 0.5 * float(np.linalg.norm(step[:3, 3]))
    return np.diag([sigma_t ** 2] * 3 + [READOUT_ROTATION_SIGMA_RAD ** 2] * 3)


def step_vector(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The motion from pose `previous` to `current` (world-from-camera): translation then rotation vector, in the
    previous camera's frame."""
    step = inverse(previous) @ current
    return np.concatenate([step[:3, 3], Rotation.from_matrix(step[:3, :3]).as_rotvec()])


def to_camera(covariance: np.ndarray, world_from_camera: np.ndarray) -> np.ndarray:
    """A (position, world rotation vector) covariance seen from the camera's axes."""
    r = np.zeros((6, 6))
    r[:3, :3] = r[3:, 3:] = world_from_camera[:3, :3].T
    return r @ covariance @ r.T


def scale_covariance(translation: np.ndarray, metric_scale_sigma: float) -> np.ndarray:
    """The covariance a metric scale error of `metric_scale_sigma` (log) puts on a translation: along it, rank one."""
    out = np.zeros((6, 6))
    t = np.asarray(translation, np.float64)
    out[:3, :3] = metric_scale_sigma ** 2 * np.outer(t, t)
    return out


def standing_rate_covariance(standing_deg: float, leave_standing_s: float, scene_depth_m: float,
                             seconds: float) -> np.ndarray:
    """The step covariance of `seconds` of a camera judged to stand: a turn or a sideways move the standing
    judgement lets pass (`standing_deg` held for `leave_standing_s`; at `scene_depth_m`, the scene's median)."""
    rate = np.radians(standing_deg) / max(leave_standing_s, seconds, 1e-3)  # rad/s, one sigma
    angle = rate * seconds
    linear = angle * (scene_depth_m if np.isfinite(scene_depth_m) else 1.0)
    return np.diag([linear ** 2] * 3 + [angle ** 2] * 3)


def timing_covariance(step: np.ndarray, seconds: float, timing_error_s: float) -> np.ndarray:
    """The covariance of a step whose frames were seen `timing_error_s` away from their stamps: each frame's pose
    is off by the velocity times that, independently (rolling shutter, exposure and stamps vary frame to frame)."""
    return 2.0 * np.diag((np.asarray(step, np.float64) * timing_error_s / seconds) ** 2)


def released_covariance(step: np.ndarray) -> np.ndarray:
    """The covariance of a step that ends a standing spell: rank one along the step (its time is unknown)."""
    return np.outer(step, step)


def with_scale(pose_covariance: np.ndarray, position: np.ndarray, metric_scale_sigma: float) -> np.ndarray:
    """A pose covariance (world frame) with the metric scale's share: the position since the odometry's origin is
    as wrong as the scale, along itself."""
    return pose_covariance + scale_covariance(position, metric_scale_sigma)
