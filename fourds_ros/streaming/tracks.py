"""Stable track ids across windows.

Each live track is carried into the next window by querying the model at its
last estimate, on the newest frame both windows share. Tracks invisible for
more than `max_invisible` frames are dropped; point tracks are topped up to
`target` by seeding (corner detector or grid) away from live ones; box tracks
come from seeds (boxes received on a topic). Seeds arrive in camera pixels with
a stamp (`SeedInbox`) and are matched to a window's frames. Coordinates inside a
`TrackSet` are model-input pixels.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from .camera import PixelMap


@dataclass
class Track:
    id: int
    value: np.ndarray  # (x, y) for points; (x_min, y_min, x_max, y_max) for boxes
    seq: int  # the frame `value` belongs to
    invisible: int = 0


@dataclass
class TrackFrame:
    """The tracks of one frame, ready to publish."""

    ids: np.ndarray  # uint32 (N,)
    values: np.ndarray  # float32 (N, 2) or (N, 4), model pixels
    visible: np.ndarray  # uint8 (N,)
    confidence: np.ndarray  # float32 (N,)
    source_values: np.ndarray | None = None  # the same in camera pixels (set by `to_source`, then refined)
    refined: np.ndarray | None = None  # uint8 (N,): the camera-resolution refinement passed its check

    def to_source(self, pixel_map: PixelMap) -> None:
        xy = self.values.reshape(*self.values.shape[:-1], self.values.shape[-1] // 2, 2)  # boxes: two corners
        x, y = pixel_map.to_source(xy[..., 0], xy[..., 1])
        self.source_values = np.stack([x, y], -1).reshape(self.values.shape).astype(np.float32)


@dataclass
class TrackQueries:
    ids: list[int] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)  # (t, y, x) or (t, x0, y0, x1, y1)

    def array(self, width: int) -> np.ndarray:
        return np.array(self.rows, np.float32).reshape(-1, width)


class TrackSet:
    def __init__(self, kind: str, max_tracks: int, max_invisible: int = 8):
        if kind not in ("points", "boxes"):
            raise ValueError(f"unknown track kind {kind!r}")
        self.kind, self.max_tracks, self.max_invisible = kind, max_tracks, max_invisible
        self.tracks: dict[int, Track] = {}
        self.next_id = 0
        self.pending_seeds: list[tuple[int, np.ndarray]] = []  # (seq, value)
        self.started: dict[int, tuple[int, np.ndarray]] = {}  # tracks started by the last `queries`: (seq, value)
        self.lost = 0

    def reset(self) -> None:
        self.tracks.clear()
        self.pending_seeds.clear()

    def add_seed(self, seq: int, value: np.ndarray, track_id: int | None = None) -> None:
        """A new track at `value` on frame `seq`; `track_id` chooses its id (default: the next free one)."""
        self.pending_seeds.append((seq, np.asarray(value, np.float32), track_id))

    def queries(self, seqs: list[int]) -> TrackQueries:
        """Queries for this window: live tracks at their frame, then pending seeds, up to `max_tracks`.

        Live tracks whose frame is no longer in the window (windows were dropped) are lost.
        """
        index = {s: i for i, s in enumerate(seqs)}
        out = TrackQueries()
        self.started = {}
        for track in list(self.tracks.values()):
            if track.seq not in index:
                del self.tracks[track.id]
                self.lost += 1
                continue
            out.ids.append(track.id)
            out.rows.append(self._row(index[track.seq], track.value))
        keep = []
        for seq, value, track_id in self.pending_seeds:
            if seq not in index:
                # A seed for a frame still to come waits; one for a frame already gone is dropped.
                if seq > seqs[-1]:
                    keep.append((seq, value, track_id))
                continue
            if len(out.ids) >= self.max_tracks:
                keep.append((seq, value, track_id))  # no room in this window: try the next one
                continue
            track_id = self.next_id if track_id is None else int(track_id)
            self.next_id = max(self.next_id, track_id + 1)
            track = Track(track_id, value, seq)
            self.tracks[track.id] = track
            self.started[track.id] = (seq, value)
            out.ids.append(track.id)
            out.rows.append(self._row(index[seq], value))
        self.pending_seeds = keep
        return out

    def move_to(self, ids: np.ndarray, values: np.ndarray) -> None:
        """Put live tracks at better estimates of their newest frame (model pixels), e.g. refined positions."""
        for track_id, value in zip(np.asarray(ids).astype(int), values):
            track = self.tracks.get(int(track_id))
            if track is not None:
                track.value = np.asarray(value, np.float32)

    def _row(self, t: int, value: np.ndarray) -> np.ndarray:
        if self.kind == "points":
            return np.array([t, value[1], value[0]], np.float32)  # the model takes (t, y, x)
        return np.concatenate([[t], value]).astype(np.float32)

    def update(self, seqs: list[int], publish_from: int, ids: list[int], values: np.ndarray,
               logits: np.ndarray) -> list[TrackFrame]:
        """Record a window's outputs `(N, T, 2|4)`, `(N, T)`; returns the frames from `publish_from` on."""
        confidence = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        visible = confidence > 0.5
        frames = []
        ids_array = np.asarray(ids, np.uint32)
        for t in range(publish_from, len(seqs)):
            frames.append(TrackFrame(ids_array, values[:, t].astype(np.float32), visible[:, t].astype(np.uint8),
                                     confidence[:, t].astype(np.float32)))
        for n, track_id in enumerate(ids):
            track = self.tracks.get(track_id)
            if track is None:
                continue
            new_visible = visible[n, publish_from:]
            if new_visible.size:
                streak = len(new_visible) - 1 - np.flatnonzero(new_visible)[-1] if new_visible.any() else len(new_visible)
                track.invisible = streak if new_visible.any() else track.invisible + streak
            if track.invisible > self.max_invisible:
                del self.tracks[track_id]
                continue
            track.value, track.seq = values[n, -1].astype(np.float32), seqs[-1]
        return frames


def seed_points(frame: np.ndarray, count: int, existing: np.ndarray, method: str = "corners",
                min_distance: float = 6.0) -> np.ndarray:
    """Up to `count` new `(x, y)` points on `frame` (RGB uint8), at least `min_distance` from `existing`."""
    if count <= 0:
        return np.zeros((0, 2), np.float32)
    h, w = frame.shape[:2]
    mask = np.full((h, w), 255, np.uint8)
    for x, y in np.asarray(existing).reshape(-1, 2):
        cv2.circle(mask, (int(round(x)), int(round(y))), int(min_distance), 0, -1)
    if method == "corners":
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        corners = cv2.goodFeaturesToTrack(grey, maxCorners=count, qualityLevel=0.01, minDistance=min_distance,
                                          mask=mask)
        points = corners.reshape(-1, 2) if corners is not None else np.zeros((0, 2), np.float32)
    else:
        side = int(np.ceil(np.sqrt(count)))
        xs = (np.arange(side) + 0.5) * w / side - 0.5
        ys = (np.arange(side) + 0.5) * h / side - 0.5
        grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
        free = mask[np.clip(np.round(grid[:, 1]).astype(int), 0, h - 1), np.clip(np.round(grid[:, 0]).astype(int), 0, w - 1)] > 0
        points = grid[free][:count]
    return points.astype(np.float32)


class SeedInbox:
    """Track seeds received by stamp, in camera pixels, waiting for the window that holds their frame."""

    def __init__(self, capacity: int = 4096):
        self._items: deque = deque(maxlen=capacity)  # (kind, stamp_ns, value, track id)

    def add(self, kind: str, stamp_ns: int, value, track_id: int | None = None) -> None:
        self._items.append((kind, int(stamp_ns), np.asarray(value, np.float64), track_id))

    def deliver(self, stamps: list[int], seqs: list[int], pixel_map: PixelMap, track_sets: dict,
                log: logging.Logger) -> None:
        """Seed the tracks of every seed whose stamp matches a frame of this window; keep those still to come."""
        stamps_a = np.asarray(stamps)
        # A window of one frame (a stream's first) has no period: a seed must carry its frame's stamp.
        half_period = max(float(np.median(np.diff(stamps_a))), 1.0) / 2 if len(stamps_a) > 1 else 0.5
        later = []
        while self._items:
            kind, stamp, value, track_id = self._items.popleft()
            tracks = track_sets.get(kind)
            if tracks is None:
                continue
            if stamp > stamps_a[-1] + half_period:
                later.append((kind, stamp, value, track_id))  # a frame still to come
                continue
            i = int(np.argmin(np.abs(stamps_a - stamp)))
            if abs(stamps_a[i] - stamp) > half_period:
                log.warning(f"{kind} seed stamped {stamp} ns matches no frame of the current window; ignored")
                continue
            corners = value.reshape(-1, 2)
            x, y = pixel_map.to_model(corners[:, 0], corners[:, 1])
            tracks.add_seed(seqs[i], np.column_stack([x, y]).ravel(), track_id)
        self._items.extend(later)


def window_queries(points: TrackSet | None, boxes: TrackSet | None, window: np.ndarray, seqs: list[int],
                   publish_from: int, seeding: str) -> tuple[TrackQueries | None, TrackQueries | None]:
    """The point and box queries of one window; point tracks are topped up by `seeding` first.

    New points go on the newest frame already emitted (tracked forward into the new frames), or frame 0.
    """
    point_q = box_q = None
    if points is not None:
        if seeding != "none":
            seed_index = max(publish_from - 1, 0)
            existing = np.array([t.value for t in points.tracks.values() if t.seq in seqs]).reshape(-1, 2)
            need = points.max_tracks - len(existing)
            for xy in seed_points(window[seed_index], need, existing, seeding):
                points.add_seed(seqs[seed_index], xy)
        point_q = points.queries(seqs)
    if boxes is not None:
        box_q = boxes.queries(seqs)
    return point_q, box_q
