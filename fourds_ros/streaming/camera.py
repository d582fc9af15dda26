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
