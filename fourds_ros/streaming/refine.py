"""Point tracks refined at camera resolution: pyramidal Lucas-Kanade from the track's previous position,
vetoed by an appearance check (the mean absolute grey difference of the two patches, which LK reports);
where it fails from there, again from the 4DS readout's coarse position as the initial guess; where both
fail, the readout's position stands. The model sees a 64-pixel window; the refinement sees the camera's
detail. Tracks start exactly at their seed.

Why the appearance check and not forward-backward (Kalal et al. 2010): measured by
benchmarks/geometry_stage.py, the forward-backward veto costs a second LK pass per frame and scored lower
average Jaccard on the synthetic held-out bags (0.500 vs 0.517; Lucas-Kanade alone 0.510), higher on
holo_office_b (0.118 vs 0.098; Lucas-Kanade 0.047).

`visibility` says which occlusion signal a track's `visible` flag carries: `readout` (the 4DS visibility),
`refined` (the refinement's own check passed), or `both` (both agree the point is seen).
"""
from __future__ import annotations

import numpy as np

from .camera import PixelMap
from .klt import LucasKanade
from .settings import POINT_VISIBILITY
from .tracks import TrackFrame

# The patch difference limit is the Lucas-Kanade baseline's (evaluation/baselines.py), so the two compare.
TRACKER = LucasKanade(window=21, forward_backward_px=None, max_error=30.0)


class PointRefiner:
    def __init__(self, visibility: str = "refined", tracker: LucasKanade = TRACKER):
        if visibility not in POINT_VISIBILITY:
            raise ValueError(f"track visibility must be one of {', '.join(POINT_VISIBILITY)}, got {visibility!r}")
        self.visibility, self.tracker = visibility, tracker
        self.last: dict[int, tuple[int, np.ndarray]] = {}  # track id -> (seq, geometry pixels)

    def reset(self) -> None:
        self.last.clear()

    def refine(self, frames: list[TrackFrame], seqs: list[int], grey: np.ndarray, geometry_map: PixelMap,
               started: dict[int, tuple[int, np.ndarray]] | None = None) -> None:
        """Refine `frames` (one per seq, in order, `source_values` set) in place with the window's grey frames
        `grey` (indexed like the whole window, so `seqs[0]` may precede the first frame to refine).

        `started`: tracks that begin in this window, (seq, camera pixels): on that frame the track is exactly
        its seed, and refinement runs forward from there.
        """
        starts = {}
        for track_id, (seq, xy) in (started or {}).items():
            gx, gy = geometry_map.to_model(np.array([xy[0]]), np.array([xy[1]]))
            starts[int(track_id)] = (seq, np.array([gx[0], gy[0]], np.float32))
        offset = len(grey) - len(frames)
        live = set()
        for n, (frame, seq) in enumerate(zip(frames, seqs[offset:])):
            index = offset + n
            ids = frame.ids.astype(int)
            live.update(ids.tolist())
            guess_x, guess_y = geometry_map.to_model(frame.source_values[:, 0], frame.source_values[:, 1])
            guess = np.stack([guess_x, guess_y], 1).astype(np.float32)
            previous = [self.last.get(i) for i in ids]
            can = np.array([p is not None and p[0] == seq - 1 and index > 0 for p in previous], bool)
            refined = np.zeros(len(ids), bool)
            position = guess.copy()
            if can.any():
                start = np.stack([previous[i][1] for i in np.flatnonzero(can)]).astype(np.float32)
                moved, ok = self._track(grey[index - 1], grey[index], start, guess[can])
                rows = np.flatnonzero(can)
                position[rows[ok]] = moved[ok]
                refined[rows[ok]] = True
            for i, track_id in enumerate(ids):
                start = starts.get(track_id)
                if start is not None and start[0] == seq:
                    position[i], can[i], refined[i] = start[1], False, False
                # A track that could not be refined continues from the readout's position.
                self.last[track_id] = (seq, position[i])
            x, y = geometry_map.to_source(position[:, 0], position[:, 1])
            frame.source_values = np.stack([x, y], 1).astype(np.float32)
            frame.refined = refined.astype(np.uint8)
            readout_visible = frame.visible.astype(bool)
            fresh = ~can  # a track's first frame has nothing to refine from: the readout answers
            if self.visibility == "refined":
                frame.visible = (np.where(fresh, readout_visible, refined)).astype(np.uint8)
            elif self.visibility == "both":
                frame.visible = (readout_visible & (refined | fresh)).astype(np.uint8)
        for track_id in [i for i in self.last if i not in live]:
            del self.last[track_id]

    def _track(self, previous: np.ndarray, current: np.ndarray, start: np.ndarray, guess: np.ndarray):
        """Lucas-Kanade from `start`, searched first from the previous position itself, then (where that fails
        its check) from the readout's `guess`."""
        best = np.zeros_like(start)
        ok = np.zeros(len(start), bool)
        for initial in (None, guess):
            todo = np.flatnonzero(~ok)
            if not len(todo):
                break
            moved, good = self.tracker.track(previous, current, start[todo], None if initial is None else initial[todo])
            best[todo[good]] = moved[good]
            ok[todo[good]] = True
        return best, ok
