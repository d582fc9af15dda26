"""The model stage: one window through the backend, and its outputs made continuous across windows.

Track seeds and live tracks become the window's queries (`tracks.py`); the backend runs them (with other
cameras' windows, `pipeline.py`); a window with a non-finite output is dropped whole. Depth is scaled to the
previous window's on their shared frames (that scale returning to the model's own over
`depth_scale_horizon_s`) and the pose readout composed into one trajectory
(`stitching.py`). Each frame's output is made once, by the first processed window that holds it after the last
emitted frame.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..runtime import IOSpec, Queries, pad_queries
from .intake import Window
from .output import FrameOutput, StreamStats
from .settings import StreamConfig
from .stitching import DepthAligner, Trajectory
from .tracks import SeedInbox, TrackFrame, TrackQueries, TrackSet, window_queries


@dataclass
class ModelResult:
    """One processed window: the outputs of its new frames, and what the geometry stage builds on."""

    outputs: list[FrameOutput]  # one per new frame, in order; depth, readout pose and tracks set
    first: int  # the window index of outputs[0]
    depth: np.ndarray | None  # (T, h, w) the window's stitched depth (outputs' depth are views of it)
    readout_poses: dict[int, np.ndarray] | None  # seq -> the pose readout's world pose
    point_frames: list[TrackFrame] | None = None  # the point tracks of the new frames
    point_starts: dict[int, tuple[int, tuple]] | None = None  # tracks begun in this window: (seq, camera pixels)
    points: TrackSet | None = None  # to carry refined positions into the next window's queries


class ModelStage:
    def __init__(self, spec: IOSpec, config: StreamConfig, stats: StreamStats, log: logging.Logger,
                 heads: tuple[str, ...]):
        self.spec, self.config, self.stats, self.log = spec, config, stats, log
        self.heads = heads
        self.depth = DepthAligner(config.depth_affine, config.depth_scale_horizon_s)
        self.trajectory = Trajectory(memory=4 * spec.clip[0])
        self.points = TrackSet("points", min(config.point_tracks, spec.max_points), config.max_invisible_frames) \
            if "points" in heads and config.point_tracks else None
        self.boxes = TrackSet("boxes", spec.max_boxes, config.max_invisible_frames) if "boxes" in heads else None
        self.seeds = SeedInbox()
        self._last_emitted = -1
        self._partial = False  # the last window was partial

    def reset(self) -> None:
        """A new stream: nothing of the old one carries over (its seeds still wait for their frames)."""
        self._last_emitted = -1
        self._partial = False
        self.depth.reset()
        self.trajectory.reset()
        for tracks in (self.points, self.boxes):
            if tracks is not None:
                tracks.reset()

    def queries(self, window: Window, clip: np.ndarray) -> tuple[Queries, TrackQueries | None, TrackQueries | None]:
        """The window's track queries: for the backend (padded, frame indices counted in the padded window),
        and the point and box queries `run` reads the outputs by."""
        pad = window.padding
        seqs = [info.seq for info in window.infos]
        self.seeds.deliver([info.stamp_ns for info in window.infos], seqs, window.pixel_map,
                           {"points": self.points, "boxes": self.boxes}, self.log)
        point_q, box_q = window_queries(self.points, self.boxes, clip[0, pad:], seqs, self._first_new(seqs),
                                        self.config.point_seeding)
        return pad_queries(self.spec, _shifted(point_q, 3, pad), _shifted(box_q, 5, pad)), point_q, box_q

    def run(self, window: Window, out: dict[str, np.ndarray], point_q: TrackQueries | None,
            box_q: TrackQueries | None) -> ModelResult | None:
        """The window's new frames with the model's outputs `out` (for the queries `queries` gave); None when
        the window is dropped (non-finite).

        A partial window (`window.padding` copies of its first frame in front) was run whole; the copies'
        outputs are left out, so everything after this sees the window's own frames only."""
        seqs = [info.seq for info in window.infos]
        pad = window.padding
        first = self._first_new(seqs)
        bad = [name for name, value in out.items() if not np.isfinite(value).all()]
        if bad:
            self.stats.windows_nonfinite += 1
            self.log.warning(f"dropping a window: non-finite values in {', '.join(bad)}")
            return None
        out = {name: value[:, :, pad:] if name.startswith(("points", "boxes")) else value[:, pad:]
               for name, value in out.items() if name.split("_")[0] in self.heads}
        self.stats.windows_processed += 1
        self.stats.windows_partial += pad > 0
        # Frames between the last emitted and this window's first new one were never covered (windows replaced
        # under load), the stream's first frames included.
        missed = seqs[first] - self._last_emitted - 1 if first < len(seqs) else 0
        self.stats.frames_dropped += max(missed, 0)
        outputs = [FrameOutput(info, window.pixel_map, window.source_size, window_frames=len(seqs))
                   for info in window.infos[first:]]
        result = ModelResult(outputs, first, None, None)
        scale = None
        if "depth" in out:
            result.depth = out["depth"][0, ..., 0]
            if pad == 0 and self._partial:
                # The first full window keeps the model's own scale: a single image's depth scale is not one to
                # anchor a stream on.
                self.depth.reset()
            self._partial = pad > 0
            scale, _ = self.depth.align(seqs, result.depth, window.infos[-1].stamp_ns)
            for o, i in zip(outputs, range(first, len(seqs))):
                o.depth = result.depth[i]
        if "pose" in out:
            result.readout_poses = self.trajectory.add_window(seqs, out["pose"][0], scale)
            for o in outputs:
                o.world_from_camera, o.egomotion_source = result.readout_poses[o.info.seq], "readout"
        for tracks, queries, key in ((self.points, point_q, "points"), (self.boxes, box_q, "boxes")):
            if tracks is None or queries is None or key not in out:
                continue
            n = len(queries.ids)
            frames = tracks.update(seqs, first, queries.ids, out[key][0, :n], out[f"{key}_visible_logit"][0, :n])
            for frame in frames:
                frame.to_source(window.pixel_map)
            for o, frame in zip(outputs, frames):
                setattr(o, key, frame)
            if key == "points":
                result.point_frames, result.points = frames, tracks
                result.point_starts = {track_id: (seq, window.pixel_map.to_source(value[0], value[1]))
                                       for track_id, (seq, value) in tracks.started.items()}
        return result

    def _first_new(self, seqs: list[int]) -> int:
        """The window index of its first frame after the last emitted one."""
        return next((i for i, s in enumerate(seqs) if s > self._last_emitted), len(seqs))

    def emitted(self, outputs: list[FrameOutput]) -> None:
        """These outputs went out: later windows start after them."""
        self.stats.frames_emitted += len(outputs)
        if outputs:
            self._last_emitted = outputs[-1].info.seq


def _shifted(queries: TrackQueries | None, width: int, pad: int) -> np.ndarray | None:
    """Queries as the backend takes them `(N, width)`: their frame index counted in the padded window."""
    if queries is None:
        return None
    rows = queries.array(width)
    rows[:, 0] += pad
    return rows
