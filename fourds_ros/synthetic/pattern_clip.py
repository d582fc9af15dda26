"""A procedural test clip: a textured background panning under a moving, rotating square.

For demos and tests that need frames with known motion without any data files.
"""
from __future__ import annotations

import numpy as np


def moving_pattern_clip(frames: int, height: int, width: int, seed: int = 0, shift_px: float = 2.0) -> np.ndarray:
    """uint8 RGB `(frames, height, width, 3)`: the background pans `shift_px` pixels right per frame."""
    rng = np.random.default_rng(seed)
    # Low-frequency colour texture, tiled wider than the frame so it can pan.
    pad = int(np.ceil(shift_px * frames)) + 1
    coarse = rng.uniform(0.15, 0.85, (height // 8 + 2, (width + pad) // 8 + 2, 3))
    ys = np.linspace(0, coarse.shape[0] - 1.001, height)
    xs = np.linspace(0, coarse.shape[1] - 1.001, width + pad)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    texture = ((1 - fy) * (1 - fx) * coarse[y0][:, x0] + (1 - fy) * fx * coarse[y0][:, x0 + 1]
               + fy * (1 - fx) * coarse[y0 + 1][:, x0] + fy * fx * coarse[y0 + 1][:, x0 + 1])
    yy, xx = np.mgrid[0:height, 0:width]
    clip = np.empty((frames, height, width, 3), np.uint8)
    side = min(height, width) / 4
    for t in range(frames):
        offset = int(round(pad - 1 - shift_px * t))
        frame = texture[:, offset:offset + width].copy()
        cy, cx = height / 2 + height / 6 * np.sin(t / 3), width / 3 + t * width / (3 * frames)
        angle = t * 0.1
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        inside = (np.abs(u) < side / 2) & (np.abs(v) < side / 2)
        frame[inside] = (0.9, 0.2, 0.1)
        clip[t] = np.clip(frame * 255 + 0.5, 0, 255).astype(np.uint8)
    return clip
