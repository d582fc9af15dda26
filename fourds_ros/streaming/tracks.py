"""Stable track ids across windows.

Each live track is carried into the next window by querying the model at its
last estimate, on the newest frame both windows share. Tracks invisible for
more than `max_invisible` frames are dropped; point tracks are topped up to
`target` by seeding (corner detector or grid) away from live ones; box tracks
come from seeds (boxes received on a topic). All coordinates here are
model-input pixels; the node maps them to the source image.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


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
            out.ids.append(track.id)
            out.rows.append(self._row(index[seq], value))
        self.pending_seeds = keep
        return out

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
