"""Depth from dense optical flow and the camera's motion: two-view triangulation at every model pixel.

The egomotion gives the pose of each frame; DIS optical flow (Kroeger et al. 2016, OpenCV) from the current
frame to an earlier one gives each pixel's match there. The two rays meet at the pixel's depth (midpoint
method). This is DF-VO's pairing of flow and depth run the other way: there the depth network and flow give the
pose, here the pose and flow give depth. Where the rays are nearly parallel (close to the epipole, or too little
baseline) or do not meet (moving objects, bad flow: reprojection error over `max_error_px`), there is no
measurement and the model's depth stands alone (`depth_fusion.py`).
"""
from __future__ import annotations

import cv2
import numpy as np

from .geometry import rays
from .settings import FlowDepthConfig


class FlowDepth:
    def __init__(self, config: FlowDepthConfig | None = None):
        self.config = config or FlowDepthConfig()
        self.flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._pixels: tuple | None = None  # (image size, (h, w, 2) geometry pixels)
        # A ring of earlier frames, allocated once per image size: remembering a frame is one copy into it.
        self._greys: np.ndarray | None = None
        self._poses = np.zeros((self.config.memory, 4, 4))
        self.reset()

    def reset(self) -> None:
        self._count = 0  # frames remembered since the reset (the newest is at (count - 1) % memory)

    @property
    def frames(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The remembered (grey, pose), oldest first."""
        kept = min(self._count, self.config.memory)
        slots = [(self._count - kept + n) % self.config.memory for n in range(kept)]
        return [(self._greys[s], self._poses[s]) for s in slots]

    def remember(self, grey: np.ndarray, pose: np.ndarray) -> None:
        """A frame (grey, at geometry resolution) and its world pose, as a later frame's reference."""
        if self._greys is None or self._greys.shape[1:] != grey.shape:
            self._greys = np.empty((self.config.memory, *grey.shape), np.uint8)
            self._count = 0
        slot = self._count % self.config.memory
        self._greys[slot] = grey
        self._poses[slot] = pose
        self._count += 1

    def fine_enough(self, k: np.ndarray) -> bool:
        """Whether frames with camera matrix `k` have pixels fine enough to triangulate (`max_pixel_deg`)."""
        return float(np.degrees(np.arctan(1.0 / k[0, 0]))) <= self.config.max_pixel_deg

    def references(self, pose: np.ndarray, scene_depth: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Remembered frames (grey, pose) to triangulate against, best first, or none: those whose baseline to
        `pose` reaches `baseline` of `scene_depth`, newest first, then those with at least half of it. The
        nearest in time keeps the flow short; the odometry's baseline can be wrong, so there are spares."""
        target = self.config.baseline * scene_depth
        frames = self.frames
        lengths = [float(np.linalg.norm(reference[:3, 3] - pose[:3, 3])) for _, reference in frames]
        newest_first = list(range(len(frames)))[::-1]
        reaching = [n for n in newest_first if lengths[n] >= target]
        if not reaching:
            return []
        halfway = [n for n in newest_first if 0.5 * target <= lengths[n] < target]
        return [frames[n] for n in (reaching + halfway)[:self.config.candidates]]

    def consistent_depth(self, current: np.ndarray, references, k: np.ndarray, pose: np.ndarray, x: np.ndarray,
                         y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Depth (NaN where none) at geometry pixels `x`, `y` of `current` and its weight: the inverse variance
        (in log depth) that two references' disagreement implies, as in multi-view stereo's geometric
        consistency check. `references` are tried in order until two give a measurement; None when fewer do
        (the motion explains too little of the flow, `min_consistent`)."""
        depths, noises = [], []
        for grey, reference_pose in references:
            measurement = self.measure(current, grey, k, np.linalg.inv(pose) @ reference_pose, x, y)
            if measurement is not None:
                depths.append(np.log(measurement[0]))
                noises.append(measurement[1])
            if len(depths) == 2:
                break
        if len(depths) < 2:
            return None
        # Each fit's baseline length comes from the odometry: agree on scale before comparing.
        common = np.isfinite(depths[0]) & np.isfinite(depths[1])
        if common.any():
            depths[1] = depths[1] + np.median(depths[0][common] - depths[1][common])
        with np.errstate(invalid="ignore"):
            # Variance of the mean of the two: their disagreement, and what the parallax lets the flow's noise do.
            variance = (depths[0] - depths[1]) ** 2 / 2 + (noises[0] ** 2 + noises[1] ** 2) / 4 + \
                self.config.sigma_floor ** 2
            weight = np.where(np.isfinite(variance), 1.0 / variance, 0.0)
        return np.exp(0.5 * (depths[0] + depths[1])), weight

    def measure(self, current: np.ndarray, reference: np.ndarray, k: np.ndarray, current_from_reference: np.ndarray,
                x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Depth (NaN where none) and the noise of its log that the flow's noise implies, or None (see
        `min_consistent`), at geometry pixels `x`, `y` of `current` (any shape), from grey frames at geometry
        resolution with camera matrix `k`. The two-view motion is fitted to the flow itself (essential matrix,
        RANSAC): a chained odometry pose over tens of frames carries more error than one fit to hundreds of
        matches; `current_from_reference` (the odometry's) gives only the baseline's length, so the depth is in
        the stream's scale.

        The flow starts from the displacement the odometry's rotation alone predicts (no depth: the measurement
        must not echo a depth it is to correct; a pixel whose flow stays there has no parallax and gives no
        depth). A turning camera moves the view tens of pixels between references; from there the flow has to
        find only what the translation adds."""
        flow = self.flow.calc(current, reference,
                              self.rotation_flow(current.shape, k, np.linalg.inv(current_from_reference)[:3, :3]))
        shape = x.shape
        mx, my = x.astype(np.float32).reshape(-1, 1), y.astype(np.float32).reshape(-1, 1)
        moved = cv2.remap(flow, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, 2)
        u0, v0 = mx.ravel(), my.ravel()
        u1, v1 = u0 + moved[:, 0], v0 + moved[:, 1]
        inside = (u1 >= 0) & (v1 >= 0) & (u1 <= current.shape[1] - 1) & (v1 <= current.shape[0] - 1)
        if inside.sum() < 8 or self._grey_difference(current, reference, u0, v0, u1, v1) > \
                self.config.max_grey_difference:
            return None
        # The fit needs a few hundred matches, not every pixel (its cost grows with them).
        step = max(1, int(inside.sum()) // self.config.fit_matches)
        ours, theirs = np.column_stack([u0, v0])[inside][::step], np.column_stack([u1, v1])[inside][::step]
        essential, mask = cv2.findEssentialMat(theirs, ours, k, method=cv2.USAC_ACCURATE, prob=0.999,
                                               threshold=self.config.max_error_px, maxIters=self.config.fit_iterations)
        if essential is None or essential.shape != (3, 3) or mask.mean() < self.config.min_consistent:
            return None
        _, rotation, centre, _ = cv2.recoverPose(essential, theirs, ours, k, mask=mask.copy())
        centre = centre.ravel() * float(np.linalg.norm(current_from_reference[:3, 3]))
        ki = np.linalg.inv(k)
        d1 = rays(k, u0, v0).T  # rays of the current camera
        d0 = (rotation @ ki @ np.stack([u1, v1, np.ones_like(u1)]).astype(np.float64)).T  # of the reference
        a, b, c = np.sum(d0 * d0, 1), np.sum(d0 * d1, 1), np.sum(d1 * d1, 1)
        w = centre[None, :]
        d, e = np.sum(d0 * w, 1), np.sum(d1 * w, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            denominator = a * c - b * b
            s0, s1 = (b * e - c * d) / denominator, (a * e - b * d) / denominator
            point = 0.5 * (centre + s0[:, None] * d0 + s1[:, None] * d1)
            angle = np.degrees(np.arccos(np.clip(b / np.sqrt(a * c), -1.0, 1.0)))
            error_current = _reprojection_error(point, k, u0, v0)
            in_reference = (point - centre) @ rotation  # reference camera coordinates
            error_reference = _reprojection_error(in_reference, k, u1, v1)
        depth = point[:, 2]
        ok = np.isfinite(depth) & (s0 > 0) & (s1 > 0) & (depth > 0) & (angle >= self.config.min_angle_deg) & \
            (np.maximum(error_current, error_reference) <= self.config.max_error_px)
        if ok.mean() < self.config.min_consistent:
            return None
        # The log depth's noise from the flow's: one pixel of flow error over the pixels of parallax.
        with np.errstate(divide="ignore"):
            noise = self.config.flow_noise_px / (np.radians(angle) * k[0, 0])
        return np.where(ok, depth, np.nan).reshape(shape), np.where(ok, noise, np.inf).reshape(shape)

    @staticmethod
    def _grey_difference(current, reference, u0, v0, u1, v1) -> float:
        """The median grey difference of the matches (lightly smoothed, less the median signed difference: an
        exposure change): a tracker's appearance check for the whole pair. Flow into a view that does not match
        is smooth and fits some motion; what it matches does not look alike."""
        a = cv2.remap(cv2.blur(current, (3, 3)), u0.reshape(-1, 1), v0.reshape(-1, 1), cv2.INTER_LINEAR)
        b = cv2.remap(cv2.blur(reference, (3, 3)), u1.reshape(-1, 1).astype(np.float32),
                      v1.reshape(-1, 1).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        difference = a.ravel().astype(np.float32) - b.ravel()
        return float(np.median(np.abs(difference - np.median(difference))))

    def rotation_flow(self, shape: tuple[int, int], k: np.ndarray, reference_from_current: np.ndarray) -> np.ndarray:
        """Flow `(h, w, 2)` of an image of `shape` to a reference camera turned by the rotation
        `reference_from_current` (the infinite homography K R K^-1); none at pixels the turn takes behind the
        reference camera."""
        h, w = shape
        if self._pixels is None or self._pixels[0] != (h, w):
            v, u = np.mgrid[0:h, 0:w].astype(np.float64)
            self._pixels = ((h, w), np.stack([u, v], -1))
        pixels = self._pixels[1]
        homography = k @ reference_from_current @ np.linalg.inv(k)
        flow = cv2.perspectiveTransform(pixels.reshape(-1, 1, 2), homography).reshape(h, w, 2)
        flow -= pixels  # in place: the only full-frame array this makes besides the float32 it returns
        # The homogeneous coordinate is linear in the pixel: positive at the four corners, positive everywhere.
        if (homography[2] @ np.array([[0, w - 1, 0, w - 1], [0, 0, h - 1, h - 1], [1, 1, 1, 1]]) <= 0).any():
            flow[pixels @ homography[2, :2] + homography[2, 2] <= 0] = 0.0
        return flow.astype(np.float32)


def _reprojection_error(points: np.ndarray, k: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    projected = points @ k.T
    return np.hypot(projected[:, 0] / projected[:, 2] - u, projected[:, 1] / projected[:, 2] - v)
