"""Raw image bytes (sensor_msgs/Image fields) -> an RGB uint8 view, with a clear error for bad input.

Plain numpy (cv_bridge is not needed): `np.frombuffer` over the message data is
zero-copy, rows are sliced by `step`, and only channel reordering copies.
"""
from __future__ import annotations

import numpy as np

# encoding -> (channels, index order that gives RGB, or None for grey)
ENCODINGS: dict[str, tuple[int, tuple[int, ...] | None]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}


class ImageError(ValueError):
    """An image message cannot be decoded: the message says why."""


def image_view(encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
    """A `(height, width, channels)` uint8 view of the message bytes, after validating them."""
    if encoding not in ENCODINGS:
        raise ImageError(f"unsupported encoding {encoding!r} (supported: {', '.join(ENCODINGS)})")
    channels, _ = ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise ImageError(f"empty image ({width}x{height})")
    row = width * channels
    if step < row:
        raise ImageError(f"step {step} is smaller than width * channels = {row} for {encoding}")
    buffer = np.frombuffer(data, dtype=np.uint8)
    needed = step * (height - 1) + row
    if buffer.size < needed:
        raise ImageError(f"truncated image data: {buffer.size} bytes for {width}x{height} {encoding} "
                         f"with step {step} (need {needed})")
    rows = np.lib.stride_tricks.as_strided(buffer, shape=(height, row), strides=(step, 1), writeable=False)
    return rows.reshape(height, width, channels)


def to_rgb(view: np.ndarray, encoding: str) -> np.ndarray:
    """RGB `(H, W, 3)` uint8 from a view made by `image_view` (grey is replicated)."""
    _, order = ENCODINGS[encoding]
    if order is None:
        return np.repeat(view, 3, axis=2)
    if order == (0, 1, 2) and view.shape[2] == 3:
        return view
    return view[:, :, list(order)]
