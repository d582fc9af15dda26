"""The window scheduler: every `window_hop` accepted frames the newest window is copied into one pending slot,
and a worker thread processes it. The caller of `frame_accepted` never waits for inference. If processing is
slower than the hop, a newer window replaces the pending one (counted as dropped), so latency stays bounded
instead of queueing. A stream that pauses (`flush_after_s`) or ends (`flush`) has its last frames run too.

The lock (`lock`) guards the ring the intake writes and the pending slot; the worker holds it only to take a
window.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import numpy as np

from .intake import FrameIntake, Window
from .output import StreamStats
from .settings import StreamConfig


class WindowScheduler:
    def __init__(self, intake: FrameIntake, config: StreamConfig, process: Callable[[Window, np.ndarray], None],
                 stats: StreamStats, log: logging.Logger):
        self.intake, self.config, self.process, self.stats, self.log = intake, config, process, stats, log
        height, width = intake.model_size
        # Two window buffers: the pending one (written under the lock) and the one being processed.
        self._pending_buf = np.zeros((1, config.window_len, height, width, 3), np.uint8)
        self._active_buf = np.zeros_like(self._pending_buf)
        self._pending: Window | None = None
        self.lock = threading.Condition()
        self._requested_upto = -1  # the newest frame a requested window holds
        self._busy = False
        self._deferred = False  # a window of the new stream waits for the old stream's last one to be taken
        self._stop = False
        self._worker = threading.Thread(target=self._run, name="fourds-inference", daemon=True)
        self._worker.start()

    # Caller holds the lock --------------------------------------------------------
    def frame_accepted(self) -> None:
        """A frame went into the ring: request a window every `window_hop` frames, from the first frame on with
        `partial_windows` (the ring not yet full, its first frame repeated), else once the ring is full."""
        count = self.intake.count
        if count >= self.min_frames and (count - self.min_frames) % self.config.window_hop == 0:
            self._request()

    @property
    def min_frames(self) -> int:
        """The fewest frames a window may hold."""
        return 1 if self.config.partial_windows else self.config.window_len

    def finish_stream(self) -> None:
        """The stream restarts: its last frames are good, so a window covers them if there are enough."""
        last = self.intake.last_seq
        if last is not None and last > self._requested_upto:
            if self.intake.count >= self.min_frames:
                self._request()
            else:
                self.stats.frames_dropped += self.intake.count  # too few for a window: nothing can cover them
        self._requested_upto = -1

    # Any thread ------------------------------------------------------------------------
    def flush(self) -> None:
        """Run the newest window now for frames no window has covered yet (end of a recording)."""
        with self.lock:
            self._request_remaining()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no window is pending or running (offline evaluation: process every window)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while self._pending is not None or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.lock.wait(remaining)
        return True

    def close(self) -> None:
        with self.lock:
            self._stop = True
            self.lock.notify_all()
        self._worker.join(timeout=10)

    # Internals -------------------------------------------------------------------------
    def _request(self) -> None:
        if self._pending is not None and self._pending.epoch != self.intake.epoch:
            # The last window of a stream that ended holds frames no window of the new stream can cover: it
            # stays, and the new stream's window is made once the worker has taken it.
            self._deferred = True
            return
        if self._pending is not None:
            self.stats.windows_dropped += 1
        self._pending = self.intake.window(self._pending_buf[0])
        self._requested_upto = self._pending.infos[-1].seq
        self.stats.windows_requested += 1
        self.lock.notify()

    def _request_remaining(self) -> None:
        last = self.intake.last_seq
        if last is not None and self.intake.count >= self.min_frames and last > self._requested_upto:
            self._request()

    def _flush_if_idle(self) -> None:
        """The stream paused (or a bag ended) with frames after the last window: run the newest window now."""
        if self.stats.arrivals and time.monotonic() - self.stats.arrivals[-1] >= self.config.flush_after_s:
            self._request_remaining()

    def _run(self) -> None:
        while True:
            with self.lock:
                while self._pending is None and not self._stop:
                    if not self.lock.wait(timeout=self.config.flush_after_s or None):
                        self._flush_if_idle()
                if self._stop:
                    return
                window = self._pending
                self._pending = None
                self._busy = True
                self._pending_buf, self._active_buf = self._active_buf, self._pending_buf
                if self._deferred:
                    self._deferred = False
                    self._request()
            try:
                self.process(window, self._active_buf)
            except Exception:  # a failing window must not kill the stream
                self.log.exception("window processing failed; continuing with the next window")
            finally:
                with self.lock:
                    self._busy = False
                    self.lock.notify_all()
