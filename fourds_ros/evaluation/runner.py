"""Run the node's streaming pipeline over recorded frames, offline, without dropping any window."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..runtime import Backend
from ..streaming import FrameOutput, StreamConfig, StreamingPipeline, StreamStats
from .bag_io import Frame


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


def run_offline(frames: list[Frame], backend: Backend, config: StreamConfig,
                point_queries: tuple[np.ndarray, np.ndarray] | None = None,
                box_queries: tuple[np.ndarray, np.ndarray] | None = None, progress: bool = True) -> Predictions:
    """Push every frame through a `StreamingPipeline`, waiting for each window (so none is dropped).

    `point_queries` = (xy `(N, 2)`, frame index `(N,)`), `box_queries` = (boxes `(M, 4)`, frame index `(M,)`),
    in source pixels: track i is seeded on its frame with id i.
    """
    outputs: dict[int, FrameOutput] = {}
    pipeline = StreamingPipeline(backend, config, lambda o: outputs.__setitem__(o.info.stamp_ns, o),
                                 log=logging.getLogger("fourds_ros.evaluation"))
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
    depth = poses = None
    if first.depth is not None:
        depth = np.full((len(frames), *first.depth.shape), np.nan, np.float32)
        for i, o in enumerate(present):
            if o is not None and o.depth is not None:
                depth[i] = o.depth
    if first.world_from_camera is not None:
        poses = np.full((len(frames), 4, 4), np.nan)
        for i, o in enumerate(present):
            if o is not None and o.world_from_camera is not None:
                poses[i] = o.world_from_camera
    point_tracks, point_visible = _tracks(present, "points", point_queries, 2)
    boxes, box_visible = _tracks(present, "boxes", box_queries, 4)
    return Predictions(stamps, depth, poses, point_tracks, point_visible, boxes, box_visible, stats)


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
        pm = o.pixel_map
        v = tracks.values.reshape(len(tracks.ids), -1, 2)
        x, y = pm.to_source(v[..., 0], v[..., 1])
        source = np.stack([x, y], -1).reshape(len(tracks.ids), width)
        ids = tracks.ids.astype(int)
        keep = ids < n
        values[ids[keep], f] = source[keep]
        visible[ids[keep], f] = tracks.visible[keep].astype(bool)
    return values, visible
