"""Triangulated depth kept as world points, so one measurement serves the frames around it.

A dense triangulation (`flow_depth.py`) costs two to four optical flows; measuring every frame would double the
geometric stage. The points of the latest measurement are kept in the world frame and projected into each
frame with its pose, like the local map of a keyframe SLAM system: frames between measurements get depth
where the view moved, not a correction field that stayed in image coordinates. (Keeping the last four
measurements scored better on one development bag and worse on two: one is kept.)
"""
from __future__ import annotations

import numpy as np

from .geometry import project, rays


class DepthPoints:
    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.world: np.ndarray | None = None  # (N, 3) points
        self.weight: np.ndarray | None = None  # (N,) inverse variance of their log depth
        self.stamp_ns = 0  # when they were measured

    def add(self, depth: np.ndarray, weight: np.ndarray, x: np.ndarray, y: np.ndarray, k: np.ndarray,
            world_from_camera: np.ndarray, stamp_ns: int = 0) -> None:
        """Depths (NaN where none) with their weights at pixels `x`, `y` of a camera with matrix `k` and pose,
        measured at `stamp_ns`."""
        usable = np.isfinite(depth) & (depth > 0) & (weight > 0)
        camera = rays(k, x[usable], y[usable]) * depth[usable]
        world = (world_from_camera[:3, :3] @ camera).T + world_from_camera[:3, 3]
        self.world, self.weight, self.stamp_ns = world, weight[usable].astype(np.float64), stamp_ns

    def forget_before(self, stamp_ns: int) -> None:
        """Points measured before `stamp_ns` are dropped (the scene may have changed since)."""
        if self.world is not None and self.stamp_ns < stamp_ns:
            self.reset()

    def project(self, world_from_camera: np.ndarray, k: np.ndarray, to_grid, shape: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray] | None:
        """Depth (NaN where none) and weight on a grid of `shape` for a camera with matrix `k` and pose:
        `to_grid(u, v)` maps the camera's pixels to grid pixels. Points falling on one grid pixel are averaged
        in log depth by weight. None without points."""
        if self.world is None:
            return None
        camera = (self.world - world_from_camera[:3, 3]) @ world_from_camera[:3, :3]
        z = camera[:, 2]
        front = z > 1e-6
        gx, gy = to_grid(*project(k, camera[front]))
        depth, total = self.splat(gx, gy, z[front], self.weight[front], shape)
        return None if not (total > 0).any() else (depth, total)

    @staticmethod
    def splat(x, y, z, weight, shape):
        """Depths `z` with weights at grid pixels `x`, `y` onto a grid of `shape`: (depth, weight), averaged in
        log depth by weight where several fall on one pixel."""
        col, row = np.rint(x).astype(int), np.rint(y).astype(int)
        ok = (col >= 0) & (row >= 0) & (col < shape[1]) & (row < shape[0]) & np.isfinite(z) & (z > 0)
        index = row[ok] * shape[1] + col[ok]
        w = weight[ok]
        total = np.bincount(index, w, shape[0] * shape[1])
        log_sum = np.bincount(index, w * np.log(z[ok]), shape[0] * shape[1])
        with np.errstate(invalid="ignore", divide="ignore"):
            depth = np.exp(log_sum / total)
        depth[total <= 0] = np.nan
        return depth.reshape(shape), total.reshape(shape)
