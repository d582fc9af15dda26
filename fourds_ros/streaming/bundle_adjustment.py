"""Windowed bundle adjustment of the local map (ORB-SLAM's local BA, with the 4DS depth as a prior), in GTSAM.

Unknowns: the poses of the map's recent keyframes and the points they see. Factors:
- each observation of a point in a keyframe: its reprojection, `noise_px` (pixels of the geometry frames) with
  a Huber loss at the chi-square 95% bound of two dimensions (sqrt(5.991) sigma, ORB-SLAM's), so a track that
  slid or sits on a mover loses its pull instead of bending the map;
- each point's 4DS depth at its anchor keyframe (as the log of its range from that camera), up to a scale of
  that keyframe's depth map: `depth_sigma` is the model's error within one frame, Huber as well;
- each keyframe's depth scale (log) is near the model's own, `scale_sigma` (how much the model's scale wobbles
  from frame to frame): the metric scale of every window comes from all its keyframes' depth together, never
  chained from the last window, and the views decide how the keyframes' depths relate;
- the oldest keyframe of the window is held (the gauge); so is any older keyframe a point of the window is
  seen from.
Observations still beyond the chi-square bound after the solve are dropped and their points marked bad when
fewer than two good observations are left.

GTSAM (Levenberg-Marquardt on the sparse factor graph, eliminated with a fill-reducing ordering, which does
what a Schur complement does for BA) solves a window of 6 keyframes and ~230 points in ~60 ms on this CPU
(holo_office_b, 10 iterations); SciPy's `least_squares` has no such elimination and needs the Jacobian by hand or by
finite differences.
"""
from __future__ import annotations

from dataclasses import dataclass

import gtsam
import numpy as np
from gtsam.symbol_shorthand import L, S, X

from .geometry import world_to_pixels
from .local_map import LocalMap

CHI2_2D_95 = 5.991  # chi-square 95% bound, two degrees of freedom
HUBER_K = np.sqrt(CHI2_2D_95)  # the robust losses' bound, in sigmas
# Depth priors share a factor in groups of this many points of one keyframe: a Python factor costs ~35 us a call
# through GTSAM (185 of 214 ms a solve on holo_office_b one point a factor); 16 points a factor make the elimination's
# dense blocks 48 columns wide and the solve 57 ms (8: 69 ms, 32: 57 ms, all of a keyframe's: 97 ms).
DEPTH_PRIORS_PER_FACTOR = 16
HELD_SIGMA = 1e-6  # the held keyframes' pose sigma (rad, and the map's length unit)


def _robust(sigmas: np.ndarray) -> gtsam.noiseModel.Base:
    return gtsam.noiseModel.Robust.Create(gtsam.noiseModel.mEstimator.Huber.Create(HUBER_K),
                                          gtsam.noiseModel.Diagonal.Sigmas(sigmas))


def depth_prior_factor(pose_key: int, scale_key: int, point_keys: list[int], prior_log_ranges: np.ndarray,
                       sigma: float) -> gtsam.CustomFactor:
    """The depth priors of points `point_keys` of one keyframe: each row the log distance of a point from camera
    `pose_key`, less the keyframe's depth scale `scale_key` and the point's prior, in sigmas (`sigma`), with the
    Huber loss applied row by row exactly as GTSAM's Robust noise model applies it to a one-row factor (weighted
    rows when linearised, the loss itself when evaluated): one Python call for many points instead of one each."""
    count = len(point_keys)
    prior_log_ranges = np.asarray(prior_log_ranges, np.float64)

    def error(factor: gtsam.CustomFactor, values: gtsam.Values, jacobians: list | None) -> np.ndarray:
        keys = factor.keys()
        pose = values.atPose3(keys[0]).matrix()
        scale = values.atVector(keys[1])[0]
        offset = np.array([values.atPoint3(key) for key in keys[2:]]) - pose[:3, 3]
        length2 = np.maximum(np.einsum("ij,ij->i", offset, offset), 1e-12)
        residual = (0.5 * np.log(length2) - scale - prior_log_ranges) / sigma
        size = np.abs(residual)
        if jacobians is None:
            return np.sqrt(2.0 * np.where(size <= HUBER_K, 0.5 * residual ** 2, HUBER_K * (size - 0.5 * HUBER_K)))
        # Rows weighted by the Huber weight's square root (IRLS); `scaled` is that over sigma, as the Jacobians need.
        scaled = np.sqrt(np.where(size <= HUBER_K, 1.0, HUBER_K / np.maximum(size, HUBER_K))) / sigma
        along = offset / length2[:, None] * scaled[:, None]  # d weighted residual / d point
        # GTSAM's Pose3 tangent: rotation, then translation in the camera's frame.
        jacobians[0] = np.concatenate([np.zeros((count, 3)), -(along @ pose[:3, :3])], axis=1)
        jacobians[1] = -scaled.reshape(count, 1)
        for row in range(count):
            jacobians[2 + row] = np.zeros((count, 3))
            jacobians[2 + row][row] = along[row]
        return scaled * residual * sigma  # the weighted residual (in sigmas), computed as the reports were
    return gtsam.CustomFactor(gtsam.noiseModel.Unit.Create(count), [pose_key, scale_key, *point_keys], error)


@dataclass
class Problem:
    """What a bundle adjustment needs of the map, copied (it may be solved in another process while the map moves
    on): the window's keyframes, those it moves, their poses, and its points with their observations."""

    window: list[int]
    moved: set[int]
    poses: dict[int, np.ndarray]  # keyframe id -> world-from-camera, every keyframe a point of the window is seen from
    points: dict[int, tuple[np.ndarray, float, int, dict[int, np.ndarray]]]  # id -> position, prior range, anchor, views


def problem(local_map: LocalMap) -> Problem | None:
    """The recent keyframes' adjustment; None when there is nothing to adjust."""
    window = local_map.recent()
    if len(window) < 2:
        return None
    moved = {kf.id for kf in window[1:]}
    points = {}
    for pid, point in local_map.points.items():
        if point.bad or len(point.observations) < 2 or not any(kid in moved for kid in point.observations):
            continue
        points[pid] = (point.position.copy(), point.prior_range, point.anchor, dict(point.observations))
    if not points:
        return None
    seen = {kid for _, _, _, views in points.values() for kid in views} | {kf.id for kf in window}
    return Problem([kf.id for kf in window], moved, {kid: local_map.keyframes[kid].world_from_camera.copy()
                                                     for kid in seen}, points)


def solve(problem: Problem, k: np.ndarray, noise_px: float, depth_sigma: float, scale_sigma: float,
          iterations: int) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """The moved keyframes' poses and the points' positions that fit best."""
    calibration = gtsam.Cal3_S2(k[0, 0], k[1, 1], 0.0, k[0, 2], k[1, 2])
    pixel_noise = _robust(np.full(2, noise_px))
    graph, values = gtsam.NonlinearFactorGraph(), gtsam.Values()
    priors: dict[int, list[tuple[int, float]]] = {}  # anchor keyframe -> its points' prior log ranges
    for pid, (position, prior_range, anchor, views) in problem.points.items():
        values.insert(L(pid), gtsam.Point3(*position))
        for kid, pixel in views.items():
            graph.add(gtsam.GenericProjectionFactorCal3_S2(gtsam.Point2(*pixel), pixel_noise, X(kid), L(pid),
                                                          calibration))
        if np.isfinite(prior_range) and anchor in views:
            priors.setdefault(anchor, []).append((pid, float(np.log(prior_range))))
    for anchor, rows in priors.items():
        for start in range(0, len(rows), DEPTH_PRIORS_PER_FACTOR):
            group = rows[start:start + DEPTH_PRIORS_PER_FACTOR]
            graph.add(depth_prior_factor(X(anchor), S(anchor), [L(pid) for pid, _ in group],
                                         np.array([c for _, c in group]), depth_sigma))
    held = gtsam.noiseModel.Isotropic.Sigma(6, HELD_SIGMA)
    for kid, matrix in problem.poses.items():
        pose = gtsam.Pose3(matrix)
        values.insert(X(kid), pose)
        if kid not in problem.moved or not any(kid in views for _, _, _, views in problem.points.values()):
            graph.add(gtsam.PriorFactorPose3(X(kid), pose, held))  # the gauge, older views, keyframes left unseen
    scale_noise = gtsam.noiseModel.Isotropic.Sigma(1, scale_sigma)
    for kid in priors:
        values.insert(S(kid), np.zeros(1))
        graph.add(gtsam.PriorFactorVector(S(kid), np.zeros(1), scale_noise))
    params = gtsam.LevenbergMarquardtParams()
    params.setMaxIterations(iterations)
    result = gtsam.LevenbergMarquardtOptimizer(graph, values, params).optimize()
    return ({kid: result.atPose3(X(kid)).matrix() for kid in problem.moved},
            {pid: np.asarray(result.atPoint3(L(pid)), np.float64) for pid in problem.points})


def apply(local_map: LocalMap, solution: tuple[dict, dict], k: np.ndarray, noise_px: float) -> int:
    """Write a solution back to what is still in the map (keyframes and points may have left since its problem was
    taken); observations beyond the chi-square bound are dropped. The count of points marked bad."""
    poses, positions = solution
    for kid, pose in poses.items():
        if kid in local_map.keyframes:
            local_map.keyframes[kid].world_from_camera = pose
    present = [pid for pid in positions if pid in local_map.points]
    for pid in present:
        local_map.points[pid].position = positions[pid]
    return _update_points(local_map, present, k, noise_px)


def adjust(local_map: LocalMap, k: np.ndarray, noise_px: float, depth_sigma: float, scale_sigma: float,
           iterations: int) -> None:
    """Move the recent keyframes and their points, in place, here and now."""
    todo = problem(local_map)
    if todo is not None:
        apply(local_map, solve(todo, k, noise_px, depth_sigma, scale_sigma, iterations), k, noise_px)


def _update_points(local_map: LocalMap, points: list[int], k: np.ndarray, noise_px: float) -> int:
    """Drop observations behind the camera or beyond the chi-square bound (and mark points left with neither their
    anchor nor two observations bad). The count of points marked bad."""
    bound = np.sqrt(CHI2_2D_95) * noise_px
    seen: dict[int, list[int]] = {}  # keyframe id -> the points it observes
    for pid in points:
        point = local_map.points[pid]
        for kid in point.observations:
            seen.setdefault(kid, []).append(pid)
    for kid, pids in seen.items():
        world = np.array([local_map.points[pid].position for pid in pids])
        observed = np.array([local_map.points[pid].observations[kid] for pid in pids])
        pixels, depth = world_to_pixels(local_map.keyframes[kid].world_from_camera, k, world)
        for pid in np.asarray(pids)[(depth <= 0) | (np.linalg.norm(pixels - observed, axis=1) > bound)]:
            del local_map.points[pid].observations[kid]
    rejected = 0
    for pid in points:
        point = local_map.points[pid]
        if len(point.observations) < 2 and point.anchor not in point.observations:
            point.bad = True
            rejected += 1
    return rejected
