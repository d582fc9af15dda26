"""Two-view geometry between a keyframe's tracks `a` and their positions `b` in the current frame (pixels of a
camera with matrix `k`): rotation alone, parallax, PnP on depth-lifted tracks, residuals and scale.

Conventions of OpenCV's two-view functions: `R`, `t` move keyframe points into the current camera
(x_current = R x_keyframe + t).
"""
from __future__ import annotations

import cv2
import numpy as np

from .geometry import rays


def procrustes(a: np.ndarray, b: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The rotation that best maps the bearing vectors of `a` onto those of `b` (orthogonal Procrustes)."""
    fa, fb = rays(k, a[:, 0], a[:, 1]), rays(k, b[:, 0], b[:, 1])
    fa, fb = fa / np.linalg.norm(fa, axis=0), fb / np.linalg.norm(fb, axis=0)
    u, _, vt = np.linalg.svd(fb @ fa.T)
    return u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt


def left_by_rotation(a: np.ndarray, b: np.ndarray, r: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Each track's displacement left once the rotation `r` is taken out (what translation must explain)."""
    rotated = cv2.perspectiveTransform(a.reshape(-1, 1, 2).astype(np.float64), k @ r @ np.linalg.inv(k))
    return np.linalg.norm(b - rotated.reshape(-1, 2), axis=1)


def parallax(a: np.ndarray, b: np.ndarray, r: np.ndarray, k: np.ndarray) -> float:
    """Median displacement left once the rotation `r` is taken out."""
    return float(np.median(left_by_rotation(a, b, r, k)))


def robust_rotation(a: np.ndarray, b: np.ndarray, k: np.ndarray, threshold_px: float, min_tracks: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Procrustes rotation refitted twice on the tracks it explains best (moving objects drop out); the rotation
    and which tracks it kept."""
    keep = np.ones(len(a), bool)
    r = procrustes(a, b, k)
    for _ in range(2):
        error = left_by_rotation(a, b, r, k)
        keep = error <= max(np.percentile(error, 70), threshold_px)
        if keep.sum() < min_tracks:
            break
        r = procrustes(a[keep], b[keep], k)
    return r, keep


def pnp(a, b, k, depth, threshold_px: float, min_inliers: int) -> tuple[np.ndarray, np.ndarray, int, float] | None:
    """(R, t, inliers, median reprojection error px) moving keyframe points (lifted with `depth`) onto `b`;
    None where too few points have depth or RANSAC keeps under half of them."""
    usable = np.isfinite(depth) & (depth > 0)
    if usable.sum() < min_inliers:
        return None
    points = rays(k, a[usable, 0], a[usable, 1]).T * depth[usable, None]
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(points, b[usable].astype(np.float64), k, None,
                                                 reprojectionError=threshold_px, iterationsCount=100,
                                                 flags=cv2.SOLVEPNP_EPNP)
    if not ok or inliers is None or len(inliers) < max(min_inliers, usable.sum() // 2):
        return None
    index = inliers.ravel()
    ok, rvec, tvec = cv2.solvePnP(points[index], b[usable][index].astype(np.float64), k, None, rvec, tvec,
                                  useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return None
    projected, _ = cv2.projectPoints(points[index], rvec, tvec, k, None)
    residual = float(np.median(np.linalg.norm(projected.reshape(-1, 2) - b[usable][index], axis=1)))
    return cv2.Rodrigues(rvec)[0], tvec.ravel(), len(index), residual


def sampson_residual(e: np.ndarray, a: np.ndarray, b: np.ndarray, k: np.ndarray) -> float:
    """Median Sampson distance of the tracks to the essential matrix `e`, in pixels."""
    xa, xb = rays(k, a[:, 0], a[:, 1]), rays(k, b[:, 0], b[:, 1])
    ea, etb = e @ xa, e.T @ xb
    numerator = np.sum(xb * ea, axis=0) ** 2
    denominator = ea[0] ** 2 + ea[1] ** 2 + etb[0] ** 2 + etb[1] ** 2
    return float(np.median(np.sqrt(numerator / np.maximum(denominator, 1e-18))) * k[0, 0])


def depth_ratio_scale(a, b, r, t, k, depth) -> float | None:
    """Translation length that makes the triangulated points agree with the model's depth (median ratio, DF-VO's
    scale recovery); None with fewer than 5 points to compare."""
    p0 = k @ np.hstack([np.eye(3), np.zeros((3, 1))])
    p1 = k @ np.hstack([r, t.reshape(3, 1)])
    x = cv2.triangulatePoints(p0, p1, a.T.astype(np.float64), b.T.astype(np.float64))
    z = x[2] / x[3]
    usable = np.isfinite(z) & (z > 1e-6) & np.isfinite(depth) & (depth > 0)
    if usable.sum() < 5:
        return None
    scale = float(np.median(depth[usable] / z[usable]))
    return scale if np.isfinite(scale) and scale > 0 else None


def fit_covariance(residual: float, parallax_px: float, inliers: int, k: np.ndarray, length: float) -> np.ndarray:
    """Covariance of a fitted step: grows with the fit's residual and shrinks with inliers and parallax
    (first-order, per axis)."""
    residual = residual if np.isfinite(residual) else 1.0
    pixel = max(residual, 0.1) / k[0, 0]  # angular noise of one track
    sigma_r = pixel / np.sqrt(inliers)
    sigma_t = length * (max(residual, 0.1) / max(parallax_px, 0.1)) / np.sqrt(inliers) + 1e-4
    return np.diag([sigma_t ** 2] * 3 + [sigma_r ** 2] * 3)
