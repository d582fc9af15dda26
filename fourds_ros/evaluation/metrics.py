"""Scores against ground truth: depth, egomotion (via evo), TAP-Vid point tracking, box tracking."""
from __future__ import annotations

import copy

import numpy as np

# TAP-Vid: position thresholds in pixels at 256x256 resolution.
TAPVID_THRESHOLDS = (1, 2, 4, 8, 16)
BOX_SUCCESS_THRESHOLDS = np.linspace(0, 1, 21)
CHI2_6DOF_3SIGMA = 20.06  # P(chi-square with 6 DoF <= this) = 0.9973: the 6-DoF twin of a 3-sigma bound


# Depth -------------------------------------------------------------------------
def _depth_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    ratio = np.maximum(pred / gt, gt / pred)
    return {"abs_rel": float(np.mean(np.abs(pred - gt) / gt)), "delta_1.25": float(np.mean(ratio < 1.25))}


# Confidence thresholds at which depth is scored on the pixels at or above them (`depth/confidence`).
CONFIDENCE_THRESHOLDS = (0.25, 0.5, 0.75)


def _resized(images: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`(F, h, w)` images resized (nearest) to `(F, H, W)` `shape`."""
    if images.shape == shape:
        return images
    import cv2
    return np.stack([cv2.resize(p, (shape[2], shape[1]), interpolation=cv2.INTER_NEAREST) for p in images])


def depth_metrics(pred: np.ndarray, gt: np.ndarray, confidence: np.ndarray | None = None) -> dict[str, dict]:
    """AbsRel and delta<1.25 of `pred` against `gt` `(F, H, W)` on valid pixels, after three alignments:
    median scale per frame, one median scale for the sequence, and least-squares scale+shift per frame; and
    without alignment (`raw_metric`: the stream's own scale, what a robot gets). With the prediction's
    `confidence`, the median-aligned AbsRel on the pixels at each of `CONFIDENCE_THRESHOLDS`, next to a constant
    depth's (each frame's median ground truth) on the same pixels. `pred` at another resolution is resized
    (nearest) to `gt`'s."""
    pred = _resized(pred, gt.shape)
    valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred) & (pred > 0)
    if not valid.any():
        raise ValueError("no pixel has both a valid prediction and valid ground truth")
    out: dict[str, dict[str, float]] = {}
    per_frame, affine, scales = [], [], []
    for p, g, v in zip(pred, gt, valid):
        if v.sum() < 2:  # a scale and shift need two pixels
            continue
        pv, gv = p[v], g[v]
        scales.append(np.median(gv) / np.median(pv))
        per_frame.append(pv * scales[-1])
        a = np.stack([pv, np.ones_like(pv)], 1)
        (scale, shift), *_ = np.linalg.lstsq(a, gv, rcond=None)
        affine.append(np.maximum(scale * pv + shift, 1e-3))
    gts = [g[v] for g, v in zip(gt, valid) if v.sum() >= 2]
    out["median_per_frame"] = _depth_errors(np.concatenate(per_frame), np.concatenate(gts))
    seq_scale = np.median(gt[valid]) / np.median(pred[valid])
    out["median_per_sequence"] = _depth_errors(pred[valid] * seq_scale, gt[valid])
    out["scale_shift_per_frame"] = _depth_errors(np.concatenate(affine), np.concatenate(gts))
    out["raw_metric"] = _depth_errors(pred[valid], gt[valid])
    # How steady the model's own scale is over the sequence (0 = one scale fits every frame), and how much of
    # the valid ground truth got a valid (finite, positive: REP 118) prediction.
    scales = np.asarray(scales)
    out["per_frame_scale"] = {"median": float(np.median(scales)),
                              "relative_spread": float(np.std(scales) / max(np.mean(scales), 1e-12))}
    gt_valid = np.isfinite(gt) & (gt > 0)
    out["coverage"] = {"fraction": float(valid.sum() / max(gt_valid.sum(), 1))}
    if confidence is not None:
        out["by_confidence"] = _confidence_metrics(pred, gt, _resized(confidence, gt.shape), valid)
    return out


def _confidence_metrics(pred: np.ndarray, gt: np.ndarray, confidence: np.ndarray, valid: np.ndarray) -> dict:
    """Median-aligned AbsRel (each frame's scale from all its valid pixels) on the pixels at or above each
    confidence threshold, a constant depth's on the same pixels, and the share of valid pixels they are."""
    scaled, constant = np.full(pred.shape, np.nan), np.full(pred.shape, np.nan)
    for f, (p, g, v) in enumerate(zip(pred, gt, valid)):
        if v.any():
            scaled[f][v] = p[v] * np.median(g[v]) / np.median(p[v])
            constant[f][v] = np.median(g[v])
    out = {}
    for threshold in CONFIDENCE_THRESHOLDS:
        chosen = valid & (np.nan_to_num(confidence, nan=-1.0) >= threshold)
        g = gt[chosen]
        out[f"{threshold:g}"] = {
            "abs_rel": float(np.mean(np.abs(scaled[chosen] - g) / g)) if chosen.any() else float("nan"),
            "constant_abs_rel": float(np.mean(np.abs(constant[chosen] - g) / g)) if chosen.any() else float("nan"),
            "coverage": float(chosen.sum() / max(valid.sum(), 1))}
    return out


# Egomotion ---------------------------------------------------------------------
def _trajectory(poses: np.ndarray, stamps_s: np.ndarray):
    from evo.core.trajectory import PoseTrajectory3D
    return PoseTrajectory3D(poses_se3=list(np.asarray(poses, np.float64)), timestamps=np.asarray(stamps_s, np.float64))


def rotation_angle_deg(r: np.ndarray) -> np.ndarray:
    """Angle of rotation matrices `(..., 3, 3)` in degrees."""
    cos = np.clip((np.trace(r, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def path_length(poses: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1).sum())


# A ground-truth path this short and rotation this small is a standing camera: report drift, not ATE.
STATIC_PATH_M, STATIC_ROTATION_DEG = 0.05, 1.0


def is_static(gt_poses: np.ndarray) -> bool:
    relative = np.linalg.inv(gt_poses[0]) @ gt_poses
    return path_length(gt_poses) < STATIC_PATH_M and float(rotation_angle_deg(relative[:, :3, :3]).max()) < STATIC_ROTATION_DEG


def drift(pred_poses: np.ndarray, gt_poses: np.ndarray, stamps_s: np.ndarray) -> dict[str, float]:
    """How far the estimate wanders, per minute, in the first frame's camera.

    For a standing camera (`is_static`) drift is the estimate's own motion: rotation, the largest angle of its
    pose relative to the first frame over the sequence's duration; translation, the largest distance (in the
    estimate's own units: monocular estimates carry their own scale). Ground truth at that level is sensor
    noise, so the right answer is no motion. For a moving camera it is the same measured against the ground
    truth's relative pose. Both views are kept (`*_vs_gt_*`).
    """
    minutes = max(float(stamps_s[-1] - stamps_s[0]) / 60.0, 1e-9)
    est = np.linalg.inv(pred_poses[0]) @ pred_poses
    ref = np.linalg.inv(gt_poses[0]) @ gt_poses
    error = np.linalg.inv(ref) @ est
    vs_gt_rotation = rotation_angle_deg(error[:, :3, :3])
    vs_gt_translation = np.linalg.norm(est[:, :3, 3] - ref[:, :3, 3], axis=1)
    if is_static(gt_poses):
        rotation, translation = rotation_angle_deg(est[:, :3, :3]), np.linalg.norm(est[:, :3, 3], axis=1)
    else:
        rotation, translation = vs_gt_rotation, vs_gt_translation
    return {"rotation_drift_deg_per_min": float(rotation.max() / minutes),
            "rotation_max_deg": float(rotation.max()), "rotation_final_deg": float(rotation[-1]),
            "translation_drift_per_min": float(translation.max() / minutes),
            "translation_max": float(translation.max()),
            "vs_gt_rotation_deg_per_min": float(vs_gt_rotation.max() / minutes),
            "vs_gt_translation_per_min": float(vs_gt_translation.max() / minutes),
            "duration_s": float(stamps_s[-1] - stamps_s[0])}


KITTI_LENGTHS_M = (100, 200, 300, 400, 500, 600, 700, 800)


def kitti_relative_errors(pred_poses: np.ndarray, gt_poses: np.ndarray, step: int = 10) -> dict[str, float] | None:
    """KITTI odometry errors: translation (%) and rotation (deg/100 m) over segments of 100..800 m, starting
    every `step` frames; the estimate is Sim(3)-aligned first (monocular scale). None when the path is
    shorter than the shortest segment."""
    distances = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(gt_poses[:, :3, 3], axis=0), axis=1))])
    if distances[-1] < KITTI_LENGTHS_M[0]:
        return None
    aligned = _sim3_aligned(pred_poses, gt_poses)
    t_errors, r_errors = [], []
    for first in range(0, len(gt_poses), step):
        for length in KITTI_LENGTHS_M:
            last = int(np.searchsorted(distances, distances[first] + length))
            if last >= len(gt_poses):
                continue
            gt_rel = np.linalg.inv(gt_poses[first]) @ gt_poses[last]
            est_rel = np.linalg.inv(aligned[first]) @ aligned[last]
            error = np.linalg.inv(est_rel) @ gt_rel
            t_errors.append(np.linalg.norm(error[:3, 3]) / length)
            r_errors.append(float(rotation_angle_deg(error[:3, :3])) / length)
    return {"translation_error_percent": float(100 * np.mean(t_errors)),
            "rotation_error_deg_per_100m": float(100 * np.mean(r_errors)), "segments": len(t_errors)}


def _sim3_aligned(pred_poses: np.ndarray, gt_poses: np.ndarray) -> np.ndarray:
    from evo.core.geometry import umeyama_alignment
    r, t, c = umeyama_alignment(pred_poses[:, :3, 3].T, gt_poses[:, :3, 3].T, with_scale=True)
    out = pred_poses.copy()
    out[:, :3, :3] = r @ pred_poses[:, :3, :3]
    out[:, :3, 3] = (c * (r @ pred_poses[:, :3, 3].T)).T + t
    return out


def nees(error: np.ndarray, covariance: np.ndarray) -> float:
    """Normalised estimation error squared: `error` whitened by `covariance` (inf where it cannot explain it)."""
    try:
        return float(error @ np.linalg.solve(covariance, error))
    except np.linalg.LinAlgError:
        return float("inf")


def twist_consistency(twist: np.ndarray, covariance: np.ndarray, gt_poses: np.ndarray,
                      stamps_s: np.ndarray) -> dict[str, float] | None:
    """Whether the published twist covariance covers the true frame-to-frame motion: per frame with a twist and
    ground truth on it and the frame before, the NEES of the velocity error (expected 6, its mean; within the
    chi-square 3-sigma bound on 99.73% of frames), its translation and rotation parts (expected 3 each), and how many
    times the covariance's sigmas exceed the errors' (10: too large to be of use to a filter)."""
    from ..streaming.twist import step_vector
    values, parts = [], []
    for i in range(1, len(twist)):
        seconds = stamps_s[i] - stamps_s[i - 1]
        if not (np.isfinite(twist[i]).all() and np.isfinite(gt_poses[i - 1:i + 1]).all() and seconds > 0):
            continue
        error = twist[i] - step_vector(gt_poses[i - 1], gt_poses[i]) / seconds
        cov = covariance[i]
        values.append(nees(error, cov))
        parts.append((nees(error[:3], cov[:3, :3]), nees(error[3:], cov[3:, 3:])))
    if not values:
        return None
    values, parts = np.array(values), np.array(parts)
    mean = float(np.mean(values))
    return {"frames": int(len(values)), "nees_mean": mean, "nees_median": float(np.median(values)),
            "coverage_3sigma": float(np.mean(values <= CHI2_6DOF_3SIGMA)),
            "nees_translation_mean": float(np.mean(parts[:, 0])), "nees_rotation_mean": float(np.mean(parts[:, 1])),
            "sigma_over_error": float(np.sqrt(6.0 / mean)) if mean > 0 else float("inf")}


def egomotion_metrics(pred_poses: np.ndarray, gt_poses: np.ndarray, stamps_s: np.ndarray,
                      rpe_delta: int = 1) -> dict[str, float]:
    """ATE after Sim(3) and after SE(3) alignment, RPE over `rpe_delta` frames (evo), drift per minute, and
    KITTI relative errors when the path is long enough.

    A standing camera (`is_static`) is flagged `static`: ATE after alignment means nothing there, drift does.
    An estimate that does not move cannot be Sim(3)-aligned (Umeyama needs spread); its best similarity
    alignment collapses it onto the ground truth's centroid, so its ATE is the RMS of the ground-truth
    positions about their mean (reported with `degenerate_estimate`).
    """
    from evo.core import metrics, sync
    from evo.core.geometry import GeometryException
    from evo.main_ape import ape
    from evo.main_rpe import rpe

    est, ref = _trajectory(pred_poses, stamps_s), _trajectory(gt_poses, stamps_s)
    ref, est = sync.associate_trajectories(ref, est)
    relation = metrics.PoseRelation
    rpe_options = dict(delta=rpe_delta, delta_unit=metrics.Unit.frames, all_pairs=False)
    out = {"frames": int(len(stamps_s)), "degenerate_estimate": False, "static": is_static(gt_poses),
           "gt_path_length_m": path_length(gt_poses)}
    try:
        # evo aligns the estimate in place: give it copies.
        ate = ape(copy.deepcopy(ref), copy.deepcopy(est), relation.translation_part, align=True, correct_scale=True)
        rpe_t = rpe(copy.deepcopy(ref), copy.deepcopy(est), relation.translation_part, align=True,
                    correct_scale=True, **rpe_options)
        out["ate_rmse_m"], out["ate_mean_m"] = float(ate.stats["rmse"]), float(ate.stats["mean"])
        out["rpe_trans_rmse_m"] = float(rpe_t.stats["rmse"])
    except GeometryException:
        spread = ref.positions_xyz - ref.positions_xyz.mean(axis=0)
        distances = np.linalg.norm(spread, axis=1)
        out.update(ate_rmse_m=float(np.sqrt(np.mean(distances ** 2))), ate_mean_m=float(distances.mean()),
                   rpe_trans_rmse_m=float(np.sqrt(np.mean(np.sum(np.diff(ref.positions_xyz, axis=0) ** 2, axis=1)))),
                   degenerate_estimate=True)
    try:
        ate_se3 = ape(copy.deepcopy(ref), copy.deepcopy(est), relation.translation_part, align=True,
                      correct_scale=False)
        out["ate_se3_rmse_m"] = float(ate_se3.stats["rmse"])
    except GeometryException:
        out["ate_se3_rmse_m"] = float("nan")
    rpe_r = rpe(copy.deepcopy(ref), copy.deepcopy(est), relation.rotation_angle_deg, **rpe_options)
    out["rpe_rot_rmse_deg"] = float(rpe_r.stats["rmse"])
    out["drift"] = drift(np.asarray(pred_poses, np.float64), np.asarray(gt_poses, np.float64), np.asarray(stamps_s))
    kitti = None if out["degenerate_estimate"] else kitti_relative_errors(np.asarray(pred_poses, np.float64),
                                                                           np.asarray(gt_poses, np.float64))
    if kitti is not None:
        out["kitti"] = kitti
    return out


# Point tracks (TAP-Vid) ----------------------------------------------------------
def tapvid_metrics(gt_tracks: np.ndarray, gt_visible: np.ndarray, pred_tracks: np.ndarray, pred_visible: np.ndarray,
                   query_frames: np.ndarray, image_size: tuple[int, int]) -> dict[str, float]:
    """TAP-Vid metrics ("first" query mode) for tracks `(N, F, 2)` (x, y) and visibility `(N, F)`.

    Positions are rescaled to 256x256 first. As in the benchmark's reference implementation, only the
    frames after each track's query frame are scored (neither the query frame nor any frame before it).
    Returns occlusion accuracy, position accuracy < delta^x (each threshold and their average) and average
    Jaccard.
    """
    h, w = image_size
    scale = np.array([256.0 / w, 256.0 / h])
    gt, pred = gt_tracks * scale, pred_tracks * scale
    frames = gt_tracks.shape[1]
    evaluated = np.arange(frames)[None, :] > np.asarray(query_frames)[:, None]
    gt_visible, pred_visible = gt_visible.astype(bool), pred_visible.astype(bool)
    occlusion_accuracy = np.sum((gt_visible == pred_visible) & evaluated) / np.sum(evaluated)
    distance = np.linalg.norm(pred - gt, axis=-1)
    out = {"occlusion_accuracy": float(occlusion_accuracy)}
    accuracies, jaccards = [], []
    for threshold in TAPVID_THRESHOLDS:
        within = distance < threshold
        visible_eval = gt_visible & evaluated
        accuracy = np.sum(within & visible_eval) / max(np.sum(visible_eval), 1)
        true_positive = np.sum(within & gt_visible & pred_visible & evaluated)
        false_positive = np.sum(pred_visible & ~(gt_visible & within) & evaluated)
        false_negative = np.sum(gt_visible & ~(pred_visible & within) & evaluated)
        jaccard = true_positive / max(true_positive + false_positive + false_negative, 1)
        out[f"pts_within_{threshold}"] = float(accuracy)
        out[f"jaccard_{threshold}"] = float(jaccard)
        accuracies.append(accuracy)
        jaccards.append(jaccard)
    out["average_pts_within_thresh"] = float(np.mean(accuracies))
    out["average_jaccard"] = float(np.mean(jaccards))
    return out


def first_visible_queries(gt_tracks: np.ndarray, gt_visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TAP-Vid "first" mode: each track queried at its first visible frame. Returns (keep mask, query frames)."""
    keep = gt_visible.any(axis=1)
    query_frames = np.argmax(gt_visible, axis=1)
    return keep, query_frames


# Boxes -------------------------------------------------------------------------
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes `(..., 4)` (x_min, y_min, x_max, y_max, inclusive pixel bounds)."""
    ix = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    iy = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    inter = ix * iy
    area = lambda x: np.clip(x[..., 2] - x[..., 0] + 1, 0, None) * np.clip(x[..., 3] - x[..., 1] + 1, 0, None)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def box_metrics(gt_boxes: np.ndarray, gt_visible: np.ndarray, pred_boxes: np.ndarray,
                query_frames: np.ndarray) -> dict[str, float]:
    """Mean IoU and success rate (area under the success-vs-IoU-threshold curve) on visible, non-query frames."""
    frames = gt_boxes.shape[1]
    evaluated = gt_visible.astype(bool) & (np.arange(frames)[None, :] != np.asarray(query_frames)[:, None])
    iou = box_iou(pred_boxes, gt_boxes)[evaluated]
    if iou.size == 0:
        return {"mean_iou": float("nan"), "success_auc": float("nan"), "frames": 0}
    success = [float(np.mean(iou > t)) for t in BOX_SUCCESS_THRESHOLDS]
    return {"mean_iou": float(iou.mean()), "success_auc": float(np.mean(success)),
            "success_at_0.5": float(np.mean(iou > 0.5)), "frames": int(iou.size)}
