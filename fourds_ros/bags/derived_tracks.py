"""Point-track ground truth for real footage that has depth and camera poses (a static scene).

Surface points are picked where a corner detector finds texture and the ground-truth depth is valid
and smooth, lifted to the world with that depth and pose, and reprojected into every frame. A point is
visible in a frame when it projects inside the image in front of the camera and the ground-truth depth
there agrees with its depth: |z_gt - z| <= max(DEPTH_TOLERANCE_M, DEPTH_TOLERANCE_REL * z), z_gt the
median of the valid depths in a 5x5 window (sensor depth has holes). Anything that moves breaks the
static-scene assumption; the report says the tracks are derived.
"""
from __future__ import annotations

import cv2
import numpy as np

DEPTH_TOLERANCE_M = 0.05
DEPTH_TOLERANCE_REL = 0.05
_WINDOW = 2  # half-size of the depth window


def _window_depth(depth: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Median of the valid depths in the 5x5 window around each pixel (NaN where none is valid)."""
    h, w = depth.shape
    ui, vi = np.round(u).astype(int), np.round(v).astype(int)
    offsets = np.arange(-_WINDOW, _WINDOW + 1)
    rows = np.clip(vi[:, None, None] + offsets[None, :, None], 0, h - 1)
    cols = np.clip(ui[:, None, None] + offsets[None, None, :], 0, w - 1)
    patch = depth[rows, cols].reshape(len(u), -1).astype(np.float64)
    patch[~(np.isfinite(patch) & (patch > 0))] = np.nan
    if not patch.size:
        return np.zeros(0)
    out = np.full(len(u), np.nan)
    some = np.isfinite(patch).any(axis=1)
    out[some] = np.nanmedian(patch[some], axis=1)
    return out


def pick_surface_points(grey: np.ndarray, depth: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` textured pixels `(x, y)` with valid depth away from depth edges."""
    valid = np.isfinite(depth) & (depth > 0)
    if count <= 0 or not valid.any():
        return np.zeros((0, 2), np.float32)
    # Spread over the image, not clustered on the most textured object.
    spacing = max(8.0, min(grey.shape) / 12)
    corners = cv2.goodFeaturesToTrack(grey, maxCorners=count * 4, qualityLevel=0.01, minDistance=spacing,
                                      mask=valid.astype(np.uint8) * 255)
    if corners is None:
        return np.zeros((0, 2), np.float32)
    xy = corners.reshape(-1, 2)
    z = _window_depth(depth, xy[:, 0], xy[:, 1])
    own = depth[np.round(xy[:, 1]).astype(int), np.round(xy[:, 0]).astype(int)]
    smooth = np.isfinite(z) & np.isfinite(own) & (own > 0) & (np.abs(own - z) <= DEPTH_TOLERANCE_REL * z)
    return xy[smooth][:count].astype(np.float32)


def derive_point_tracks(frames: int, load: callable, k: np.ndarray, world_from_camera: np.ndarray,
                        count: int = 64, seed_frames: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Tracks `(N, F, 2)` and visibility `(N, F)` for frames whose `load(f)` gives `(grey, depth)`.

    Points are seeded on `seed_frames` evenly spaced frames (the camera leaves what it saw first), so
    tracks start throughout the sequence.
    """
    k = np.asarray(k, np.float64)
    seeds = sorted(set(np.linspace(0, frames - 1, seed_frames + 1)[:-1].astype(int).tolist()))
    per_seed = int(np.ceil(count / len(seeds)))
    world_points = []
    for f in seeds:
        grey, depth = load(f)
        xy = pick_surface_points(grey, depth, per_seed)
        z = _window_depth(depth, xy[:, 0], xy[:, 1])
        camera = np.stack([(xy[:, 0] - k[0, 2]) / k[0, 0] * z, (xy[:, 1] - k[1, 2]) / k[1, 1] * z, z, np.ones_like(z)])
        world_points.append((world_from_camera[f] @ camera).T)
    points = np.concatenate(world_points)[:count] if world_points else np.zeros((0, 4))
    tracks = np.zeros((len(points), frames, 2), np.float32)
    visible = np.zeros((len(points), frames), bool)
    for f in range(frames):
        grey, depth = load(f)
        h, w = depth.shape
        camera = (np.linalg.inv(world_from_camera[f]) @ points.T).T
        z = camera[:, 2]
        with np.errstate(all="ignore"):
            u = k[0, 0] * camera[:, 0] / z + k[0, 2]
            v = k[1, 1] * camera[:, 1] / z + k[1, 2]
        inside = (z > 0.05) & (u >= -0.5) & (u <= w - 0.5) & (v >= -0.5) & (v <= h - 0.5)
        tracks[:, f] = np.stack([np.nan_to_num(u), np.nan_to_num(v)], -1)
        z_gt = np.full(len(points), np.nan)
        if inside.any():
            z_gt[inside] = _window_depth(depth, u[inside], v[inside])
        with np.errstate(invalid="ignore"):
            agree = np.abs(z_gt - z) <= np.maximum(DEPTH_TOLERANCE_M, DEPTH_TOLERANCE_REL * z)
        visible[:, f] = inside & agree
    return tracks, visible
