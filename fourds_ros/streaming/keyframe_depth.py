"""Depth for a keyframe made before its own window has been through the model (odometry on arrival).

A frame is tracked when it arrives, but the 4DS depth of that frame comes back with its window, up to a hop and
one inference later. A keyframe made in between starts its points at the newest depth the stream has, carried
into the keyframe's view: that depth map's pixels are placed in the world with their frame's pose, projected into
the keyframe, and the nearest surface in each cell of a coarse grid is kept (a z-buffer: a near object hides what
lies behind it). A corner whose cell no point reached has no depth yet; its point waits. Carrying the depth with
the motion, rather than reading the old map at the same pixel, holds for a car (the road ahead keeps its depth
while a wall comes nearer) as for a turning camera. When the keyframe's own window comes back, its points take
the model's depth of their own frame (`LocalMap.place`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .geometry import ray_points, world_to_pixels

SAMPLES = 4096  # depth samples carried over: the default model's 64x64 outputs
CELL_SAMPLES = 2.0  # grid cell, in sample spacings: under forward motion the samples spread apart


class RecentDepth:
    """The newest depth the model gave, as world points, ready to be seen from a new keyframe."""

    def __init__(self):
        self._world: np.ndarray | None = None  # (N, 3)
        self._cell_px = 1.0

    def remember(self, world_from_camera: np.ndarray, depth_at: Callable[[np.ndarray], np.ndarray], k: np.ndarray,
                 size: tuple[int, int]) -> None:
        """The depth of a frame at `world_from_camera`: `depth_at(pixels)` at geometry pixels of a `size` image."""
        h, w = size
        spacing = max(1.0, float(np.sqrt(h * w / SAMPLES)))
        y, x = np.mgrid[spacing / 2:h:spacing, spacing / 2:w:spacing]
        pixels = np.stack([x.ravel(), y.ravel()], 1)
        z = np.asarray(depth_at(pixels), np.float64)
        known = np.isfinite(z) & (z > 0)
        local = ray_points(pixels[known, 0], pixels[known, 1], z[known], k)
        self._world = local @ world_from_camera[:3, :3].T + world_from_camera[:3, 3]
        self._cell_px = CELL_SAMPLES * spacing

    def depth(self, pixels: np.ndarray, world_from_camera: np.ndarray, k: np.ndarray,
              size: tuple[int, int]) -> np.ndarray:
        """Depth (along the optical axis) at `pixels` `(N, 2)` of a camera at `world_from_camera`; NaN where the
        remembered depth does not reach."""
        out = np.full(len(pixels), np.nan)
        if self._world is None or not len(self._world) or not len(pixels):
            return out
        h, w = size
        cols, rows = int(np.ceil(w / self._cell_px)), int(np.ceil(h / self._cell_px))
        seen, z = world_to_pixels(world_from_camera, k, self._world)
        inside = (z > 1e-6) & (seen[:, 0] >= 0) & (seen[:, 0] < w) & (seen[:, 1] >= 0) & (seen[:, 1] < h)
        nearest = np.full(rows * cols, np.inf)
        np.minimum.at(nearest, self._cells(seen[inside], cols, rows), z[inside])
        found = nearest[self._cells(np.asarray(pixels, np.float64), cols, rows)]
        out[np.isfinite(found)] = found[np.isfinite(found)]
        return out

    def _cells(self, pixels: np.ndarray, cols: int, rows: int) -> np.ndarray:
        col = np.clip((pixels[:, 0] / self._cell_px).astype(int), 0, cols - 1)
        row = np.clip((pixels[:, 1] / self._cell_px).astype(int), 0, rows - 1)
        return row * cols + col
