"""The egomotion's local map: keyframes and the 3D points seen in them (after ORB-SLAM's local mapping).

A point is made where a track starts, on a keyframe (its anchor), at the depth the 4DS model gives there: that
depth is the point's prior (metric scale, and conditioning where two views say little, as in forward motion).
Every later keyframe that still tracks it adds an observation. Bundle adjustment (`bundle_adjustment.py`)
moves the recent keyframes and their points; frames between keyframes are located against the points.

Bounded by construction: keyframes beyond the adjusted window and points no track and no kept keyframe sees
are dropped (`prune`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .geometry import ray_points


@dataclass
class Keyframe:
    id: int
    seq: int
    stamp_ns: int
    world_from_camera: np.ndarray  # (4, 4), moved by bundle adjustment
    covariance: np.ndarray  # (6, 6) of the pose as the tracking gave it
    readout_world_from_camera: np.ndarray | None  # the 4DS pose readout's pose of this frame (None: not yet back)
    placed: bool = True  # its points stand at the model's depth of this frame (not yet: carried from an older one)


@dataclass
class MapPoint:
    anchor: int  # keyframe id where the track started
    pixel: np.ndarray  # (2,) on the anchor
    prior_range: float  # distance from the anchor camera by the 4DS depth (NaN: none)
    position: np.ndarray  # (3,) world
    origin: np.ndarray  # (3,) the anchor camera's centre when the point was made: its depth is along origin->position
    observations: dict[int, np.ndarray] = field(default_factory=dict)  # keyframe id -> (2,) pixel
    bad: bool = False  # rejected by bundle adjustment (a mover, a track that slid)


class LocalMap:
    def __init__(self, window: int):
        self.window = window  # keyframes adjusted together
        self.keyframes: dict[int, Keyframe] = {}
        self.points: dict[int, MapPoint] = {}
        self._next_keyframe = self._next_point = 0

    @property
    def newest(self) -> Keyframe | None:
        return self.keyframes[max(self.keyframes)] if self.keyframes else None

    def add_keyframe(self, seq: int, stamp_ns: int, pose: np.ndarray, covariance: np.ndarray,
                     readout: np.ndarray | None, placed: bool = True) -> Keyframe:
        kf = Keyframe(self._next_keyframe, seq, stamp_ns, pose.copy(), covariance.copy(),
                      None if readout is None else readout.copy(), placed)
        self.keyframes[kf.id] = kf
        self._next_keyframe += 1
        return kf

    def add_points(self, kf: Keyframe, pixels: np.ndarray, depth: np.ndarray, k: np.ndarray) -> np.ndarray:
        """New points for tracks starting at `pixels` on `kf`, at the model's `depth` (NaN: the median of the
        rest, with no prior); their ids."""
        known = np.isfinite(depth) & (depth > 0)
        fill = float(np.median(depth[known])) if known.any() else 1.0
        z = np.where(known, depth, fill)
        local = ray_points(pixels[:, 0].astype(np.float64), pixels[:, 1].astype(np.float64), z, k)
        world = local @ kf.world_from_camera[:3, :3].T + kf.world_from_camera[:3, 3]
        ranges = np.where(known, np.linalg.norm(local, axis=1), np.nan)
        ids = np.arange(self._next_point, self._next_point + len(pixels))
        for i, pid in enumerate(ids):
            pixel = pixels[i].astype(np.float64)
            self.points[int(pid)] = MapPoint(kf.id, pixel, float(ranges[i]), world[i], kf.world_from_camera[:3, 3].copy(),
                                             {kf.id: pixel})
        self._next_point += len(pixels)
        return ids

    def keyframe_at(self, seq: int) -> Keyframe | None:
        return next((kf for kf in self.keyframes.values() if kf.seq == seq), None)

    def place(self, kf: Keyframe, depth_at, k: np.ndarray) -> None:
        """The model's depth of `kf`'s own frame has come back (`depth_at(pixels)`, NaN where unknown): the points
        that start on it take it as their prior. A point only `kf` sees stands at it, along its ray from the
        keyframe as it is now; one a later keyframe saw too keeps where the views and the adjustment put it
        (moving it would undo their agreement: `holo_office_b` 0.58 -> 0.44 m, mean of four draws). A point
        without a depth there keeps what it had."""
        ids = self.anchored(kf)
        pixels = np.array([self.points[i].pixel for i in ids], np.float64).reshape(-1, 2)
        depth = np.asarray(depth_at(pixels) if len(ids) else np.zeros(0), np.float64)
        known = np.isfinite(depth) & (depth > 0)
        local = ray_points(pixels[:, 0], pixels[:, 1], np.where(known, depth, 1.0), k)
        world = local @ kf.world_from_camera[:3, :3].T + kf.world_from_camera[:3, 3]
        for i in np.flatnonzero(known):
            point = self.points[ids[i]]
            point.prior_range, point.origin = float(np.linalg.norm(local[i])), kf.world_from_camera[:3, 3].copy()
            if len(point.observations) < 2:
                point.position = world[i]
        kf.placed = True

    def anchored(self, kf: Keyframe) -> list[int]:
        """The points whose tracks started on `kf`, in a fixed order."""
        return [pid for pid, point in self.points.items() if point.anchor == kf.id]

    def observe(self, kf: Keyframe, ids: np.ndarray, pixels: np.ndarray) -> None:
        for pid, pixel in zip(ids, pixels):
            point = self.points.get(int(pid))
            if point is not None:
                point.observations[kf.id] = pixel.astype(np.float64)

    def positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """World positions `(N, 3)` of points `ids`, which of them are usable (not rejected), their origins `(N, 3)`
        and what places them in depth `(N,)`: the keyframes that observe them, or 0 for a point neither a depth
        prior nor a second view has placed yet (known only to lie on its ray from its origin)."""
        out, origin = np.full((len(ids), 3), np.nan), np.full((len(ids), 3), np.nan)
        usable, views = np.zeros(len(ids), bool), np.zeros(len(ids), int)
        # Once a frame for every track: the points gathered in one pass, the arrays filled at once.
        found = [(i, point) for i, pid in enumerate(ids.tolist())
                 if (point := self.points.get(pid)) is not None and not point.bad]
        if found:
            index = np.array([i for i, _ in found])
            out[index] = [point.position for _, point in found]
            origin[index] = [point.origin for _, point in found]
            usable[index] = True
            views[index] = [len(point.observations) if math.isfinite(point.prior_range) or len(point.observations) > 1
                            else 0 for _, point in found]
        return out, usable, origin, views

    def recent(self) -> list[Keyframe]:
        """The keyframes bundle adjustment moves, oldest first (the oldest of them holds the gauge)."""
        return [self.keyframes[i] for i in sorted(self.keyframes)[-self.window:]]

    def prune(self, tracked: np.ndarray) -> None:
        """Drop keyframes older than the window and points that neither a live track nor a kept keyframe sees."""
        keep = set(sorted(self.keyframes)[-self.window:])
        for kid in [kid for kid in self.keyframes if kid not in keep]:
            del self.keyframes[kid]
        alive = set(int(p) for p in tracked)
        for pid in list(self.points):
            point = self.points[pid]
            point.observations = {kid: px for kid, px in point.observations.items() if kid in keep}
            if pid not in alive and not point.observations:
                del self.points[pid]
