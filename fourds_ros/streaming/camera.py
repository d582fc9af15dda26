"""Pixels and rays: the map between camera pixels and model-input pixels, and back-projection with depth.

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

    def to_source(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x * self.scale_x + self.offset_x, y * self.scale_y + self.offset_y

    def to_model(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x - self.offset_x) / self.scale_x, (y - self.offset_y) / self.scale_y

    def intrinsics_to_model(self, k: np.ndarray) -> np.ndarray:
        """A 3x3 camera matrix of the source image -> the same camera seen at model resolution."""
        out = np.array(k, dtype=np.float64).reshape(3, 3).copy()
        out[0, 0] /= self.scale_x
        out[0, 1] /= self.scale_x
        out[1, 1] /= self.scale_y
        out[0, 2] = (out[0, 2] - self.offset_x) / self.scale_x
        out[1, 2] = (out[1, 2] - self.offset_y) / self.scale_y
        return out


def ray_points(u: np.ndarray, v: np.ndarray, z: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Pixels at depths `z` (along the optical axis) -> 3D points in the camera optical frame."""
    return np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z], -1)


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
