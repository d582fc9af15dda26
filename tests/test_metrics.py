"""Every metric against values worked out by hand on small cases."""
from __future__ import annotations

import numpy as np
import pytest

from fourds_ros.evaluation import metrics


def test_depth_metrics_by_hand():
    gt = np.array([[[1.0, 2.0], [4.0, 8.0]]] * 3)
    perfect = metrics.depth_metrics(gt.copy(), gt)
    assert perfect["median_per_frame"] == {"abs_rel": 0.0, "delta_1.25": 1.0}
    doubled = metrics.depth_metrics(2 * gt, gt)
    assert doubled["median_per_frame"]["abs_rel"] == pytest.approx(0.0)
    assert doubled["raw_metric"] == {"abs_rel": pytest.approx(1.0), "delta_1.25": 0.0}
    shifted = metrics.depth_metrics(gt + 1, gt)
    # Median scale 3/4 on [2, 3, 5, 9]: |1.5-1|/1, |2.25-2|/2, |3.75-4|/4, |6.75-8|/8 = 0.84375 / 4.
    assert shifted["median_per_frame"]["abs_rel"] == pytest.approx(0.2109375)
    assert shifted["scale_shift_per_frame"]["abs_rel"] == pytest.approx(0.0, abs=1e-9)


def test_depth_metrics_ignore_invalid_pixels_and_need_some_valid():
    gt = np.array([[[1.0, np.nan], [2.0, 0.0]]] * 4)
    pred = np.array([[[1.0, 5.0], [2.0, 7.0]]] * 4)
    assert metrics.depth_metrics(pred, gt)["median_per_sequence"]["abs_rel"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="no pixel has both"):
        metrics.depth_metrics(pred, np.full_like(gt, np.nan))


def _trajectory(n=30):
    poses = np.tile(np.eye(4), (n, 1, 1))
    t = np.arange(n) / 10
    poses[:, 0, 3], poses[:, 1, 3], poses[:, 2, 3] = np.cos(t) * 2, np.sin(t) * 2, 0.1 * t
    for i, yaw in enumerate(t):
        poses[i, :2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    return poses


def test_egomotion_ate_is_zero_up_to_similarity_and_sees_errors():
    gt = _trajectory()
    stamps = np.arange(len(gt)) / 30
    assert metrics.egomotion_metrics(gt, gt, stamps)["ate_rmse_m"] == pytest.approx(0.0, abs=1e-9)
    # The same motion seen in another frame and at 3x scale: Sim(3) alignment removes both.
    similarity = np.eye(4)
    similarity[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    similarity[:3, 3] = [5, -2, 1]
    other = np.array([similarity @ p for p in gt])
    other[:, :3, 3] *= 3
    result = metrics.egomotion_metrics(other, gt, stamps)
    assert result["ate_rmse_m"] == pytest.approx(0.0, abs=1e-6)
    assert result["rpe_rot_rmse_deg"] == pytest.approx(0.0, abs=1e-6)
    still = np.tile(np.eye(4), (len(gt), 1, 1))  # an estimate that never moves
    result = metrics.egomotion_metrics(still, gt, stamps)
    centred = gt[:, :3, 3] - gt[:, :3, 3].mean(axis=0)
    assert result["degenerate_estimate"] and result["ate_rmse_m"] == pytest.approx(np.sqrt((centred ** 2).sum(1).mean()))
    bent = gt.copy()
    bent[15:, 2, 3] += 0.5
    assert metrics.egomotion_metrics(bent, gt, stamps)["ate_rmse_m"] > 0.05


def test_tapvid_metrics_by_hand():
    # Image 256x256 (no rescaling). Track 0 queried on frame 0, track 1 on frame 1.
    gt_tracks = np.array([[[10, 10]] * 4, [[50, 50]] * 4], np.float32)
    gt_visible = np.array([[1, 1, 1, 1], [0, 1, 1, 0]], bool)
    pred_tracks = np.array([[[10, 10], [10.5, 10], [13, 10], [10, 10]],
                            [[0, 0], [50, 50], [50, 55], [50, 50]]], np.float32)
    pred_visible = np.array([[1, 1, 1, 0], [0, 1, 1, 1]], bool)
    out = metrics.tapvid_metrics(gt_tracks, gt_visible, pred_tracks, pred_visible, np.array([0, 1]), (256, 256))
    # Scored: track 0 on frames 1-3 (visibility right on 1 and 2), track 1 on frames 2-3 (right on 2). Frame 0 of
    # track 1 comes before its query and is not scored (scoring it would add an agreement: 4/6).
    assert out["occlusion_accuracy"] == pytest.approx(3 / 5)
    # Visible evaluated points are 0.5, 3, 0 and 5 px off.
    assert [out[f"pts_within_{t}"] for t in (1, 2, 4, 8, 16)] == pytest.approx([0.5, 0.5, 0.75, 1.0, 1.0])
    assert out["average_pts_within_thresh"] == pytest.approx(0.75)
    assert [out[f"jaccard_{t}"] for t in (1, 2, 4, 8, 16)] == pytest.approx([1 / 7, 1 / 7, 1 / 3, 3 / 5, 3 / 5])
    assert out["average_jaccard"] == pytest.approx((2 / 7 + 1 / 3 + 6 / 5) / 5)


def test_tapvid_first_mode_scores_only_frames_after_the_query():
    """The reference implementation's "first" mode: frames before a track's query frame are not scored, even
    where the prediction says visible (they would be false positives) or agrees that the point is hidden."""
    gt_tracks = np.full((2, 4, 2), 20.0, np.float32)
    gt_visible = np.array([[0, 0, 1, 1], [0, 1, 1, 0]], bool)
    pred_visible = np.array([[1, 1, 1, 1], [0, 1, 1, 1]], bool)  # track 0 "seen" before it exists
    out = metrics.tapvid_metrics(gt_tracks, gt_visible, gt_tracks.copy(), pred_visible, np.array([2, 1]), (256, 256))
    # Scored: track 0 frame 3 (right), track 1 frames 2 (right) and 3 (wrong: predicted visible, hidden).
    assert out["occlusion_accuracy"] == pytest.approx(2 / 3)
    assert out["average_pts_within_thresh"] == pytest.approx(1.0)
    # Each threshold: TP 2 (track 0 frame 3, track 1 frame 2), FP 1 (track 1 frame 3), FN 0.
    assert out["average_jaccard"] == pytest.approx(2 / 3)


def test_drift_of_a_standing_camera_by_hand():
    """60 s of a camera that stands still; the estimate turns 3 degrees about y and slides 6 cm in x."""
    from scipy.spatial.transform import Rotation
    frames = 61
    stamps = np.arange(frames, dtype=np.float64)  # one frame a second
    gt = np.repeat(np.eye(4)[None], frames, 0)
    est = gt.copy()
    for i in range(frames):
        est[i, :3, :3] = Rotation.from_euler("y", 3.0 * i / (frames - 1), degrees=True).as_matrix()
        est[i, 0, 3] = 0.06 * i / (frames - 1)
    out = metrics.egomotion_metrics(est, gt, stamps)
    assert out["static"] and out["gt_path_length_m"] == 0.0
    assert out["drift"]["rotation_drift_deg_per_min"] == pytest.approx(3.0)
    assert out["drift"]["rotation_final_deg"] == pytest.approx(3.0)
    assert out["drift"]["translation_drift_per_min"] == pytest.approx(0.06)
    perfect = metrics.egomotion_metrics(gt, gt, stamps)["drift"]
    assert perfect["rotation_drift_deg_per_min"] == 0.0 and perfect["translation_drift_per_min"] == 0.0


def test_se3_ate_sees_a_scale_error_that_sim3_forgives_and_kitti_errors_need_a_long_path():
    t = np.linspace(0, 1, 50)
    gt = np.repeat(np.eye(4)[None], 50, 0)
    gt[:, 0, 3] = 20 * t  # 20 m, curving (Umeyama needs more than a line)
    gt[:, 2, 3] = 3 * np.sin(np.pi * t)
    half = gt.copy()
    half[:, :3, 3] *= 0.5
    out = metrics.egomotion_metrics(half, gt, t * 10)
    assert out["ate_rmse_m"] == pytest.approx(0.0, abs=1e-9) and out["ate_se3_rmse_m"] > 1.0
    assert not out["static"] and "kitti" not in out  # shorter than KITTI's 100 m segments
    long_gt = gt.copy()
    long_gt[:, :3, 3] *= 10  # over 200 m
    bent = long_gt.copy()
    bent[:, 1, 3] = 0.02 * long_gt[:, 0, 3]  # drifts sideways 2 cm per metre
    kitti = metrics.egomotion_metrics(bent, long_gt, t * 10)["kitti"]
    assert kitti["segments"] > 0 and 0.5 < kitti["translation_error_percent"] < 2.5


def test_tapvid_rescales_to_256():
    gt = np.array([[[0, 0], [100, 100]]], np.float32)
    pred = np.array([[[0, 0], [101, 100]]], np.float32)  # 1 px off at 512 wide = 0.5 px at 256
    out = metrics.tapvid_metrics(gt, np.ones((1, 2), bool), pred, np.ones((1, 2), bool), np.array([0]), (512, 512))
    assert out["pts_within_1"] == 1.0


def test_first_visible_queries():
    visible = np.array([[0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], bool)
    keep, first = metrics.first_visible_queries(np.zeros((3, 4, 2)), visible)
    assert keep.tolist() == [True, True, False] and first[:2].tolist() == [2, 0]


def test_box_metrics_by_hand():
    gt = np.array([[[0, 0, 9, 9]] * 3], np.float32)
    pred = np.array([[[0, 0, 9, 9], [5, 0, 14, 9], [0, 0, 9, 9]]], np.float32)
    assert metrics.box_iou(pred[0, 1], gt[0, 1]) == pytest.approx(50 / 150)
    out = metrics.box_metrics(gt, np.ones((1, 3), bool), pred, np.array([0]))
    assert out["mean_iou"] == pytest.approx((1 / 3 + 1) / 2)
    assert out["success_at_0.5"] == 0.5 and out["frames"] == 2
