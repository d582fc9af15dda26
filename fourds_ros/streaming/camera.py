"""Pixels: the map between camera pixels and model-input pixels, depth sampled at pixels, rectification.

Pixel centres are at integers (x = column, y = row), the OpenCV / `sensor_msgs/CameraInfo` convention.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PixelMap:
    """source = scale * model + offset, per axis."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    @classmethod
    def crop_resize(cls, crop: tuple[int, int, int, int], size: tuple[int, int]) -> "PixelMap":
        """Model pixels of the source region `crop` (x0, y0, width, height) resized to `size` (height, width)."""
        x0, y0, crop_w, crop_h = crop
        sx, sy = crop_w / size[1], crop_h / size[0]
        return cls(sx, sy, x0 + 0.5 * sx - 0.5, y0 + 0.5 * sy - 0.5)

    def to_source(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x * self.scale_x + self.offset_x, y * self.scale_y + self.offset_y

    def to_model(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x - self.offset_x) / self.scale_x, (y - self.offset_y) / self.scale_y

    def then(self, outer: "PixelMap") -> "PixelMap":
        """This map followed by `outer` (model -> this map's source -> `outer`'s source)."""
        return PixelMap(self.scale_x * outer.scale_x, self.scale_y * outer.scale_y,
                        self.offset_x * outer.scale_x + outer.offset_x, self.offset_y * outer.scale_y + outer.offset_y)

    def intrinsics_to_source(self, k: np.ndarray) -> np.ndarray:
        """The inverse of `intrinsics_to_model`."""
        out = np.array(k, dtype=np.float64).reshape(3, 3).copy()
        out[0, 0] *= self.scale_x
        out[0, 1] *= self.scale_x
        out[1, 1] *= self.scale_y
        out[0, 2] = out[0, 2] * self.scale_x + self.offset_x
        out[1, 2] = out[1, 2] * self.scale_y + self.offset_y
        return out

    def intrinsics_to_model(self, k: np.ndarray) -> np.ndarray:
        """A 3x3 camera matrix of the source image -> the same camera seen at model resolution."""
        out = np.array(k, dtype=np.float64).reshape(3, 3).copy()
        out[0, 0] /= self.scale_x
        out[0, 1] /= self.scale_x
        out[1, 1] /= self.scale_y
        out[0, 2] = (out[0, 2] - self.offset_x) / self.scale_x
        out[1, 2] = (out[1, 2] - self.offset_y) / self.scale_y
        return out


def depth_at(depth: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Nearest-pixel depth at `(u, v)`, clamped to the image."""
    h, w = depth.shape
    return depth[np.clip(np.round(v).astype(int), 0, h - 1), np.clip(np.round(u).astype(int), 0, w - 1)]


def depth_at_pixels(depth: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear depth at sub-pixel `(x, y)`; NaN outside the image or where a neighbour is not a valid depth."""
    h, w = depth.shape
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    inside = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < w) & (y0 + 1 < h)
    out = np.full(len(x), np.nan)
    if inside.any():
        xs, ys, ax, ay = x0[inside], y0[inside], fx[inside], fy[inside]
        value = ((1 - ax) * (1 - ay) * depth[ys, xs] + ax * (1 - ay) * depth[ys, xs + 1]
                 + (1 - ax) * ay * depth[ys + 1, xs] + ax * ay * depth[ys + 1, xs + 1])
        out[inside] = np.where(value > 0, value, np.nan)
    return out


DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


class Rectifier:
    """Undistorts camera frames to a pinhole, as image_proc's rectify does; maps are built once per calibration.

    The new camera matrix keeps only valid pixels (OpenCV's optimal matrix with alpha 0); that matrix is what
    the rest of the pipeline and the published depth camera_info describe.
    """

    def __init__(self, k: np.ndarray, model: str, d: np.ndarray, size: tuple[int, int]):
        import cv2
        if model not in DISTORTION_MODELS:
            raise ValueError(f"distortion model {model!r} is not one of {', '.join(DISTORTION_MODELS)}")
        h, w = size
        k = np.asarray(k, np.float64).reshape(3, 3)
        d = np.asarray(d, np.float64).ravel()
        self.key = (model, tuple(k.ravel()), tuple(d), size)
        if model == "equidistant":
            d4 = np.concatenate([d, np.zeros(4)])[:4]
            self.k = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(k, d4, (w, h), np.eye(3), balance=0.0)
            self.maps = cv2.fisheye.initUndistortRectifyMap(k, d4, np.eye(3), self.k, (w, h), cv2.CV_16SC2)
        else:
            self.k, _ = cv2.getOptimalNewCameraMatrix(k, d, (w, h), 0.0)
            self.maps = cv2.initUndistortRectifyMap(k, d, None, self.k, (w, h), cv2.CV_16SC2)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import cv2
        return cv2.remap(image, *self.maps, cv2.INTER_LINEAR)
