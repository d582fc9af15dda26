"""What a robot's costmap takes from the depth: the depth image with untrusted pixels removed, and its points.

Both follow the published depth (REP 118: NaN where there is no depth) and its confidence (`depth_fusion.py`):
a pixel below `min_confidence` is no depth at all, in the image and in the cloud alike.
"""
from __future__ import annotations

import numpy as np

from ..contract import pack_depth_points
from .geometry import ray_points


def trusted_depth(depth: np.ndarray, confidence: np.ndarray | None, min_confidence: float) -> np.ndarray:
    """`depth` with NaN where it is not a depth (not finite, not positive) or its confidence is below
    `min_confidence`."""
    valid = np.isfinite(depth) & (depth > 0)
    if confidence is not None and min_confidence > 0:
        valid &= confidence >= min_confidence
    return np.where(valid, depth, np.float32(np.nan)).astype(np.float32, copy=False)


def depth_points(trusted: np.ndarray, confidence: np.ndarray | None, k: np.ndarray, stride: int = 1) -> np.ndarray:
    """Packed `contract.DEPTH_POINT_DTYPE` records of every `stride`-th pixel (both ways) of a `trusted_depth`
    `(h, w)` that has a depth, through the intrinsics `k` of the depth image (pixel centres at integers)."""
    depth = trusted[::stride, ::stride]
    v, u = np.nonzero(np.isfinite(depth))
    conf = np.ones(len(v), np.float32) if confidence is None else confidence[::stride, ::stride][v, u]
    return pack_depth_points(ray_points(u * stride, v * stride, depth[v, u], np.asarray(k, np.float64)), conf)
