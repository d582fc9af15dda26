"""Classical baselines scored next to the model: what a user would otherwise run."""
from __future__ import annotations

import cv2
import numpy as np

from ..streaming.klt import LucasKanade


def lucas_kanade_tracks(frames: list[np.ndarray], queries: np.ndarray, query_frames: np.ndarray,
                        max_error: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Pyramidal Lucas-Kanade, frame to frame from each query forward.

    frames: RGB uint8 images; queries `(N, 2)` (x, y) on `query_frames` `(N,)`.
    Returns tracks `(N, F, 2)` and visibility `(N, F)` (lost points stay invisible; frames before the
    query are invisible).
    """
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    n, total = len(queries), len(frames)
    tracks = np.zeros((n, total, 2), np.float32)
    visible = np.zeros((n, total), bool)
    alive = np.zeros(n, bool)
    position = np.zeros((n, 2), np.float32)
    tracker = LucasKanade(window=21, iterations=30, epsilon=0.01, forward_backward_px=None, max_error=max_error)
    for f in range(total):
        starting = query_frames == f
        position[starting], alive[starting] = queries[starting], True
        if f > 0 and alive.any():
            ids = np.flatnonzero(alive)
            moved, ok = tracker.track(grey[f - 1], grey[f], position[ids])
            position[ids[ok]] = moved[ok]
            alive[ids[~ok]] = False
        tracks[:, f] = position
        visible[:, f] = alive
    return tracks, visible


def orb_visual_odometry(frames: list[np.ndarray], k: np.ndarray, min_matches: int = 12) -> np.ndarray:
    """Monocular ORB + essential-matrix visual odometry: camera poses `(F, 4, 4)` in the first camera's frame.

    Monocular, so each step's translation has unit length (scale is unobservable); ATE is computed after
    Sim(3) alignment. Steps with too few matches or too little parallax keep the previous pose.
    """
    # ORB's default 31-pixel border and patch leave little of a small image; 15 keeps it usable at ~100 px.
    orb = cv2.ORB_create(nfeatures=1500, edgeThreshold=15, patchSize=15, fastThreshold=10)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    poses = [np.eye(4)]
    previous = orb.detectAndCompute(cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY), None)
    for frame in frames[1:]:
        current = orb.detectAndCompute(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), None)
        step = np.eye(4)
        if previous[1] is not None and current[1] is not None:
            matches = matcher.match(previous[1], current[1])
            if len(matches) >= min_matches:
                a = np.float32([previous[0][m.queryIdx].pt for m in matches])
                b = np.float32([current[0][m.trainIdx].pt for m in matches])
                if np.median(np.linalg.norm(a - b, axis=1)) > 0.5:
                    e, mask = cv2.findEssentialMat(a, b, k, method=cv2.RANSAC, prob=0.999, threshold=1.0)
                    if e is not None and e.shape == (3, 3):
                        _, r, t, _ = cv2.recoverPose(e, a, b, k, mask=mask)
                        # recoverPose gives the motion of points: x_b = R x_a + t; the camera moves by its inverse.
                        step[:3, :3], step[:3, 3] = r.T, (-r.T @ t).ravel()
        poses.append(poses[-1] @ step)
        previous = current
    return np.array(poses)


def constant_depth(shape: tuple[int, ...], value: float = 1.0) -> np.ndarray:
    """The trivial depth baseline: one value everywhere (median alignment turns it into the median depth)."""
    return np.full(shape, value, np.float32)
