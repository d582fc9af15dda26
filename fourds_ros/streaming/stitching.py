"""Continuity across windows: depth scale alignment and a running camera trajectory.

Consecutive windows overlap by `window_len - window_hop` frames. Each new
window is aligned to the previous (already aligned) one on those frames, so
scale does not jump at window boundaries and poses compose into one trajectory.
The alignment is not chained for ever: its log scale returns to the model's own
over `depth_scale_horizon_s` (a first-order decay), so an hour of windows cannot
walk the scale away while neighbouring windows stay continuous.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .geometry import inverse, to_rigid

# Pixels sampled per overlapping frame for the least-squares fit (a regular grid).
_FIT_STRIDE = 4


class DepthAligner:
    """The scale (median log ratio; scale and shift by least squares for affine-invariant depth) against the
    previous window's overlap."""

    def __init__(self, affine: bool = False, horizon_s: float = 0.0):
        self.affine, self.horizon_s = affine, horizon_s
        self.previous: dict[int, np.ndarray] = {}
        self.scale, self.shift = 1.0, 0.0
        self._last_ns: int | None = None

    def reset(self) -> None:
        self.previous.clear()
        self.scale, self.shift = 1.0, 0.0
        self._last_ns = None

    def align(self, seqs: list[int], depth: np.ndarray, stamp_ns: int | None = None) -> tuple[float, float]:
        """Align `depth` `(T, H, W)` of frames `seqs` (the newest at `stamp_ns`) in place; returns the (scale,
        shift) applied."""
        overlap = [i for i, s in enumerate(seqs) if s in self.previous]
        if overlap:
            new = np.concatenate([depth[i, ::_FIT_STRIDE, ::_FIT_STRIDE].ravel() for i in overlap])
            old = np.concatenate([self.previous[seqs[i]].ravel() for i in overlap])
            valid = np.isfinite(new) & np.isfinite(old) & (old > 0)
            if valid.sum() >= 16:
                self.scale, self.shift = self._fit(new[valid], old[valid])
        if stamp_ns is not None:
            if self._last_ns is not None and self.horizon_s > 0:
                keep = max(0.0, 1.0 - (stamp_ns - self._last_ns) * 1e-9 / self.horizon_s)
                self.scale, self.shift = float(self.scale ** keep), self.shift * keep
            self._last_ns = stamp_ns
        # With no overlap (after dropped windows) the last factors are the best continuation.
        depth *= self.scale
        depth += self.shift
        self.previous = {s: depth[i, ::_FIT_STRIDE, ::_FIT_STRIDE].copy() for i, s in enumerate(seqs)}
        return self.scale, self.shift

    def _fit(self, new: np.ndarray, old: np.ndarray) -> tuple[float, float]:
        new, old = new.astype(np.float64), old.astype(np.float64)
        if self.affine:
            a = np.stack([new, np.ones_like(new)], axis=1)
            (scale, shift), *_ = np.linalg.lstsq(a, old, rcond=None)
        else:
            # The median log ratio: symmetric in the two windows (a least-squares ratio shrinks towards the
            # noisier one, and that bias adds up window after window) and deaf to a mover in the overlap.
            positive = new > 0
            if not positive.any():
                return self.scale, self.shift
            scale, shift = float(np.exp(np.median(np.log(old[positive] / new[positive])))), 0.0
        if not np.isfinite(scale) or scale <= 0:
            return self.scale, self.shift
        return float(scale), float(shift)


class Trajectory:
    """World poses of the camera (world = the first frame's camera, REP 103 optical axes)."""

    def __init__(self, memory: int = 64):
        self.memory = memory
        self.world_from_cam: OrderedDict[int, np.ndarray] = OrderedDict()
        self.last_scale = 1.0

    def reset(self) -> None:
        self.world_from_cam.clear()
        self.last_scale = 1.0

    def add_window(self, seqs: list[int], poses: np.ndarray, scale: float | None = None) -> dict[int, np.ndarray]:
        """Compose a window's poses `(T, 4, 4)` (each frame in the window's first camera) onto the trajectory.

        `scale` multiplies the window's translations (the depth alignment's factor keeps depth and
        motion in one scale); without it, the scale is fitted on the overlap's translations.
        Returns the world pose of every frame of the window (known frames keep their pose).
        """
        poses = np.asarray(poses, np.float64).copy()
        overlap = [i for i, s in enumerate(seqs) if s in self.world_from_cam]
        if scale is None:
            scale = self._fit_scale(seqs, poses, overlap)
        self.last_scale = scale
        poses[:, :3, 3] *= scale
        if overlap:
            anchor = overlap[-1]  # the newest known frame: least drift for the frames after it
            world_from_first = self.world_from_cam[seqs[anchor]] @ inverse(poses[anchor])
        elif self.world_from_cam:
            # A gap (windows were dropped): continue from the last known pose.
            world_from_first = next(reversed(self.world_from_cam.values())) @ inverse(poses[0])
        else:
            world_from_first = np.eye(4)
        out = {}
        for i, seq in enumerate(seqs):
            known = self.world_from_cam.get(seq)
            out[seq] = known if known is not None else to_rigid(world_from_first @ poses[i])
            self.world_from_cam[seq] = out[seq]
        while len(self.world_from_cam) > self.memory:
            self.world_from_cam.popitem(last=False)
        return out

    def _fit_scale(self, seqs: list[int], poses: np.ndarray, overlap: list[int]) -> float:
        if len(overlap) < 2:
            return self.last_scale
        a = overlap[0]
        old = np.array([(inverse(self.world_from_cam[seqs[a]]) @ self.world_from_cam[seqs[i]])[:3, 3] for i in overlap[1:]])
        new = np.array([(inverse(poses[a]) @ poses[i])[:3, 3] for i in overlap[1:]])
        denominator = float((new * new).sum())
        if denominator < 1e-10 or float((old * old).sum()) < 1e-10:
            return self.last_scale  # no motion in the overlap: nothing to fit
        return float((new * old).sum() / denominator)
