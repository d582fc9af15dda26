"""Camera frame -> model input: crop/resize policy, done in place into a preallocated slot.

`PixelMap` carries the affine map between model-input pixels and source-image
pixels (pixel centres at integers, both ways), for tracks and intrinsics.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .image_decode import ENCODINGS

POLICIES = ("resize", "center_crop")
# cv2 conversions from each encoding's channel layout to RGB.
_TO_RGB = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
           "mono8": cv2.COLOR_GRAY2RGB}


@dataclass(frozen=True)
class PixelMap:
    """source = scale * model + offset, per axis."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    def to_source(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x * self.scale_x + self.offset_x, y * self.scale_y + self.offset_y

    def to_model(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x - self.offset_x) / self.scale_x, (y - self.offset_y) / self.scale_y

    def intrinsics_to_model(self, k: np.ndarray) -> np.ndarray:
        """A 3x3 camera matrix of the source image -> the same camera seen at model resolution."""
        out = np.array(k, dtype=np.float64).reshape(3, 3).copy()
        out[0, 0] /= self.scale_x
        out[0, 1] /= self.scale_x
        out[1, 1] /= self.scale_y
        out[0, 2] = (out[0, 2] - self.offset_x) / self.scale_x
        out[1, 2] = (out[1, 2] - self.offset_y) / self.scale_y
        return out


class FramePreprocessor:
    """Writes each frame, cropped and resized to the model's (height, width), into a caller's RGB slot."""

    def __init__(self, height: int, width: int, policy: str = "resize"):
        if policy not in POLICIES:
            raise ValueError(f"unknown resize policy {policy!r}; choose from {', '.join(POLICIES)}")
        self.height, self.width, self.policy = height, width, policy
        self._scratch: dict[int, np.ndarray] = {}

    def crop_box(self, src_h: int, src_w: int) -> tuple[int, int, int, int]:
        """(x0, y0, crop_w, crop_h) of the source region the model sees."""
        if self.policy == "resize":
            return 0, 0, src_w, src_h
        target = self.width / self.height
        if src_w / src_h > target:
            crop_w = int(round(src_h * target))
            return (src_w - crop_w) // 2, 0, crop_w, src_h
        crop_h = int(round(src_w / target))
        return 0, (src_h - crop_h) // 2, src_w, crop_h

    def pixel_map(self, src_h: int, src_w: int) -> PixelMap:
        x0, y0, cw, ch = self.crop_box(src_h, src_w)
        sx, sy = cw / self.width, ch / self.height
        return PixelMap(sx, sy, x0 + 0.5 * sx - 0.5, y0 + 0.5 * sy - 0.5)

    def __call__(self, view: np.ndarray, encoding: str, out: np.ndarray) -> None:
        """Crop/resize `view` (as from `image_view`) into `out` `(height, width, 3)` uint8 RGB."""
        x0, y0, cw, ch = self.crop_box(view.shape[0], view.shape[1])
        region = view[y0:y0 + ch, x0:x0 + cw]
        shrinking = cw > self.width or ch > self.height
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        size = (self.width, self.height)
        if encoding == "rgb8":
            if region.shape[:2] == (self.height, self.width):
                out[...] = region
            else:
                cv2.resize(region, size, dst=out, interpolation=interpolation)
            return
        channels = ENCODINGS[encoding][0]
        if channels == 1:
            region = region[..., 0]
        scratch = self._scratch.get(channels)
        if scratch is None:
            shape = (self.height, self.width) if channels == 1 else (self.height, self.width, channels)
            scratch = self._scratch[channels] = np.empty(shape, np.uint8)
        if region.shape[:2] == (self.height, self.width):
            scratch[...] = region
        else:
            cv2.resize(region, size, dst=scratch, interpolation=interpolation)
        cv2.cvtColor(scratch, _TO_RGB[encoding], dst=out)
