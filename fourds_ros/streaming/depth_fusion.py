"""The 4DS depth corrected by depth measured from motion (`flow_depth.py`, carried by `depth_points.py`).

A learned monocular depth is right about edges and order more often than about shape: on footage unlike its
training data it keeps a prior layout ("floor below, wall above"). Two views with enough baseline measure depth
directly where the scene has texture and parallax. As in depth completion from structure-from-motion points (the
network's depth as the dense guide, the triangulated depths as measurements; DeepV2D and DF-VO pair the two
likewise), each frame's depth is multiplied by a smooth correction: the log ratio of measured to model depth,
spread by a wide and a narrow Gaussian kernel (normalised convolution) against the model's own weight
(`model_sigma`), so the measurements rule where they are dense and the correction fades where there are none.
The median ratio itself is kept, so depth and odometry stay in one scale.

A frame with nothing measured in view takes the latest correction while the view has not moved on
(`max_moving_s` of motion); a standing camera keeps it, up to the measurement's `horizon_s`.

Each pixel's confidence comes from the same error model: the log depth's precision is the model's prior
(`model_sigma`, larger for a window of fewer distinct frames) plus the measurements' averaged over the narrow kernel,
fading linearly as the correction ages (in motion and in time); confidence is the chance that a Gaussian error of
that precision is within `confidence_tolerance`. It says how far each pixel's shape is to be trusted; the stream's
scale as a whole is the model's, and the same for every pixel.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy.special import erf

from .settings import DepthFusionConfig


class DepthFusion:
    def __init__(self, config: DepthFusionConfig | None = None):
        self.config = config or DepthFusionConfig()
        self.config.validate()
        self.reset()

    def reset(self) -> None:
        self._factor: np.ndarray | None = None  # the correction at model resolution (a factor on depth)
        self._precision: np.ndarray | None = None  # what the measurements behind it add to each log depth's precision
        self._moving_s = 0.0  # how long the camera has moved since the correction was measured
        self._measured_ns = 0  # when its measurements were made

    def update(self, depth: np.ndarray, measured: np.ndarray, weight: np.ndarray, pixel_height: float = 1.0,
               measured_ns: int = 0) -> bool:
        """A new correction for `depth` `(h, w)` from `measured` depth (NaN where none) with `weight` (inverse
        variance of its log), both at model resolution, measured at `measured_ns`. `pixel_height` is a model
        pixel's height over its width in camera pixels (the model's resize may stretch one axis), so the kernel
        is round in the camera's view. Returns whether it was used."""
        # A measurement corrects the model only where it is clearly the more precise (its noise at most half
        # the model's): many noisy ones averaged by the kernel are precise in theory and biased in practice.
        precise = weight >= 1.0 / (self.config.precision_ratio * self.config.model_sigma) ** 2
        usable = np.isfinite(measured) & (measured > 0) & np.isfinite(depth) & (depth > 0) & precise
        if usable.sum() < self.config.min_samples:
            return False
        ratio = np.zeros(depth.shape, np.float64)
        ratio[usable] = np.log(measured[usable]) - np.log(depth[usable])
        median = float(np.median(ratio[usable]))
        mad = 1.4826 * float(np.median(np.abs(ratio[usable] - median))) + 1e-3
        usable &= np.abs(ratio - median) <= self.config.outlier_mads * mad
        if usable.sum() < self.config.min_samples:
            return False
        w = np.where(usable, weight, 0.0)
        # Two scales: a wide kernel carries the correction into regions without measurements, a narrow one
        # follows the measurements where they are dense.
        field = np.full(depth.shape, median)
        for sigma in (self.config.sigma, self.config.detail_sigma):
            if sigma > 0:
                field = field + self._spread(w * (ratio - field), w, sigma * depth.shape[1], pixel_height)
        self._factor = np.exp(field).astype(np.float32)
        # What the measurements add at a pixel: their weight averaged over the narrow kernel, not summed. One
        # flow and one pose make them all, so their errors are shared: a neighbourhood of them is worth one.
        narrow = self.config.detail_sigma * depth.shape[1]
        self._precision = w if narrow <= 0 else self._blur(w, narrow, pixel_height)
        self._moving_s, self._measured_ns = 0.0, measured_ns
        return True

    def _spread(self, values: np.ndarray, weight: np.ndarray, sigma_x: float, pixel_height: float) -> np.ndarray:
        """Nadaraya-Watson by normalised convolution (zero outside the image); the prior weighs as much as
        the model at a pixel (inverse variance `model_sigma`) and pulls towards no change."""
        prior = 1.0 / (self.config.model_sigma ** 2 * _mass(sigma_x, pixel_height))
        return (self._blur(values, sigma_x, pixel_height)
                / (self._blur(weight, sigma_x, pixel_height) + prior))

    @staticmethod
    def _blur(image: np.ndarray, sigma_x: float, pixel_height: float) -> np.ndarray:
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma_x, sigmaY=sigma_x / pixel_height,
                                borderType=cv2.BORDER_CONSTANT)

    def moved(self, seconds: float) -> None:
        """The camera moved for `seconds` without measurements in view: the correction ages."""
        self._moving_s += seconds
        if self._moving_s > self.config.max_moving_s:
            self._factor = None

    def apply(self, depth: np.ndarray, stamp_ns: int = 0) -> bool:
        """Correct `depth` of the frame at `stamp_ns` in place with the current correction; False (depth
        untouched) when there is none or its measurements are older than the horizon."""
        if self._factor is not None and stamp_ns - self._measured_ns > self.config.horizon_s * 1e9:
            self._factor = None
        if self._factor is None or self._factor.shape != depth.shape:
            return False
        np.multiply(depth, self._factor, out=depth)
        return True

    def confidence(self, depth: np.ndarray, stamp_ns: int, window_frames: int, window_len: int) -> np.ndarray:
        """How far to trust each pixel of `depth`, the frame at `stamp_ns` after `apply`, from a window of
        `window_frames` distinct frames of `window_len`."""
        precision = None
        if self._factor is not None and self._factor.shape == depth.shape:
            fade = _fade(self._moving_s, self.config.max_moving_s) * \
                _fade((stamp_ns - self._measured_ns) * 1e-9, self.config.horizon_s)
            precision = self._precision * fade if fade > 0 else None
        return depth_confidence(depth, self.config, window_frames, window_len, precision)


def depth_confidence(depth: np.ndarray, config: DepthFusionConfig, window_frames: int, window_len: int,
                     measured_precision: np.ndarray | None = None) -> np.ndarray:
    """The chance that each pixel's log depth is within `confidence_tolerance` of the truth: a Gaussian error
    whose precision is the model's prior plus `measured_precision`; 0 where the depth is not valid. A window of
    fewer distinct frames informs the model less: its prior's variance grows as `window_len / window_frames`."""
    prior = window_frames / (window_len * config.model_sigma ** 2)
    if measured_precision is None:  # the prior alone: one value for the frame
        confidence = np.full(depth.shape, erf(config.confidence_tolerance * np.sqrt(prior / 2.0)), np.float32)
    else:
        confidence = erf(config.confidence_tolerance * np.sqrt((prior + measured_precision) / 2.0)).astype(np.float32)
    confidence[~(np.isfinite(depth) & (depth > 0))] = 0.0
    return confidence


def _mass(sigma_x: float, pixel_height: float) -> float:
    """The integral of an unnormalised Gaussian kernel (peak 1) of these widths."""
    return 2 * np.pi * sigma_x * sigma_x / pixel_height


def _fade(elapsed: float, horizon: float) -> float:
    """A measurement's weight after `elapsed` of a `horizon` (linear, none at the horizon)."""
    if horizon <= 0:
        return 1.0 if elapsed <= 0 else 0.0
    return float(np.clip(1.0 - elapsed / horizon, 0.0, 1.0))
