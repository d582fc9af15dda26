"""What a real camera adds to a clean render: exposure, motion blur, noise and compression.

Applied to the images only (the ground truth stays exact), from a generator of its own so a sequence's scene and
motion are the same with or without the effects. Per sequence: an exposure gain and a gamma; per frame: blur along
the image motion of the frame (approximated by the mean of the frame and its predecessor, with a random weight:
a shutter open for part of the frame interval), shot noise growing with the signal plus read noise, and JPEG
compression at a random quality (as from a CompressedImage topic).
"""
from __future__ import annotations

import cv2
import numpy as np


def apply_sensor_effects(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`(F, H, W, 3)` uint8 -> the same frames as a real sensor would deliver them."""
    gain, gamma = rng.uniform(0.6, 1.4), rng.uniform(0.8, 1.25)
    read_sigma, shot_scale = rng.uniform(1.0, 4.0), rng.uniform(0.2, 0.8)
    quality = int(rng.integers(60, 96))
    out = np.empty_like(rgb)
    previous = rgb[0].astype(np.float32)
    for f, frame in enumerate(rgb.astype(np.float32)):
        shutter = rng.uniform(0.0, 0.5)  # fraction of the previous frame's light still on the sensor
        x = (1 - shutter) * frame + shutter * previous
        previous = frame
        x = 255.0 * np.clip(gain * x / 255.0, 0, 1) ** gamma
        x += rng.normal(0, 1, x.shape) * np.sqrt(read_sigma ** 2 + shot_scale * x)
        encoded = cv2.imencode(".jpg", np.clip(x, 0, 255).astype(np.uint8)[..., ::-1],
                               [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
        out[f] = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    return out
