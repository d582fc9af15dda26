"""Several windows through the model in one call: a camera rig's windows that are ready together.

The graphs have static shapes (the batch is in their file name), so a rig runs one backend per batch size it
needs: 1, the powers of two below the number of cameras, and that number. A set of k windows goes through the
largest batches that fit, never padded with empty windows: padding would cost as much as a real window.
"""
from __future__ import annotations

import numpy as np

from .backend import Backend, BackendError, IOSpec, Queries


def batch_sizes(cameras: int) -> tuple[int, ...]:
    """The batch sizes a rig of `cameras` runs: 1, 2, 4, ... below `cameras`, and `cameras`."""
    if cameras < 1:
        raise BackendError(f"a rig needs at least one camera, got {cameras}")
    sizes = {cameras}
    size = 1
    while size < cameras:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


class BatchedBackend:
    """Backends of one graph at several batch sizes, run as one: `run` takes any number of windows."""

    def __init__(self, backends: dict[int, Backend]):
        if 1 not in backends:
            raise BackendError("a batched backend needs a batch-1 backend")
        for size, backend in backends.items():
            if backend.spec.batch != size:
                raise BackendError(f"the batch-{size} backend's graph has batch {backend.spec.batch}")
        self.backends = dict(sorted(backends.items()))
        self.spec: IOSpec = self.backends[1].spec  # what one window looks like
        self.description = self.backends[1].description + (
            f"; batches of {', '.join(map(str, self.backends))}" if len(self.backends) > 1 else "")

    @property
    def max_batch(self) -> int:
        return max(self.backends)

    def run(self, videos: list[np.ndarray], queries: list[Queries]) -> list[dict[str, np.ndarray]]:
        """One output dict per window (batch axis 1, as a batch-1 backend gives), in the order given.

        `videos[i]` is a window `(1, T, H, W, 3)`, `queries[i]` its padded queries (`pad_queries` of `spec`)."""
        outputs: list[dict[str, np.ndarray]] = []
        start = 0
        while start < len(videos):
            size = max(s for s in self.backends if s <= len(videos) - start)
            chunk = slice(start, start + size)
            backend = self.backends[size]
            if size == 1:  # no copy into a batch
                outputs.append(backend.run(videos[start], queries[start]))
            else:
                out = backend.run(np.concatenate(videos[chunk]), _stacked(queries[chunk]))
                outputs += [{name: value[i: i + 1] for name, value in out.items()} for i in range(size)]
            start += size
        return outputs

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()


def _stacked(queries: list[Queries]) -> Queries:
    def cat(name: str):
        values = [getattr(q, name) for q in queries]
        return None if values[0] is None else np.concatenate(values)
    return Queries(cat("points"), cat("point_valid"), cat("boxes"), cat("box_valid"))
