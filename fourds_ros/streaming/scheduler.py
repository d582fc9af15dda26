"""Window scheduling: each camera's `WindowScheduler` copies its newest window into one pending slot every
`window_hop` accepted frames; one `InferenceWorker` thread takes the pending windows of every camera together
and processes them as one batch. The caller of `frame_accepted` never waits for inference. If processing is
slower than the hop, a newer window replaces a camera's pending one (counted as dropped), so latency stays
bounded instead of queueing, and a camera that fell behind has its newest window in the next batch. A stream
that pauses (`flush_after_s`) or ends (`flush`) has its last frames run too.

One lock (`InferenceWorker.lock`) guards every camera's ring and pending slot; the worker holds it only to take
the windows.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Callable

import numpy as np

from .intake import FrameIntake, Window
from .output import StreamStats
from .settings import StreamConfig


class InferenceWorker:
    """The thread that runs the windows of all cameras: `process` gets every window pending when it wakes."""

    def __init__(self, config: StreamConfig, process: Callable[[list[tuple["WindowScheduler", Window, np.ndarray]]],
                                                                   None], log: logging.Logger):
        self.config, self.process, self.log = config, process, log
        self.lock = threading.Condition()
        self.schedulers: list[WindowScheduler] = []
        self._busy = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="fourds-inference", daemon=True)
        self._thread.start()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no window is pending or running (offline evaluation: process every window)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while self._busy or any(s.pending for s in self.schedulers):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.lock.wait(remaining)
        return True

    def close(self) -> None:
        with self.lock:
            self._stop = True
            self.lock.notify_all()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        pause_s = self.config.flush_after_s
        while True:
            with self.lock:
                while not self._stop:
                    if pause_s > 0:  # every camera, each time: another camera's windows keep the worker awake
                        for scheduler in self.schedulers:
                            scheduler.flush_if_idle()
                    if any(s.pending for s in self.schedulers):
                        break
                    self.lock.wait(timeout=pause_s or None)
                if self._stop:
                    return
                batch = [scheduler.take() for scheduler in self.schedulers if scheduler.pending]
                self._busy = True
            try:
                self.process(batch)
            except Exception:  # a failing batch must not kill the streams
                # rclpy's loggers have no `exception`: the traceback goes into the line.
                self.log.error(f"window processing failed; continuing with the next windows\n"
                               f"{traceback.format_exc()}")
            finally:
                with self.lock:
                    self._busy = False
                    self.lock.notify_all()


class WindowScheduler:
    """One camera's windows: when to request one, and the slot it waits in for the worker."""

    def __init__(self, intake: FrameIntake, config: StreamConfig, stats: StreamStats, worker: InferenceWorker):
        self.intake, self.config, self.stats = intake, config, stats
        height, width = intake.model_size
        # Two window buffers: the pending one (written under the lock) and the one being processed.
        self._pending_buf = np.zeros((1, config.window_len, height, width, 3), np.uint8)
        self._active_buf = np.zeros_like(self._pending_buf)
        self._pending: Window | None = None
        self.lock = worker.lock
        self._requested_upto = -1  # the newest frame a requested window holds
        self._deferred = False  # a window of the new stream waits for the old stream's last one to be taken
        with self.lock:
            worker.schedulers.append(self)

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

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def finish_stream(self) -> None:
        """The stream restarts: its last frames are good, so a window covers them if there are enough."""
        last = self.intake.last_seq
        if last is not None and last > self._requested_upto:
            if self.intake.count >= self.min_frames:
                self._request()
            else:
                self.stats.frames_dropped += self.intake.count  # too few for a window: nothing can cover them
        self._requested_upto = -1

    def take(self) -> tuple["WindowScheduler", Window, np.ndarray]:
        """The worker takes the pending window; its clip stays untouched until the worker takes the next."""
        window = self._pending
        self._pending = None
        self._pending_buf, self._active_buf = self._active_buf, self._pending_buf
        if self._deferred:
            self._deferred = False
            self._request()
        return self, window, self._active_buf

    def flush_if_idle(self) -> None:
        """The stream paused (or a bag ended) with frames after the last window: run the newest window now."""
        if self.stats.arrivals and time.monotonic() - self.stats.arrivals[-1] >= self.config.flush_after_s:
            self._request_remaining()

    # Any thread ------------------------------------------------------------------------
    def flush(self) -> None:
        """Run the newest window now for frames no window has covered yet (end of a recording)."""
        with self.lock:
            self._request_remaining()

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
        self.lock.notify_all()

    def _request_remaining(self) -> None:
        last = self.intake.last_seq
        if last is not None and self.intake.count >= self.min_frames and last > self._requested_upto:
            self._request()
