"""Parallax between a keyframe's tracks `a` and their positions `b` in the current frame (pixels of a camera with
matrix `k`), once a rotation `r` between the two views is taken out: what only translation can explain.

`r` moves keyframe bearings into the current camera (x_current = R x_keyframe, OpenCV's two-view convention).
"""
from __future__ import annotations

import cv2
import numpy as np


def left_by_rotation(a: np.ndarray, b: np.ndarray, r: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Each track's displacement left once the rotation `r` is taken out (what translation must explain)."""
    rotated = cv2.perspectiveTransform(a.reshape(-1, 1, 2).astype(np.float64), k @ r @ np.linalg.inv(k))
    return np.linalg.norm(b - rotated.reshape(-1, 2), axis=1)


def parallax(a: np.ndarray, b: np.ndarray, r: np.ndarray, k: np.ndarray) -> float:
    """Median displacement left once the rotation `r` is taken out."""
    return float(np.median(left_by_rotation(a, b, r, k)))
