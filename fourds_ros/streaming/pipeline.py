"""The streaming core: camera frames in, per-frame depth, pose and tracks out. No ROS in here.

One camera frame's path, stage by stage (each stage owns its state and its reset):
1. `push` (the caller's thread, never waiting for inference) -> the frame's camera (`camera_stream.py`) ->
   `intake.py`: check, decode raw or compressed, shrink, rectify, write the model's ring and the geometry's grey
   frames;
2. `scheduler.py`: every `window_hop` accepted frames the camera's newest window waits for the worker thread
   (a newer one replaces a window still waiting);
3. on the worker: the windows of every camera that are waiting run through the backend in one batch
   (`runtime/batching.py`); `model_stage.py` stitches each camera's depth, readout poses and tracks across
   its windows;
4. `geometry_stage.py`: egomotion, depth fusion and point refinement at camera resolution, each camera on its
   own thread when several wait;
5. `on_output`, once per frame, with the frame's own stamp, frame id and camera.

A frame's pose goes to `on_motion` once: by default as the frame arrives (step 1, the caller's thread: the
geometry stage tracks it against the local map, `GeometryStage.track`), else just before its `on_output`. The
frame's `on_output` carries the same pose again (depth fusion and scoring read it there).

Frames that leave the ring before any window covers them are counted as dropped.
"""
from __future__ import annotations

import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from ..runtime import Backend, BatchedBackend, IOSpec
from .camera_stream import CameraStream
from .intake import Window
from .output import FrameOutput, StreamStats
from .scheduler import InferenceWorker, WindowScheduler
from .settings import StreamConfig


def trained_heads(spec: IOSpec, config: StreamConfig, log: logging.Logger) -> tuple[str, ...]:
    """The heads the stream uses: those the model was trained to give (an untrained head's output is noise
    that looks like an answer). Says once which are left out; a setting that needs one of them is an error."""
    heads = spec.trained_heads
    if not heads:
        raise ValueError(f"the model has no trained head (its heads {', '.join(spec.heads)} are all fresh weights): "
                         f"train its readouts first (docs/training.md)")
    if spec.untrained:
        log.warning(f"the model's {', '.join(spec.untrained)} head{'s' if len(spec.untrained) > 1 else ''} "
                    f"{'were' if len(spec.untrained) > 1 else 'was'} never trained: not used or published")
    if config.egomotion in ("readout", "fused") and "pose" not in heads:
        raise ValueError(f"egomotion {config.egomotion} needs the 4DS pose head, which this model "
                         f"{'never trained' if 'pose' in spec.heads else 'does not have'}")
    return heads


def check_camera_names(cameras: list[str] | tuple[str, ...]) -> None:
    """Each camera named once; only a rig of one may leave its camera unnamed (its topics then have no prefix)."""
    if not cameras:
        raise ValueError("give at least one camera")
    seen = set()
    for name in cameras:
        if name in seen:
            raise ValueError(f"camera {name!r} is named twice (each camera needs its own name)")
        seen.add(name)
        if not name and len(cameras) > 1:
            raise ValueError("an unnamed camera ('') in a rig of several (name each camera)")


class StreamingPipeline:
    """One model, one or more cameras (`cameras`: their names). The single-camera calls (`push`, `stats`, ...)
    go to the only camera; a rig's go through `camera(name)`. `on_motion` gets each frame's pose (see above);
    `live` (the node: frames come in real time) runs the egomotion's bundle adjustments in a child process beside
    the tracking, and tracks on arrival only the frames the tracking keeps up with (`GeometryStage.track`);
    without it (scoring, tests) every frame is tracked and adjusted at once: the same frames give the same poses."""

    def __init__(self, backend: Backend | BatchedBackend, config: StreamConfig,
                 on_output: Callable[[FrameOutput], None], log: logging.Logger | None = None,
                 cameras: tuple[str, ...] | list[str] = ("",), on_motion: Callable[[FrameOutput], None] | None = None,
                 live: bool = False):
        config.validate()
        check_camera_names(cameras)
        self.backend = backend if isinstance(backend, BatchedBackend) else BatchedBackend({backend.spec.batch: backend})
        spec = self.backend.spec
        if config.window_len != spec.clip[0]:
            raise ValueError(f"window_len {config.window_len} does not match the model's {spec.clip[0]} frames")
        self.log = log or logging.getLogger("fourds_ros.streaming")
        self.heads = trained_heads(spec, config, self.log)
        self.worker = InferenceWorker(config, self._process, self.log)
        self.cameras = {name: CameraStream(name, spec, self.heads, config, self.worker, on_output, self.log,
                                           on_motion, live) for name in cameras}
        self._camera_of = {camera.scheduler: camera for camera in self.cameras.values()}
        self._only = next(iter(self.cameras.values())) if len(self.cameras) == 1 else None
        # Each camera's geometry on its own thread: OpenCV and numpy release the GIL, so a rig uses the cores.
        self._geometry_threads = ThreadPoolExecutor(len(cameras), "fourds-geometry") if len(cameras) > 1 else None

    def camera(self, name: str | None = None) -> CameraStream:
        """A camera by name; without a name, the only one."""
        if name is not None:
            return self.cameras[name]
        if self._only is None:
            raise ValueError(f"this pipeline has {len(self.cameras)} cameras: name one")
        return self._only

    # The single camera's calls ------------------------------------------------
    def push(self, encoding: str, height: int, width: int, step: int, data, stamp_ns: int, frame_id: str,
             received_ns: int | None = None) -> None:
        """See `CameraStream.push`."""
        self.camera().push(encoding, height, width, step, data, stamp_ns, frame_id, received_ns)

    def set_camera_matrix(self, k: np.ndarray | None, distortion: tuple[str, np.ndarray] | None = None,
                          size: tuple[int, int] | None = None) -> None:
        self.camera().set_camera_matrix(k, distortion, size)

    @property
    def camera_matrix(self) -> np.ndarray | None:
        return self.camera().camera_matrix

    def add_box_seed(self, stamp_ns: int, box: np.ndarray, track_id: int | None = None) -> None:
        self.camera().add_box_seed(stamp_ns, box, track_id)

    def add_point_seed(self, stamp_ns: int, xy: np.ndarray, track_id: int | None = None) -> None:
        self.camera().add_point_seed(stamp_ns, xy, track_id)

    @property
    def stats(self) -> StreamStats:
        return self.camera().stats

    def health(self) -> dict[str, object]:
        return self.camera().health()

    # Every camera --------------------------------------------------------------
    def flush(self) -> None:
        """Run the newest window now for frames no window has covered yet (end of a recording)."""
        for camera in self.cameras.values():
            camera.flush()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no window is pending or running (offline evaluation: process every window)."""
        return self.worker.wait_idle(timeout)

    def close(self) -> None:
        self.worker.close()
        for camera in self.cameras.values():
            camera.geometry.close()
        if self._geometry_threads is not None:
            self._geometry_threads.shutdown()
        self.backend.close()

    # Worker side --------------------------------------------------------------
    def _process(self, batch: list[tuple[WindowScheduler, Window, np.ndarray]]) -> None:
        started = time.monotonic()
        jobs = []
        for scheduler, window, clip in batch:
            camera = self._camera_of[scheduler]
            try:
                jobs.append((camera, window, clip, *camera.queries(window, clip)))
            except Exception as exc:  # one camera's bad window must not cost the others theirs
                camera.log.error(f"window not run: {exc!r}")
        if not jobs:
            return
        outputs = self.backend.run([clip for _, _, clip, _, _ in jobs], [padded for _, _, _, padded, _ in jobs])
        finishes = [(camera.finish, window, out, track_queries, started)
                    for (camera, window, _, _, track_queries), out in zip(jobs, outputs)]
        if self._geometry_threads is None or len(finishes) == 1:
            results = [_guarded(*job) for job in finishes]
        else:
            results = list(self._geometry_threads.map(lambda job: _guarded(*job), finishes))
        for (camera, *_), error in zip(jobs, results):
            if error:
                camera.log.error(f"window processing failed; continuing with the next window\n{error}")


def _guarded(finish, *args) -> str:
    """Run `finish(*args)`; the traceback of what it raised, else ''."""
    try:
        finish(*args)
    except Exception:
        return traceback.format_exc()
    return ""
