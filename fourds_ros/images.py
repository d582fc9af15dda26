"""Image messages' bytes as arrays: every encoding of `contract.ENCODINGS`, raw and compressed alike.

Decoding is plain numpy (no cv_bridge): `np.frombuffer` over the message data is zero-copy and rows are sliced
by `step`; YUV, Bayer and 16-bit layouts are converted by OpenCV; jpeg and png payloads are decoded by OpenCV.
Nothing here knows about ROS, the model or the streaming core: the node, the bag reader and evaluation share it.
"""
from __future__ import annotations

import cv2
import numpy as np

from . import contract

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
assert SUPPORTED == contract.ENCODINGS, "the decoders and the contract's encodings disagree"


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


def decode(encoding: str, height: int, width: int, step: int, data, max_pixels: int) -> tuple[np.ndarray, str]:
    """Any frame the node takes -> an `(H, W, C)` uint8 view and its layout (an encoding of `ENCODINGS`).

    `encoding` is a sensor_msgs/Image encoding, or `contract.COMPRESSED` for a CompressedImage payload (jpeg, png;
    `height`, `width` and `step` are then not used). Raises `ImageError` naming what is wrong; a frame over
    `max_pixels` is refused before anything is allocated for it.
    """
    if encoding == contract.COMPRESSED:
        return decode_compressed(data, max_pixels)
    check_pixel_count(height, width, max_pixels)
    return image_view(encoding, height, width, step, data), converted_encoding(encoding)
