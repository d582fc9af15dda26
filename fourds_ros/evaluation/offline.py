"""`fourds-ros eval`: the node's streaming pipeline over a recorded bag, offline, every window processed, scored."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..bags.reader import Frame, read_bag
from ..runtime import Backend, backend_options, create_backend, default_model_dir
from ..streaming import FrameOutput, StreamConfig, StreamingPipeline, StreamStats
from ..streaming.settings import SCORING_FIXED
from .report import report_header, runtime_summary, write_report
from .scoring import Predictions, align_truth, score_baselines, score_with_queries


def run_offline(frames: list[Frame], backend: Backend, config: StreamConfig,
                point_queries: tuple[np.ndarray, np.ndarray] | None = None,
                box_queries: tuple[np.ndarray, np.ndarray] | None = None, progress: bool = True,
                camera_matrix: np.ndarray | None = None, distortion=None) -> Predictions:
    """Push every frame through a `StreamingPipeline`, waiting for each window (so none is dropped).

    `point_queries` = (xy `(N, 2)`, frame index `(N,)`), `box_queries` = (boxes `(M, 4)`, frame index `(M,)`),
    in source pixels: track i is seeded on its frame with id i.
    """
    outputs: dict[int, FrameOutput] = {}
    pipeline = StreamingPipeline(backend, config, lambda o: outputs.__setitem__(o.info.stamp_ns, o),
                                 log=logging.getLogger("fourds_ros.evaluation"))
    pipeline.set_camera_matrix(camera_matrix, distortion, (frames[0].height, frames[0].width))
    seeds: dict[int, list] = {}
    for kind, queries in (("points", point_queries), ("boxes", box_queries)):
        if queries is not None:
            for i, (value, frame) in enumerate(zip(*queries)):
                seeds.setdefault(int(frame), []).append((kind, i, value))
    try:
        for index, frame in enumerate(tqdm(frames, desc="frames", unit="frame", disable=not progress)):
            for kind, i, value in seeds.get(index, []):
                add = pipeline.add_point_seed if kind == "points" else pipeline.add_box_seed
                add(frame.stamp_ns, value, track_id=i)
            pipeline.push(frame.encoding, frame.height, frame.width, frame.step, frame.data, frame.stamp_ns,
                          frame.frame_id)
            pipeline.wait_idle()
        pipeline.flush()
        pipeline.wait_idle()
    finally:
        pipeline.close()
    return collect(frames, outputs, point_queries, box_queries, pipeline.stats)


def collect(frames: list[Frame], outputs: dict[int, FrameOutput], point_queries, box_queries,
            stats: StreamStats) -> Predictions:
    """Arrange per-frame outputs (keyed by stamp) into arrays aligned with `frames`."""
    stamps = np.array([f.stamp_ns for f in frames], np.int64)
    present = [outputs.get(int(s)) for s in stamps]
    first = next((o for o in present if o is not None), None)
    if first is None:
        raise RuntimeError("the pipeline produced no output (fewer frames than one window?)")
    depth = confidence = poses = None
    if first.depth is not None:
        depth = np.full((len(frames), *first.depth.shape), np.nan, np.float32)
        confidence = np.full_like(depth, np.nan)
        for i, o in enumerate(present):
            if o is not None and o.depth is not None:
                depth[i] = o.depth
                if o.depth_confidence is not None:
                    confidence[i] = o.depth_confidence
    if first.world_from_camera is not None:
        poses = np.full((len(frames), 4, 4), np.nan)
        for i, o in enumerate(present):
            if o is not None and o.world_from_camera is not None:
                poses[i] = o.world_from_camera
    twist = twist_covariance = None
    if any(o is not None and o.twist is not None for o in present):
        twist, twist_covariance = np.full((len(frames), 6), np.nan), np.full((len(frames), 6, 6), np.nan)
        for i, o in enumerate(present):
            if o is not None and o.twist is not None:
                twist[i], twist_covariance[i] = o.twist, o.twist_covariance
    point_tracks, point_visible = _tracks(present, "points", point_queries, 2)
    boxes, box_visible = _tracks(present, "boxes", box_queries, 4)
    sources: dict[str, int] = {}
    for o in present:
        if o is not None and o.egomotion_source is not None:
            sources[o.egomotion_source] = sources.get(o.egomotion_source, 0) + 1
    return Predictions(stamps, depth, poses, point_tracks, point_visible, boxes, box_visible, stats, sources,
                       confidence, twist, twist_covariance)


def _tracks(present: list[FrameOutput | None], attr: str, queries, width: int):
    if queries is None:
        return None, None
    n = len(queries[0])
    values = np.zeros((n, len(present), width), np.float32)
    visible = np.zeros((n, len(present)), bool)
    for f, o in enumerate(present):
        tracks = getattr(o, attr) if o is not None else None
        if tracks is None or len(tracks.ids) == 0:
            continue
        source = tracks.source_values  # camera pixels, as published
        ids = tracks.ids.astype(int)
        keep = ids < n
        values[ids[keep], f] = source[keep]
        visible[ids[keep], f] = tracks.visible[keep].astype(bool)
    return values, visible


def evaluate(bag: Path, model_dir: Path | None, out_dir: Path, backend: str = "onnxruntime",
             image_topic: str | None = None, settings: dict[str, Any] | None = None, video: bool = False,
             progress: bool = True, threads: int = 0, precision: str | None = None, gt: Path | None = None) -> dict:
    """Score the node's pipeline on `bag` (the default model when `model_dir` is None); writes `out_dir`.

    `settings`: values of the streaming core's settings by table name (`streaming/settings.py`); the rest keep
    their defaults, and those of `SCORING_FIXED` are set here."""
    started = time.monotonic()
    model_dir = model_dir or default_model_dir()
    topic, frames, gt_data = read_bag(bag, image_topic, gt)
    truth = align_truth(frames, gt_data)
    engine = create_backend(backend, model_dir, **backend_options(backend, precision, threads=threads))
    spec = engine.spec
    point_query = truth.queries("points", spec.max_points if "points" in spec.heads else 0)
    box_query = truth.queries("boxes", spec.max_boxes if "boxes" in spec.heads else 0)
    fixed = dict(zip(SCORING_FIXED, (spec.clip[0], spec.max_points, "none", 10**9, 0.0)))
    config = StreamConfig.from_values({**(settings or {}), **fixed})
    pred = run_offline(frames, engine, config, point_query[:2] if point_query else None,
                       box_query[:2] if box_query else None, progress=progress, camera_matrix=gt_data.intrinsics,
                       distortion=gt_data.distortion)
    scores, notes = score_with_queries(pred, truth, frames, point_query, box_query)
    report = report_header(bag, topic, frames, model_dir, gt_data.notes)
    report.update(backend=engine.description, window={"len": spec.clip[0], "hop": config.window_hop},
                  egomotion=config.egomotion, depth={"fused": config.fuse_depth},
                  points={"refined": config.refine_points, "visibility": config.point_visibility},
                  settings=changed_settings(config, SCORING_FIXED),
                  egomotion_sources=pred.egomotion_sources, model_metrics=scores,
                  runtime=runtime_summary(pred), notes=notes)
    report["baselines"], baseline_predictions = score_baselines(frames, truth, point_query)
    report["wall_time_s"] = round(time.monotonic() - started, 1)
    write_report(report, out_dir, frames, truth, pred, point_query, baseline_predictions, video)
    return report


def changed_settings(config: StreamConfig, fixed: tuple[str, ...]) -> dict[str, Any]:
    """The settings a run was given that differ from their defaults (those the protocol fixes left out)."""
    defaults = StreamConfig().values()
    return {name: value for name, value in config.values().items() if name not in fixed and value != defaults[name]}
