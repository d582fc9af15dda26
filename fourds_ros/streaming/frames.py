"""Decoded camera frames into the model's window: shrink, crop/resize into a preallocated ring, and the grey
copies the geometric stage tracks on.

OpenCV does the colour conversion and the resize straight into the ring's slot, so a frame is copied once.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..images import ENCODINGS
from .camera import PixelMap

def shrink_factor(height: int, width: int, min_height: int, min_width: int) -> int:
    """The largest integer factor that keeps a `height` x `width` image at least `min_height` x `min_width`."""
    return max(1, min(height // max(min_height, 1), width // max(min_width, 1)))


def shrink_map(factor: int) -> PixelMap:
    """Pixels of an image area-shrunk by `factor` (`shrink`) -> pixels of the original."""
    return PixelMap(factor, factor, (factor - 1) / 2, (factor - 1) / 2)


def shrink(view: np.ndarray, factor: int) -> np.ndarray:
    """Average `factor` x `factor` blocks: one pass over the camera's pixels, OpenCV's integer-area fast path.

    Rows and columns past the last whole block (fewer than `factor`) are left out, so `shrink_map` is exact.
    A large image is shrunk once on arrival and everything after works at the smaller size: the per-frame cost
    grows with the camera's resolution only by this pass.
    """
    if factor <= 1:
        return view
    h, w = view.shape[0] // factor, view.shape[1] // factor
    small = cv2.resize(view[:h * factor, :w * factor], (w, h), interpolation=cv2.INTER_AREA)
    return small[..., None] if small.ndim == 2 else small


POLICIES = ("resize", "center_crop")
# cv2 conversions from each encoding's channel layout to RGB.
_TO_RGB = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
           "mono8": cv2.COLOR_GRAY2RGB}


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
        return PixelMap.crop_resize(self.crop_box(src_h, src_w), (self.height, self.width))

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


@dataclass
class FrameInfo:
    seq: int  # index of the frame among accepted frames since the last reset
    stamp_ns: int
    frame_id: str


class FrameRing:
    def __init__(self, capacity: int, height: int, width: int):
        self.capacity = capacity
        self.frames = np.zeros((capacity, height, width, 3), np.uint8)
        self.infos: list[FrameInfo | None] = [None] * capacity
        self.count = 0

    def reset(self) -> None:
        self.count = 0
        self.infos = [None] * self.capacity

    def next_slot(self) -> np.ndarray:
        """The slot the next frame is written into (commit it with `commit`)."""
        return self.frames[self.count % self.capacity]

    def commit(self, stamp_ns: int, frame_id: str) -> FrameInfo:
        info = FrameInfo(self.count, stamp_ns, frame_id)
        self.infos[self.count % self.capacity] = info
        self.count += 1
        return info

    @property
    def last(self) -> FrameInfo | None:
        return self.infos[(self.count - 1) % self.capacity] if self.count else None

    def copy_window(self, length: int, out: np.ndarray) -> list[FrameInfo]:
        """Copy the newest `length` frames, oldest first, into `out` `(length, H, W, 3)`. With fewer frames
        buffered, the oldest is repeated in front of them (a camera that stood still before it started; a single
        image read as a video, as 4DS does); the infos are those of the frames buffered."""
        if self.count == 0:
            raise ValueError("no frame buffered")
        have = min(self.count, length)
        start = self.count - have
        first = start % self.capacity
        split = min(have, self.capacity - first)
        pad = length - have
        out[pad:pad + split] = self.frames[first:first + split]
        out[pad + split:length] = self.frames[:have - split]
        out[:pad] = out[pad]
        return [self.infos[(start + i) % self.capacity] for i in range(have)]


_TO_GREY = {"rgb8": cv2.COLOR_RGB2GRAY, "bgr8": cv2.COLOR_BGR2GRAY, "rgba8": cv2.COLOR_RGBA2GRAY,
            "bgra8": cv2.COLOR_BGRA2GRAY}


def geometry_size(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) of a `height` x `width` frame shrunk to at most `max_pixels`, its aspect kept."""
    scale = min(1.0, float(np.sqrt(max_pixels / (height * width))))
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


class GeometryFrames:
    """Grey copies of the newest camera frames, at most `max_pixels` each, for the geometric stage.

    The model sees a few dozen pixels a side; tracking and two-view geometry want the camera's detail.
    Resizing once on arrival keeps their cost independent of the camera's resolution. A pixel budget, not a
    width: a wide image (1241x376) keeps its rows (a width of 320 would leave 97 of them).
    """

    def __init__(self, capacity: int, max_pixels: int):
        self.capacity, self.max_pixels = capacity, max_pixels
        self.frames: np.ndarray | None = None
        self.source_size: tuple[int, int] | None = None
        self._scratch: np.ndarray | None = None

    def pixel_map(self) -> PixelMap:
        """Geometry pixels -> camera pixels."""
        (src_h, src_w) = self.source_size
        return PixelMap.crop_resize((0, 0, src_w, src_h), self.frames.shape[1:])

    def write(self, view: np.ndarray, encoding: str, seq: int) -> None:
        src_h, src_w = view.shape[:2]
        if self.source_size != (src_h, src_w):
            height, width = geometry_size(src_h, src_w, self.max_pixels)
            self.frames = np.zeros((self.capacity, height, width), np.uint8)
            self.source_size = (src_h, src_w)
            self._scratch = np.empty((src_h, src_w), np.uint8)
        if encoding == "mono8":
            grey = view[..., 0]
        else:
            cv2.cvtColor(view, _TO_GREY[encoding], dst=self._scratch)
            grey = self._scratch
        slot = self.frames[seq % self.capacity]
        if grey.shape == slot.shape:
            slot[...] = grey
        else:
            cv2.resize(grey, (slot.shape[1], slot.shape[0]), dst=slot, interpolation=cv2.INTER_AREA)

    def copy_window(self, seqs: list[int]) -> np.ndarray:
        return self.frames[[s % self.capacity for s in seqs]].copy()
