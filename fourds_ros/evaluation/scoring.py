"""Scoring predictions against a bag's ground truth, and the classical baselines on the same frames."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bags.reader import Frame, GroundTruth
from ..streaming import StreamStats
from . import baselines, metrics


@dataclass
class Predictions:
    """Per-frame outputs in source-image pixels, aligned with the input frames."""

    stamps_ns: np.ndarray  # (F,)
    depth: np.ndarray | None  # (F, h, w) model resolution, NaN where no output
    world_from_camera: np.ndarray | None  # (F, 4, 4), NaN where no output
    point_tracks: np.ndarray | None  # (N, F, 2) source pixels
    point_visible: np.ndarray | None  # (N, F)
    boxes: np.ndarray | None  # (M, F, 4) source pixels
    box_visible: np.ndarray | None  # (M, F)
    stats: StreamStats
    egomotion_sources: dict[str, int] | None = None  # frames answered by each egomotion stage
    depth_confidence: np.ndarray | None = None  # (F, h, w) like depth, NaN where no output
    twist: np.ndarray | None = None  # (F, 6) velocity since the frame before (camera frame), NaN where none
    twist_covariance: np.ndarray | None = None  # (F, 6, 6)



@dataclass
class AlignedTruth:
    """Ground truth arranged like the frames (missing parts are None)."""

    depth: np.ndarray | None
    poses: np.ndarray | None
    intrinsics: np.ndarray | None
    point_tracks: np.ndarray | None
    point_visible: np.ndarray | None
    boxes: np.ndarray | None
    box_visible: np.ndarray | None

    def queries(self, kind: str, limit: int):
        """TAP-Vid "first" queries: (values, query frames, kept track indices), at most `limit` tracks."""
        values, visible = (self.point_tracks, self.point_visible) if kind == "points" else (self.boxes, self.box_visible)
        if values is None or limit <= 0:
            return None
        keep, first = metrics.first_visible_queries(values, visible)
        index = np.flatnonzero(keep)[:limit]
        return values[index, first[index]], first[index], index


POINT_FIELDS, BOX_FIELDS = ("u", "v"), ("u_min", "v_min", "u_max", "v_max")


def records_to_tracks(table: dict[int, np.ndarray], stamps: list[int], fields: tuple[str, ...],
                      count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-stamp track records (the PointCloud2 layouts) -> values `(N, F, len(fields))` and visibility `(N, F)`.

    Track i is the record with track_id i; stamps missing from `table` and ids >= `count` are left out.
    """
    if count is None:
        count = max((int(r["track_id"].max()) + 1 for r in table.values() if len(r)), default=0)
    values = np.zeros((count, len(stamps), len(fields)), np.float32)
    visible = np.zeros((count, len(stamps)), bool)
    for f, s in enumerate(stamps):
        r = table.get(s)
        if r is None:
            continue
        ids = r["track_id"].astype(int)
        keep = ids < count
        values[ids[keep], f] = np.stack([r[name] for name in fields], -1)[keep]
        visible[ids[keep], f] = r["visible"][keep].astype(bool)
    return values, visible


def align_truth(frames: list[Frame], gt: GroundTruth) -> AlignedTruth:
    stamps = [f.stamp_ns for f in frames]

    def stack(table: dict):
        if not table or not all(s in table for s in stamps):
            return None
        return np.stack([table[s] for s in stamps])

    def tracks(table: dict, fields: tuple[str, ...]):
        if not table or not all(s in table for s in stamps):
            return None, None
        return records_to_tracks(table, stamps, fields)

    points, point_visible = tracks(gt.points, POINT_FIELDS)
    boxes, box_visible = tracks(gt.boxes, BOX_FIELDS)
    return AlignedTruth(stack(gt.depth), stack(gt.poses), gt.intrinsics, points, point_visible, boxes, box_visible)


def score(pred: Predictions, truth: AlignedTruth, frames: list[Frame], point_index=None, box_index=None,
          query_frames=None, box_query_frames=None) -> tuple[dict, list[str]]:
    """Every metric the ground truth allows for one set of predictions, and notes on what was skipped."""
    out, notes = {}, []
    stamps_s = pred.stamps_ns / 1e9
    size = (frames[0].height, frames[0].width)
    if truth.depth is not None and pred.depth is not None:
        out["depth"] = metrics.depth_metrics(pred.depth, truth.depth, pred.depth_confidence)
    else:
        notes.append("depth skipped: " + ("no /ground_truth/depth in the bag" if truth.depth is None else "no depth head"))
    if truth.poses is not None and pred.world_from_camera is not None:
        ok = np.isfinite(pred.world_from_camera).all(axis=(1, 2)) & np.isfinite(truth.poses).all(axis=(1, 2))
        if ok.sum() >= 3:
            out["egomotion"] = metrics.egomotion_metrics(pred.world_from_camera[ok], truth.poses[ok], stamps_s[ok])
            if pred.twist is not None:
                consistency = metrics.twist_consistency(pred.twist, pred.twist_covariance, truth.poses, stamps_s)
                if consistency is not None:
                    out["egomotion"]["twist"] = consistency
        else:
            notes.append(f"egomotion skipped: only {int(ok.sum())} frames have both a pose and a ground-truth pose")
    else:
        notes.append("egomotion skipped: " + ("no /ground_truth/pose" if truth.poses is None else "no pose head"))
    if truth.point_tracks is not None and pred.point_tracks is not None and point_index is not None:
        out["point_tracks"] = metrics.tapvid_metrics(truth.point_tracks[point_index], truth.point_visible[point_index],
                                                     pred.point_tracks, pred.point_visible, query_frames, size)
    else:
        notes.append("point tracks skipped: no /ground_truth/tracks/points or no points head")
    if truth.boxes is not None and pred.boxes is not None and box_index is not None:
        out["box_tracks"] = metrics.box_metrics(truth.boxes[box_index], truth.box_visible[box_index], pred.boxes,
                                                box_query_frames)
    else:
        notes.append("box tracks skipped: no /ground_truth/tracks/boxes or no boxes head")
    return out, notes


def score_with_queries(pred: Predictions, truth: AlignedTruth, frames: list[Frame], point_query,
                       box_query) -> tuple[dict, list[str]]:
    """`score` with the (values, query frames, track indices) triples of `AlignedTruth.queries`."""
    return score(pred, truth, frames, point_query[2] if point_query else None, box_query[2] if box_query else None,
                 point_query[1] if point_query else None, box_query[1] if box_query else None)


def score_baselines(frames: list[Frame], truth: AlignedTruth, point_query) -> tuple[dict, dict]:
    """The baselines' scores, and their predictions (for the report's figures)."""
    rgb = [f.rgb() for f in frames]
    scores, predictions = {}, {}
    if truth.depth is not None:
        constant = metrics.depth_metrics(baselines.constant_depth(truth.depth.shape), truth.depth)
        del constant["raw_metric"]  # an arbitrary constant has no metric scale to score
        scores["constant_depth"] = {"depth": constant}
    if truth.poses is not None and truth.intrinsics is not None:
        predictions["vo"] = poses = baselines.orb_visual_odometry(rgb, truth.intrinsics)
        stamps_s = np.array([f.stamp_ns for f in frames]) / 1e9
        scores["orb_essential_vo"] = {"egomotion": metrics.egomotion_metrics(poses, truth.poses, stamps_s)}
    if point_query is not None:
        values, first, index = point_query
        predictions["lucas_kanade"] = tracks, visible = baselines.lucas_kanade_tracks(rgb, values, first)
        scores["lucas_kanade"] = {"point_tracks": metrics.tapvid_metrics(
            truth.point_tracks[index], truth.point_visible[index], tracks, visible, first,
            (frames[0].height, frames[0].width))}
    return scores, predictions
