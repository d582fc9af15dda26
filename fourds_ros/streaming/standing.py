"""Whether a camera stands still, decided on the standing part of the scene (`egomotion.py` asks it each frame).

A camera stands when the tracks that speak for the standing scene moved less than `standing_deg` from the
keyframe. Tracks that stood still for `settled_s` are the standing scene: a crowd walking close to a standing
camera can bring most of the features and move them alike, and must not move the camera; while it stands, tracks
that move far are dropped (movers). Hysteresis: a standing camera starts moving once its view stays displaced for
`leave_standing_s` or moves well beyond the threshold at once, so vibration that swings back does not move it;
and one whose settled tracks were suddenly hidden (a body right in front of the lens) stands on for
`hidden_standing_s`, while fresh tracks settle and movers drop out.
"""
from __future__ import annotations

import numpy as np

from .geometry import angle_px
from .settings import EgomotionConfig


class StandingJudge:
    def __init__(self, config: EgomotionConfig):
        self.config = config
        self.hold_until_ns = 0  # a standing camera whose settled tracks were hidden is taken to stand until then
        self.displaced_since_ns: int | None = None  # since when a standing camera's view has been displaced

    def stands(self, tracks, k: np.ndarray, was_standing: bool, stamp_ns: int, gap_s: float) -> bool:
        """Whether the camera stands at this frame, given its `tracks` (the egomotion's: where they are now and
        on the keyframe, how long each stood still; movers are dropped from them while it stands)."""
        config = self.config
        if len(tracks) < config.min_inliers:
            return was_standing and stamp_ns < self.hold_until_ns
        standing_px = angle_px(k, config.standing_deg)
        displacement = np.linalg.norm(tracks.now - tracks.on_keyframe, axis=1)
        settled = tracks.still_s >= config.settled_s
        if settled.sum() >= config.min_settled:
            judged = displacement[settled]
            self.hold_until_ns = stamp_ns + int(config.hidden_standing_s * 1e9)
        elif was_standing and stamp_ns < self.hold_until_ns:
            judged = np.zeros(1)  # the settled tracks were just hidden
        else:
            judged = displacement
        judged_px = float(np.median(judged))
        if was_standing and self._still_standing(judged_px, standing_px, stamp_ns):
            return True
        if judged_px < standing_px:
            # Most of the view stands: what moved well beyond the noise is an object moving on its own.
            moving = displacement > config.moving_factor * standing_px
            tracks.still_s[~moving] += gap_s
            tracks.keep(~moving)
            return True
        return False

    def _still_standing(self, displacement: float, standing_px: float, stamp_ns: int) -> bool:
        """A standing camera whose view is displaced beyond the standing threshold, but not yet for
        `leave_standing_s` nor by `leave_standing_factor` times it, is vibrating, not moving."""
        if displacement < standing_px:
            self.displaced_since_ns = None
            return False  # standing, judged as always (movers dropped, tracks settle)
        if self.displaced_since_ns is None:
            self.displaced_since_ns = stamp_ns
        return ((stamp_ns - self.displaced_since_ns) * 1e-9 < self.config.leave_standing_s
                and displacement < self.config.leave_standing_factor * standing_px)
