"""Poses, rays and projection: the camera geometry every stage shares.

Poses are 4x4 rigid transforms `a_from_b` (a point in b's frame -> a's); cameras are pinholes with matrix `k`,
OpenCV optical axes (x right, y down, z forward, REP 103's optical frame), pixel centres at integers.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp


def inverse(pose: np.ndarray) -> np.ndarray:
    """The inverse of a rigid transform (transpose and back-rotated translation, no general inverse)."""
    out = np.eye(4)
    out[:3, :3] = pose[:3, :3].T
    out[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
    return out


def to_rigid(pose: np.ndarray) -> np.ndarray:
    """`pose` with its rotation projected onto SO(3): products of float32 model rotations drift off it."""
    out = pose.copy()
    out[:3, :3] = Rotation.from_matrix(pose[:3, :3]).as_matrix()
    return out


def interpolate_pose(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """The pose `fraction` of the way from `a` to `b`: rotation by slerp, translation linearly."""
    fraction = float(np.clip(fraction, 0.0, 1.0))
    out = np.eye(4)
    out[:3, :3] = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]])))(fraction).as_matrix()
    out[:3, 3] = (1 - fraction) * a[:3, 3] + fraction * b[:3, 3]
    return out


def pinhole(height: int, width: int, horizontal_fov_deg: float) -> np.ndarray:
    """The camera matrix of an ideal pinhole with square pixels, centred, of this horizontal field of view."""
    focal = width / (2 * np.tan(np.radians(horizontal_fov_deg) / 2))
    return np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]])


def rays(k: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`(3, N)` rays `K^-1 [x, y, 1]` through pixels `x`, `y` (unit depth along the optical axis), float64."""
    return np.linalg.inv(k) @ np.stack([x, y, np.ones_like(x)]).astype(np.float64, copy=False)


def ray_points(u: np.ndarray, v: np.ndarray, z: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Pixels at depths `z` (along the optical axis) -> `(N, 3)` points in the camera optical frame."""
    return np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z], -1)


def project(k: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels `(u, v)` of camera-frame points `(N, 3)` (in front of the camera)."""
    pixels = k @ points.T
    return pixels[0] / pixels[2], pixels[1] / pixels[2]


def world_to_pixels(world_from_camera: np.ndarray, k: np.ndarray, points: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Pixels `(N, 2)` of world `points` `(N, 3)` in a camera at `world_from_camera`, and their depths `(N,)`
    (points behind the camera are projected as if just in front of it: check the depth)."""
    local = (points - world_from_camera[:3, 3]) @ world_from_camera[:3, :3]
    z = np.maximum(local[:, 2], 1e-6)
    pixels = np.stack([k[0, 0] * local[:, 0] / z + k[0, 2], k[1, 1] * local[:, 1] / z + k[1, 2]], 1)
    return pixels, local[:, 2]


def angle_px(k: np.ndarray, degrees: float) -> float:
    """The pixels an angle spans at the image centre of a camera with matrix `k`."""
    return float(k[0, 0] * np.tan(np.radians(degrees)))
