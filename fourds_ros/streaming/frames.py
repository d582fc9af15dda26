"""Camera frames into the model's window: decode the message bytes, crop/resize into a preallocated ring.

Decoding is plain numpy (no cv_bridge): `np.frombuffer` over the message data is
zero-copy, rows are sliced by `step`; OpenCV does the colour conversion and the
resize straight into the ring's slot, so a frame is copied once.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .camera import PixelMap

# encoding -> (channels, index order that gives RGB, or None for grey): the layouts the ring takes directly.
ENCODINGS: dict[str, tuple[int, tuple[int, ...] | None]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}
# Camera layouts converted on arrival (OpenCV): encoding -> (bytes per pixel, cv2 conversion or None, result).
# OpenCV names Bayer patterns by the second row's first two pixels, so ROS's rggb is its BG pattern.
CONVERTED: dict[str, tuple[int, int | None, str]] = {
    "yuv422": (2, cv2.COLOR_YUV2RGB_UYVY, "rgb8"),
    "yuv422_yuy2": (2, cv2.COLOR_YUV2RGB_YUY2, "rgb8"),
    "bayer_rggb8": (1, cv2.COLOR_BayerBG2RGB, "rgb8"),
    "bayer_bggr8": (1, cv2.COLOR_BayerRG2RGB, "rgb8"),
    "bayer_gbrg8": (1, cv2.COLOR_BayerGR2RGB, "rgb8"),
    "bayer_grbg8": (1, cv2.COLOR_BayerGB2RGB, "rgb8"),
    "mono16": (2, None, "mono8"),
    "rgb16": (6, None, "rgb8"),
    "bgr16": (6, None, "bgr8"),
}
SUPPORTED = (*ENCODINGS, *CONVERTED)


class ImageError(ValueError):
    """An image message cannot be decoded: the message says why."""


def _checked_rows(encoding: str, height: int, width: int, step: int, data, row: int) -> np.ndarray:
    if height <= 0 or width <= 0:
        raise ImageError(f"empty image ({width}x{height})")
    if step < row:
        raise ImageError(f"step {step} is smaller than the {row} bytes a row of {width} {encoding} pixels needs")
    buffer = np.frombuffer(data, dtype=np.uint8)
    needed = step * (height - 1) + row
    if buffer.size < needed:
        raise ImageError(f"truncated image data: {buffer.size} bytes for {width}x{height} {encoding} "
                         f"with step {step} (need {needed})")
    return np.lib.stride_tricks.as_strided(buffer, shape=(height, row), strides=(step, 1), writeable=False)


def image_view(encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
    """A `(height, width, channels)` uint8 view of the message bytes, after validating them.

    Encodings of `CONVERTED` come back converted (a new array) to the layout of `converted_encoding`.
    """
    if encoding in CONVERTED:
        return _convert(encoding, height, width, step, data)
    if encoding not in ENCODINGS:
        raise ImageError(f"unsupported encoding {encoding!r} (supported: {', '.join(SUPPORTED)})")
    channels, _ = ENCODINGS[encoding]
    return _checked_rows(encoding, height, width, step, data, width * channels).reshape(height, width, channels)


def check_pixel_count(height: int, width: int, max_pixels: int) -> None:
    """One absurd message must not make the node allocate gigabytes: frames over the cap are rejected."""
    if height > 0 and width > 0 and height * width > max_pixels:
        raise ImageError(f"{width}x{height} is {height * width} pixels, over max_image_pixels ({max_pixels})")


def compressed_size(data) -> tuple[int, int] | None:
    """(height, width) from a png or jpeg header without decoding the image; None if neither can be read."""
    head = bytes(data[:64 * 1024])
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        return height, width
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 9 < len(head):  # jpeg markers up to the frame header (SOF0..SOF15, not DHT/JPG/DAC)
        if head[pos] != 0xFF:
            return None
        marker, length = head[pos + 1], int.from_bytes(head[pos + 2:pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(head[pos + 5:pos + 7], "big"), int.from_bytes(head[pos + 7:pos + 9], "big")
        pos += 2 + length
    return None


def decode_compressed(data, max_pixels: int = 50_000_000) -> tuple[np.ndarray, str]:
    """A `sensor_msgs/CompressedImage` payload (jpeg, png) -> an `(H, W, C)` uint8 image and its encoding
    (`bgr8` or `mono8`), as OpenCV decodes it. Raises `ImageError` for anything else, and before decoding for an
    image whose header says it is over `max_pixels`."""
    size = compressed_size(data)
    if size is not None:
        check_pixel_count(*size, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if len(data) else None
    if image is None or image.dtype != np.uint8 or image.ndim == 3 and image.shape[2] != 3:
        raise ImageError(f"{len(data)} bytes that do not decode to an 8-bit grey or colour image")
    return (image[..., None], "mono8") if image.ndim == 2 else (image, "bgr8")


def converted_encoding(encoding: str) -> str:
    """The layout `image_view` returns for `encoding`."""
    return CONVERTED[encoding][2] if encoding in CONVERTED else encoding


def _convert(encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
    size, code, result = CONVERTED[encoding]
    if encoding.startswith("yuv422") and width % 2:
        raise ImageError(f"{encoding} packs pixel pairs: the width must be even, got {width}")
    if size in (2, 6) and not encoding.startswith("yuv") and step % 2:
        raise ImageError(f"{encoding} has 16-bit samples: the step must be even, got {step}")
    rows = _checked_rows(encoding, height, width, step, data, width * size)
    if encoding.startswith("yuv"):
        return cv2.cvtColor(np.ascontiguousarray(rows).reshape(height, width, 2), code)
    if code is not None:  # Bayer
        return cv2.cvtColor(np.ascontiguousarray(rows), code)
    # 16-bit samples (little-endian), scaled to 8 bit by their high byte.
    samples = np.ascontiguousarray(rows).view("<u2").reshape(height, width, size // 2)
    return (samples >> 8).astype(np.uint8)


def to_rgb(view: np.ndarray, encoding: str) -> np.ndarray:
    """RGB `(H, W, 3)` uint8 from a view made by `image_view` (grey is replicated)."""
    _, order = ENCODINGS[encoding]
    if order is None:
        return np.repeat(view, 3, axis=2)
    if order == (0, 1, 2) and view.shape[2] == 3:
        return view
    return view[:, :, list(order)]


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
        """Copy the newest `length` frames, oldest first, into `out` `(length, H, W, 3)`."""
        if self.count < length:
            raise ValueError(f"only {self.count} frames buffered, a window needs {length}")
        start = self.count - length
        first = start % self.capacity
        split = min(length, self.capacity - first)
        out[:split] = self.frames[first:first + split]
        out[split:length] = self.frames[:length - split]
        return [self.infos[(start + i) % self.capacity] for i in range(length)]


_TO_GREY = {"rgb8": cv2.COLOR_RGB2GRAY, "bgr8": cv2.COLOR_BGR2GRAY, "rgba8": cv2.COLOR_RGBA2GRAY,
            "bgra8": cv2.COLOR_BGRA2GRAY}


class GeometryFrames:
    """Grey copies of the newest camera frames, at most `max_width` wide, for the geometric stage.

    The model sees a few dozen pixels a side; tracking and two-view geometry want the camera's detail.
    Resizing once on arrival keeps their cost independent of the camera's resolution.
    """

    def __init__(self, capacity: int, max_width: int):
        self.capacity, self.max_width = capacity, max_width
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
            width = min(self.max_width, src_w)
            height = max(1, int(round(src_h * width / src_w)))
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
