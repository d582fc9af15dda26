"""Pyramidal Lucas-Kanade with a forward-backward check (Kalal et al. 2010), shared by the geometric stage."""
from __future__ import annotations

import cv2
import numpy as np


def lk_params(window: int, iterations: int) -> dict:
    return dict(winSize=(window, window), maxLevel=3,
                criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 0.03))


def track_checked(previous: np.ndarray, current: np.ndarray, start: np.ndarray, params: dict,
                  forward_backward_px: float, initial: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions `(N, 2)` of `start` (on `previous`) in `current`, searched from `initial` (default: `start`), and
    which of them passed: tracked both ways, back within `forward_backward_px` of the start, inside the image."""
    p0 = start.reshape(-1, 1, 2).astype(np.float32)
    p1 = (p0 if initial is None else initial.reshape(-1, 1, 2)).astype(np.float32).copy()
    p1, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, p0, p1, flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **params)
    back = p0.copy()
    back, status_back, _ = cv2.calcOpticalFlowPyrLK(current, previous, p1, back, flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
                                                    **params)
    h, w = current.shape[:2]
    p1, back = p1.reshape(-1, 2), back.reshape(-1, 2)
    ok = (status.ravel() == 1) & (status_back.ravel() == 1) \
        & (np.linalg.norm(back - p0.reshape(-1, 2), axis=1) < forward_backward_px) \
        & (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1)
    return p1, ok
