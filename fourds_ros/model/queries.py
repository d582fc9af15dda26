"""Default track queries, for when a caller has none (CLI predict, demos, seeding)."""
from __future__ import annotations

import numpy as np

from .config import ModelConfig


def grid_point_queries(config: ModelConfig, per_side: int = 4, frame: int = 0) -> np.ndarray:
    """`(1, per_side**2, 3)` queries `(t, y, x)` on a regular grid of pixel centres of frame `frame`."""
    ys = (np.arange(per_side) + 0.5) * config.clip.height / per_side - 0.5
    xs = (np.arange(per_side) + 0.5) * config.clip.width / per_side - 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    q = np.stack([np.full(yy.size, frame), yy.ravel(), xx.ravel()], axis=-1)
    return q[None].astype(np.float32)


def centre_box_query(config: ModelConfig, frame: int = 0) -> np.ndarray:
    """`(1, 1, 5)` query `(t, x_min, y_min, x_max, y_max)`: the middle half of frame `frame`."""
    h, w = config.clip.height, config.clip.width
    return np.array([[[frame, w / 4, h / 4, 3 * w / 4 - 1, 3 * h / 4 - 1]]], dtype=np.float32)
