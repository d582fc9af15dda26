"""Bundle adjustment in a process of its own, so that the frames keep being tracked while it solves (`Adjuster`
decides where a map is adjusted).

GTSAM's `optimize()` holds Python's interpreter lock for the whole solve (60-80 ms for 6 keyframes and a few
hundred points on this CPU; it was 200-280 ms with a Python factor a depth prior): in the node's process that would
stop the camera's subscription, its tracking and the inference worker's Python for as long, and a camera at 30 Hz
would lose frames. Here the map's recent keyframes and points are copied (`bundle_adjustment.problem`), solved in
a child process, and the solution is written back to what is still in the map when the next frame is tracked (as
ORB-SLAM's local mapping thread does beside its tracking). One adjustment at a time; a keyframe made meanwhile is
adjusted by the next, which starts as soon as the last one is back.

The child is started with `spawn` (a fork of a process running DDS threads is not safe) and is a daemon: it
ends with the node.
"""
from __future__ import annotations

import logging
import multiprocessing
import time
from multiprocessing.connection import Connection

import numpy as np

from . import bundle_adjustment
from .local_map import LocalMap
from .settings import EgomotionConfig


def _serve(connection: Connection) -> None:
    while True:
        try:
            job = connection.recv()
        except EOFError:
            return
        if job is None:
            return
        todo, args = job
        started = time.perf_counter()
        try:
            connection.send((bundle_adjustment.solve(todo, *args), time.perf_counter() - started))
        except Exception as exc:  # a failed solve costs its adjustment, never the process
            connection.send(exc)


class AdjustmentProcess:
    def __init__(self):
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), name="fourds-adjustment", daemon=True)
        self._process.start()
        child.close()
        self.busy = False

    def submit(self, todo: bundle_adjustment.Problem, *args) -> None:
        """Start solving `todo` (`bundle_adjustment.solve`'s other arguments follow); only when not `busy`."""
        self._connection.send((todo, args))
        self.busy = True

    def result(self, wait: bool = False):
        """(solution, seconds the solve took) of the adjustment in flight once it is back, else None; an exception if
        it failed."""
        if not self.busy or not (wait or self._connection.poll()):
            return None
        self.busy = False
        return self._connection.recv()

    def wait(self) -> None:
        """Until the adjustment in flight is back (a test's or a shutdown's; tracking never waits)."""
        if self.busy:
            self._connection.poll(None)

    def close(self) -> None:
        try:
            self._connection.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
        self._connection.close()


class Adjuster:
    """Where and when the egomotion's local map is bundle-adjusted: here and at once (offline scoring and tests:
    the same frames give the same poses), or in an `AdjustmentProcess` (the node)."""

    def __init__(self, config: EgomotionConfig, stats, log: logging.Logger, in_process: bool):
        self.config, self.stats, self.log = config, stats, log
        self.process = AdjustmentProcess() if in_process else None
        self._taken: LocalMap | None = None  # the map the adjustment in flight was taken from
        self._again = False  # a keyframe came while an adjustment was in flight
        self.seconds_here = 0.0  # spent adjusting and writing adjustments back in the caller's thread

    def request(self, local_map: LocalMap, k: np.ndarray) -> None:
        """Adjust the map's recent keyframes (a keyframe was added)."""
        config, started = self.config, time.perf_counter()
        args = (k, config.noise_px, config.depth_prior_sigma, config.depth_scale_sigma, config.adjustment_iterations)
        if self.process is None:
            bundle_adjustment.adjust(local_map, *args)
            self._count(time.perf_counter() - started)
        elif self.process.busy:
            self._again = True
        elif (todo := bundle_adjustment.problem(local_map)) is not None:
            self.process.submit(todo, *args)
            self._taken, self._again = local_map, False
        self.seconds_here += time.perf_counter() - started

    def collect(self, local_map: LocalMap, k: np.ndarray, tracked: np.ndarray) -> None:
        """An adjustment back from its process is written to the map it was taken from (not to one that replaced
        it since), which is then pruned (`tracked`: the live tracks' points); the next starts if keyframes came
        meanwhile."""
        answer = None if self.process is None else self.process.result()
        if answer is None:
            return
        started = time.perf_counter()
        if isinstance(answer, Exception):
            self.log.warning(f"egomotion: a bundle adjustment failed ({answer!r}); the map goes on without it")
        elif self._taken is local_map:
            solution, seconds = answer
            self._count(seconds)
            bundle_adjustment.apply(local_map, solution, k, self.config.noise_px)
            local_map.prune(tracked)
        self.seconds_here += time.perf_counter() - started
        if self._again and self._taken is local_map:
            self.request(local_map, k)

    def close(self) -> None:
        if self.process is not None:
            self.process.close()

    def _count(self, seconds: float) -> None:
        self.stats.adjustment_seconds += seconds
        self.stats.bundle_adjustments += 1
