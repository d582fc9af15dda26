"""One interface over the torch, ONNX Runtime and TensorRT backends."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


class BackendError(RuntimeError):
    """A backend cannot start (missing library, file, device) or was given inputs it cannot take."""


@dataclass(frozen=True)
class IOSpec:
    """The fixed shapes of one backend instance."""

    batch: int
    clip: tuple[int, int, int]
    heads: tuple[str, ...]
    max_points: int = 0
    max_boxes: int = 0
    video_dtype: str = "uint8"
    untrained: tuple[str, ...] = ()  # heads the graph computes that were never trained (fresh weights)

    @property
    def trained_heads(self) -> tuple[str, ...]:
        """The heads whose outputs mean something: the only ones used and published."""
        return tuple(h for h in self.heads if h not in self.untrained)

    @property
    def video_shape(self) -> tuple[int, ...]:
        return (self.batch, *self.clip, 3)


@dataclass
class Queries:
    """Padded track queries and their valid masks, in the graph's fixed shapes."""

    points: np.ndarray | None = None
    point_valid: np.ndarray | None = None
    boxes: np.ndarray | None = None
    box_valid: np.ndarray | None = None


def pad_queries(spec: IOSpec, points: np.ndarray | None = None, boxes: np.ndarray | None = None) -> Queries:
    """`points` `(N, 3)` and `boxes` `(M, 5)` for one window -> the fixed-count arrays of `spec` (batch 1 each)."""
    out = Queries()
    for head, values, width, limit in (("points", points, 3, spec.max_points), ("boxes", boxes, 5, spec.max_boxes)):
        if head not in spec.heads:
            continue
        values = np.zeros((0, width), np.float32) if values is None else np.asarray(values, np.float32)
        if values.ndim != 2 or values.shape[1] != width:
            raise BackendError(f"{head} queries must be shaped (N, {width}), got {values.shape}")
        if len(values) > limit:
            raise BackendError(f"{len(values)} {head} queries exceed the graph's maximum of {limit}")
        padded = np.zeros((spec.batch, limit, width), np.float32)
        valid = np.zeros((spec.batch, limit), bool)
        padded[:, : len(values)] = values
        valid[:, : len(values)] = True
        if head == "points":
            out.points, out.point_valid = padded, valid
        else:
            out.boxes, out.box_valid = padded, valid
    return out


class Backend(ABC):
    """Runs one exported configuration. Inputs and outputs are host numpy arrays."""

    name: str = "backend"

    def __init__(self, spec: IOSpec, description: str):
        self.spec = spec
        self.description = description

    def run(self, video: np.ndarray, queries: Queries | None = None) -> dict[str, np.ndarray]:
        if video.dtype != np.dtype(self.spec.video_dtype) or video.shape != self.spec.video_shape:
            raise BackendError(f"{self.name}: expected a {self.spec.video_dtype} window shaped "
                               f"{self.spec.video_shape}, got {video.dtype} {video.shape}")
        queries = queries or pad_queries(self.spec)
        feeds = {"video": video}
        if "points" in self.spec.heads:
            feeds["point_queries"], feeds["point_valid"] = queries.points, queries.point_valid
        if "boxes" in self.spec.heads:
            feeds["box_queries"], feeds["box_valid"] = queries.boxes, queries.box_valid
        missing = [k for k, v in feeds.items() if v is None]
        if missing:
            raise BackendError(f"{self.name}: missing inputs {missing} (use pad_queries)")
        return self._run(feeds)

    def with_batch(self, batch: int) -> "Backend | None":
        """This backend taking `batch` windows a call, sharing its model; None where a graph's batch is fixed
        (a graph of that batch is then started on its own)."""
        return None

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ...

    def close(self) -> None:
        """Release the backend's resources (sessions, engines, device memory)."""
