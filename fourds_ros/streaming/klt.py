"""Pyramidal Lucas-Kanade with a veto, shared by the geometric stage.

Two vetoes: the forward-backward check (Kalal et al. 2010: track back and compare with the start; two LK
passes) and the appearance check (the mean absolute difference of the two patches that LK reports; free).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class LucasKanade:
    window: int = 21
    levels: int = 3
    iterations: int = 10
    epsilon: float = 0.03
    forward_backward_px: float | None = 1.0  # None: no backward pass
    max_error: float | None = None  # mean absolute grey difference of the patches (None: not checked)

    def _params(self) -> dict:
        return dict(winSize=(self.window, self.window), maxLevel=self.levels,
                    criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, self.iterations, self.epsilon))

    def track(self, previous: np.ndarray, current: np.ndarray, start: np.ndarray,
              initial: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positions `(N, 2)` of `start` (on `previous`) in `current`, searched from `initial` (default: `start`),
        and which of them passed: converged, inside the image, and through the configured vetoes."""
        p0 = start.reshape(-1, 1, 2).astype(np.float32)
        p1 = (p0 if initial is None else initial.reshape(-1, 1, 2)).astype(np.float32).copy()
        params = self._params()
        p1, status, error = cv2.calcOpticalFlowPyrLK(previous, current, p0, p1,
                                                     flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **params)
        h, w = current.shape[:2]
        p1 = p1.reshape(-1, 2)
        ok = (status.ravel() == 1) & (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1)
        if self.max_error is not None:
            ok &= error.ravel() < self.max_error
        if self.forward_backward_px is not None:
            back, status_back, _ = cv2.calcOpticalFlowPyrLK(current, previous, p1.reshape(-1, 1, 2), p0.copy(),
                                                            flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **params)
            ok &= (status_back.ravel() == 1) & \
                (np.linalg.norm(back.reshape(-1, 2) - p0.reshape(-1, 2), axis=1) < self.forward_backward_px)
        return p1, ok
