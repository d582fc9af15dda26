"""Frame intake, the first stage: a camera frame in any encoding is checked and decoded (`images.py`), shrunk
to what the model and the geometry need, rectified, and written into the model's ring and the geometric
stage's grey frames. It knows the stream's identity (image size, stamps) and says when the stream restarted.

`prepare` runs on the subscription thread without a lock; `admit` and `window` run under the scheduler's lock.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from .. import images
from .camera import PixelMap, Rectifier
from .frames import FrameInfo, FramePreprocessor, FrameRing, GeometryFrames, geometry_size, shrink, shrink_factor, \
    shrink_map
from .output import StreamStats
from .settings import StreamConfig


@dataclass
class Prepared:
    """A decoded frame, shrunk (and rectified), ready for the ring."""

    view: np.ndarray  # (h, w, c) uint8
    layout: str  # its encoding (one of `images.ENCODINGS`)
    size: tuple[int, int]  # (height, width) of the camera image
    factor: int  # the shrink factor applied


@dataclass
class Window:
    """One window of the stream's newest frames, as the scheduler hands it to the model and geometry stages."""

    epoch: int  # the stream it belongs to (a restart starts a new one)
    infos: list[FrameInfo]
    pixel_map: PixelMap  # model pixels -> camera pixels
    source_size: tuple[int, int]  # (height, width) of the camera image
    requested_at: float
    camera_matrix: np.ndarray | None  # of the camera images after rectification; None: unknown
    padding: int = 0  # copies of the first frame in front of `infos` (a window of a stream's first frames)
    grey: np.ndarray | None = None  # (T, h, w) geometry-resolution frames of `infos`
    geometry_map: PixelMap | None = None  # geometry pixels -> camera pixels


class FrameIntake:
    def __init__(self, config: StreamConfig, clip: tuple[int, int, int], needs_geometry: bool, stats: StreamStats,
                 log: logging.Logger):
        frames, height, width = clip
        self.config, self.stats, self.log = config, stats, log
        self.model_size = (height, width)
        self.preprocess = FramePreprocessor(height, width, config.resize_policy)
        self.ring = FrameRing(config.window_len, height, width)
        self.geometry = GeometryFrames(config.window_len, config.geometry_pixels) if needs_geometry else None
        self.epoch = 0
        self._size: tuple[int, int] | None = None  # (height, width) of the current stream's camera images
        self._last_stamp: int | None = None
        self._received = 0  # frames received since the last restart (the stride counts them)
        self._view_size: tuple[int, int] | None = None  # (height, width) of the current stream's shrunk frames
        self._to_camera = shrink_map(1)  # shrunk frame pixels -> camera pixels
        self._camera_matrix: np.ndarray | None = None  # of the frames the model sees (camera_info K, rectified)
        self._rectifier: Rectifier | None = None  # works on the shrunk frames of a camera of `_rectified_size`
        self._rectified_size: tuple[int, int] | None = None

    # Subscription thread, no lock ---------------------------------------------
    def prepare(self, encoding: str, height: int, width: int, step: int, data) -> Prepared:
        """Decode (raw or `contract.COMPRESSED`), shrink and rectify one frame. Raises `ImageError`."""
        view, layout = images.decode(encoding, height, width, step, data, self.config.max_image_pixels)
        size = view.shape[:2]
        factor = self._shrink_factor(*size)
        view = shrink(view, factor)
        rectifier = self._rectifier
        if rectifier is not None and self._rectified_size == size:
            view = rectifier(view)
            if view.ndim == 2:
                view = view[..., None]
        return Prepared(view, layout, size, factor)

    def set_camera_matrix(self, k: np.ndarray | None, distortion: tuple[str, np.ndarray] | None = None,
                          size: tuple[int, int] | None = None) -> None:
        """The 3x3 intrinsics of the camera images (from camera_info); None or zero focal length: unknown.

        With `distortion` = (camera_info model, coefficients) and the image `size`, frames are undistorted before
        the model when `config.rectify` is set (a new calibration rebuilds the maps; the same one keeps them).
        """
        k = None if k is None else np.asarray(k, np.float64).reshape(3, 3)
        if k is None or k[0, 0] <= 0 or k[1, 1] <= 0:
            self._camera_matrix = None
            return
        rectifier, rectified_k = None, k
        if self.config.rectify and distortion is not None and size is not None and np.any(distortion[1]):
            # Frames are rectified after the shrink on arrival: maps for the shrunk size, the camera matrix of
            # the rectified frames back in camera pixels.
            to_camera = shrink_map(self._shrink_factor(*size))
            small_k = to_camera.intrinsics_to_model(k)
            small_size = (size[0] // int(to_camera.scale_y), size[1] // int(to_camera.scale_x))
            current = self._rectifier
            key = (distortion[0], tuple(small_k.ravel()), tuple(np.asarray(distortion[1], np.float64).ravel()),
                   small_size)
            rectifier = current if current is not None and current.key == key else \
                Rectifier(small_k, *distortion, small_size)
            rectified_k = to_camera.intrinsics_to_source(rectifier.k)
        self._rectifier, self._rectified_size = rectifier, None if rectifier is None else tuple(size)
        self._camera_matrix = rectified_k

    @property
    def camera_matrix(self) -> np.ndarray | None:
        """The intrinsics of the frames the model sees (after rectification)."""
        return self._camera_matrix

    @property
    def source_size(self) -> tuple[int, int] | None:
        """(height, width) of the current stream's camera images; None before the first."""
        return self._size

    # Under the scheduler's lock ---------------------------------------------------
    def restarts(self, size: tuple[int, int], stamp_ns: int) -> list[str]:
        """Why the stream restarts before a frame of this size and stamp (none: it continues)."""
        reasons = []
        if self._size is not None and size != self._size:
            reasons.append(f"image size changed from {self._size[1]}x{self._size[0]} to {size[1]}x{size[0]}")
        if self._last_stamp is not None and stamp_ns < self._last_stamp:
            reasons.append(f"stamps went backwards ({self._last_stamp} -> {stamp_ns} ns; bag loop?)")
        return reasons

    def restart(self) -> None:
        self.ring.reset()
        self.epoch += 1
        self._received = 0

    def admit(self, frame: Prepared, stamp_ns: int, frame_id: str) -> bool:
        """Write a frame into the ring; False (nothing written) for a repeated stamp or a frame the stride skips."""
        if self._last_stamp is not None and stamp_ns == self._last_stamp:
            self.stats.frames_rejected += 1
            self.log.warning(f"dropping a frame with a repeated stamp {stamp_ns} ns")
            return False
        self._size, self._last_stamp = frame.size, stamp_ns
        self._view_size, self._to_camera = frame.view.shape[:2], shrink_map(frame.factor)
        self._received += 1
        if (self._received - 1) % self.config.frame_stride:
            return False
        self.preprocess(frame.view, frame.layout, self.ring.next_slot())
        if self.geometry is not None:
            self.geometry.write(frame.view, frame.layout, self.ring.count)
        self.ring.commit(stamp_ns, frame_id)
        self.stats.frames_accepted += 1
        return True

    @property
    def count(self) -> int:
        """Frames in the ring since the last restart."""
        return self.ring.count

    @property
    def last_seq(self) -> int | None:
        last = self.ring.last
        return None if last is None else last.seq

    def window(self, out: np.ndarray) -> Window:
        """The newest `window_len` frames copied into `out` `(T, H, W, 3)`, with what the later stages need;
        fewer frames are padded in front (`Window.padding`)."""
        infos = self.ring.copy_window(self.config.window_len, out)
        return self._window(infos, self.config.window_len - len(infos))

    def arrival(self) -> Window:
        """The newest frame alone, for the geometric stage as it arrives (its grey frame; no model frames)."""
        return self._window([self.ring.last], 0)

    def _window(self, infos: list[FrameInfo], padding: int) -> Window:
        window = Window(self.epoch, infos, self.preprocess.pixel_map(*self._view_size).then(self._to_camera),
                        self._size, time.monotonic(), self._camera_matrix, padding)
        if self.geometry is not None:
            window.grey = self.geometry.copy_window([info.seq for info in infos])
            window.geometry_map = self.geometry.pixel_map().then(self._to_camera)
        return window

    def _shrink_factor(self, height: int, width: int) -> int:
        """Frames are shrunk on arrival to what the model (twice its size, for the final area resize) and the
        geometric stage (`geometry_pixels`) need."""
        model_h, model_w = self.model_size
        geometry_w = geometry_size(height, width, self.config.geometry_pixels)[1] if self.geometry is not None else 0
        need_w = max(2 * model_w, geometry_w)
        return shrink_factor(height, width, 2 * model_h, need_w)
