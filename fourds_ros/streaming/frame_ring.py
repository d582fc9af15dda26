"""A preallocated ring of the last N model-size frames with their stamps, ids and sequence numbers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
