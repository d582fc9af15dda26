"""Locating one frame against the local map's points (ORB-SLAM's motion-only bundle adjustment), with each point's
error shaped by its depth's uncertainty.

The pose is the one that best reprojects the tracked points, from the motion model's prediction, with a Huber loss
at the chi-square 95% bound (2.45 sigma); outliers are dropped and the pose refitted; where under half of the points
agree with the prediction, RANSAC PnP starts over; where too few agree for a pose, the frame is fitted again at its
own noise (a fast turn's blur), never at less than the modelled. A point only the 4DS depth placed is as good as
that depth (`depth_prior_sigma`), and a depth error moves its projection only along its epipolar line: the error is
whitened by that along the line and by the tracking noise across it, so the epipolar constraint keeps its full
weight however wrong the depth is, and the depth gives the scale (and the conditioning of forward motion).
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from .bundle_adjustment import CHI2_2D_95
from .geometry import inverse, world_to_pixels
from .settings import EgomotionConfig

BOUND = float(np.sqrt(CHI2_2D_95))  # whitened error of an inlier
RAYLEIGH_MEDIAN = float(np.sqrt(2.0 * np.log(2.0)))  # median length of a two-dimensional unit Gaussian error
# A point no depth and no second view has placed stands at the median depth of the view: how far a point of a scene
# may lie from that (log depth, one sigma: a factor e). Its error along its epipolar line is discounted by that
# much, so a translating camera takes from it little more than the essential matrix's constraint across the line,
# and a turning one (no line to slide along) its full direction.
SCENE_LOG_SIGMA = 1.0


def locate(points: np.ndarray, pixels: np.ndarray, origin: np.ndarray, views: np.ndarray, predicted: np.ndarray,
           k: np.ndarray, config: EgomotionConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | str:
    """(world-from-camera, its covariance, which points are inliers, their median error in px) of a camera that
    sees world `points` at `pixels`; `origin` and `views` of each point as `LocalMap.positions` gives them. Or why
    no pose can be given."""
    placed, noise = views > 0, config.noise_px
    pose, error, inlier, along, sigma = _fit(points, pixels, origin, views, predicted, k, config, noise)
    if (agree := int((inlier & placed).sum())) < config.min_inliers and placed.sum() >= config.min_inliers:
        # Too few agree at the modelled noise: on a fast turn, blur and a rolling shutter move every track by more
        # than that. The frame's own noise, from the median of its errors (robust while under half are outliers;
        # a two-dimensional unit Gaussian's error has median RAYLEIGH_MEDIAN), gates it again, never tighter.
        scale = float(np.median(error[placed])) / RAYLEIGH_MEDIAN
        if scale > 1.0:
            noise = config.noise_px * scale
            pose, error, inlier, along, sigma = _fit(points, pixels, origin, views, pose, k, config, noise)
            agree = int((inlier & placed).sum())
    if agree < config.min_inliers:  # the scale needs points placed in depth
        return f"{agree} of {placed.sum()} map points placed in depth agree on a pose"
    pose, error, covariance = refine(pose, points[inlier], pixels[inlier], along[inlier], sigma[inlier], k,
                                     noise, robust=False, covariance=True)
    return pose, covariance, inlier, float(np.median(error) * noise)


def _fit(points, pixels, origin, views, start, k, config, noise):
    """The robust fit from `start` at tracking noise `noise` (px), started over by RANSAC PnP on the points placed
    in depth where under half of all agree: the pose, each point's whitened error, the inliers, and the whitening
    (`depth_direction`'s)."""
    along, sigma = depth_direction(start, points, origin, views, k, config, noise)
    pose, error = refine(start, points, pixels, along, sigma, k, noise, robust=True)
    inlier, placed = error < BOUND, views > 0
    # The prediction was no start: PnP with RANSAC from nothing, on the points placed in depth.
    if inlier.sum() < 0.5 * len(points) and placed.sum() >= config.min_inliers:
        ok, rvec, tvec, index = cv2.solvePnPRansac(points[placed], pixels[placed], k, None,
                                                   reprojectionError=float(BOUND * np.median(sigma[placed])),
                                                   iterationsCount=200, confidence=0.999, flags=cv2.SOLVEPNP_EPNP)
        if ok and index is not None and len(index) > (inlier & placed).sum():
            camera_from_world = np.eye(4)
            camera_from_world[:3, :3], camera_from_world[:3, 3] = cv2.Rodrigues(rvec)[0], tvec.ravel()
            pose, error = refine(inverse(camera_from_world), points, pixels, along, sigma, k, noise, robust=True)
            inlier = error < BOUND
    return pose, error, inlier, along, sigma


def depth_direction(pose: np.ndarray, points: np.ndarray, origin: np.ndarray, views: np.ndarray, k: np.ndarray,
                    config: EgomotionConfig, noise_px: float) -> tuple[np.ndarray, np.ndarray]:
    """How each point's depth error moves its projection in a camera at `pose`: the image direction `(N, 2)` (its
    epipolar line) and the error along it (px, one sigma, with the tracking noise). Each keyframe beyond the
    first that saw the point narrows its depth error (first order, 1/sqrt(views))."""
    log_sigma = np.where(views > 0, config.depth_prior_sigma / np.sqrt(np.maximum(views, 1)), SCENE_LOG_SIGMA)
    ends = []  # the principal point cancels in their difference and is left out
    for sign in (-1.0, 1.0):
        local = (origin + (points - origin) * np.exp(sign * log_sigma)[:, None] - pose[:3, 3]) @ pose[:3, :3]
        z = np.maximum(local[:, 2], 1e-6)
        ends.append(np.stack([k[0, 0] * local[:, 0] / z, k[1, 1] * local[:, 1] / z], 1))
    span = 0.5 * (ends[1] - ends[0])
    depth_px = np.linalg.norm(span, axis=1)
    direction = np.where(depth_px[:, None] > 1e-9, span / np.maximum(depth_px, 1e-9)[:, None], [1.0, 0.0])
    return direction, np.sqrt(noise_px ** 2 + depth_px ** 2)


def refine(start: np.ndarray, points: np.ndarray, pixels: np.ndarray, along: np.ndarray, sigma: np.ndarray,
           k: np.ndarray, noise: float, robust: bool, covariance: bool = False):
    """The pose (world-from-camera, perturbed from `start` by a world-frame rotation vector and a position offset)
    that best reprojects `points` onto `pixels`, each error weighed by `sigma` (px) in the direction `along` and by
    the tracking `noise` across it; each point's whitened error (sigmas); with `covariance`, the pose's (x, y, z,
    then rotation about x, y, z)."""
    pose_of, errors, jacobian = reprojection(start, points, pixels, along, sigma, k, noise)
    fit = least_squares(lambda x: errors(x).ravel(), np.zeros(6), jac=jacobian, method="trf",
                        loss="huber" if robust else "linear", f_scale=BOUND, max_nfev=50)
    pose, error = pose_of(fit.x), np.linalg.norm(errors(fit.x), axis=1)
    if not covariance:
        return pose, error
    # Whitened residuals: the inverse is the covariance where the noise model holds; where the residuals say the
    # noise is larger than modelled, it is scaled by their variance per degree of freedom (the a-posteriori
    # variance factor of least squares), never made smaller.
    freedom = max(fit.fun.size - 6, 1)
    factor = max(1.0, float(fit.fun @ fit.fun) / freedom)
    rotation_position = factor * np.linalg.pinv(fit.jac.T @ fit.jac)
    order = [3, 4, 5, 0, 1, 2]
    return pose, error, rotation_position[np.ix_(order, order)]


def reprojection(start: np.ndarray, points: np.ndarray, pixels: np.ndarray, along: np.ndarray, sigma: np.ndarray,
                 k: np.ndarray, noise: float):
    """`refine`'s problem in its unknown x (a world-frame rotation vector, then a position offset, from `start`):
    the pose at x, the whitened errors `(N, 2)` (along each point's `along`, then across it) and their Jacobian
    `(2N, 6)`."""
    across = np.stack([-along[:, 1], along[:, 0]], 1)
    r0, c0 = start[:3, :3], start[:3, 3]
    # The rows' directions in pixels, each whitened: (N, 2 rows, 2 pixel axes).
    rows = np.stack([along / sigma[:, None], across / noise], 1)

    def pose_of(x):
        out = np.eye(4)
        out[:3, :3] = Rotation.from_rotvec(x[:3]).as_matrix() @ r0
        out[:3, 3] = c0 + x[3:]
        return out

    def errors(x):
        e = world_to_pixels(pose_of(x), k, points)[0] - pixels
        return np.einsum("nij,nj->ni", rows, e)

    def jacobian(x):
        """d errors / d x, analytic (a finite-difference Jacobian costs six more projections an iteration)."""
        pose = pose_of(x)
        rotation, offset = pose[:3, :3], points - pose[:3, 3]
        local = offset @ rotation
        z = np.maximum(local[:, 2], 1e-6)
        # d pixel / d camera point (N, 2, 3), then d error / d world point: the camera point is R^T (P - c).
        d_pixel = np.zeros((len(points), 2, 3))
        d_pixel[:, 0, 0], d_pixel[:, 0, 2] = k[0, 0] / z, -k[0, 0] * local[:, 0] / z ** 2
        d_pixel[:, 1, 1], d_pixel[:, 1, 2] = k[1, 1] / z, -k[1, 1] * local[:, 1] / z ** 2
        d_world = np.einsum("nij,njk->nik", rows, d_pixel) @ rotation.T
        # A step of the position moves the point by minus that. A step d of the rotation vector turns the camera by
        # w = left_jacobian(x) d, which moves the point as (P - c) x w would: d error = (d_world x (P - c)) . w.
        turn = _cross(d_world, offset[:, None, :]) @ _left_jacobian(x[:3])
        return np.concatenate([turn, -d_world], axis=2).reshape(-1, 6)

    return pose_of, errors, jacobian


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`np.cross` over the last axis, written out: the same products, without its per-call set-up."""
    return np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1], a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                     a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], axis=-1)


def _left_jacobian(rotvec: np.ndarray) -> np.ndarray:
    """SO(3)'s left Jacobian: exp(r + d) = exp(J d) exp(r) to first order."""
    theta = float(np.linalg.norm(rotvec))
    w = _cross(np.eye(3), rotvec)  # [r]x: w @ v = r x v
    if theta < 1e-5:  # the series' first terms
        return np.eye(3) + w / 2 + w @ w / 6
    return (np.eye(3) + (1 - np.cos(theta)) / theta ** 2 * w + (theta - np.sin(theta)) / theta ** 3 * w @ w)
