"""Which backend, at which precision, with which options: the one place callers (node, CLI, eval) ask.

`create_backend` validates the choice and turns every start-up failure (unknown name, precision the
backend cannot run, bad model directory, failed export) into a `BackendError` naming the problem.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from .backend import Backend, BackendError
from .batching import BatchedBackend, batch_sizes

BACKENDS = ("torch", "onnxruntime", "tensorrt")
DEFAULT_BACKEND = "onnxruntime"
# The precisions each backend runs, its default first.
PRECISIONS = {"torch": ("fp32", "bf16", "fp16"), "onnxruntime": ("fp32", "int8"), "tensorrt": ("fp16", "fp32")}
ALL_PRECISIONS = ("fp32", "bf16", "fp16", "int8")

log = logging.getLogger("fourds_ros.runtime")


def default_model_dir() -> Path:
    """The shipped default model: this checkout's `models/default`, else the installed package's
    `share/fourds_ros/models/default` (a colcon install found through ament_index, or pip's data files)."""
    candidates = [Path(__file__).resolve().parents[2] / "models" / "default"]
    try:  # a sourced ROS 2 workspace: ament_index knows where the package's share folder is
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory("fourds_ros")) / "models" / "default")
    except (ImportError, LookupError, OSError, ValueError):  # no ament_index, no AMENT_PREFIX_PATH, not installed
        pass
    candidates.append(Path(sys.prefix) / "share" / "fourds_ros" / "models" / "default")
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate
    raise BackendError("the default model is not installed (looked in " + ", ".join(map(str, candidates)) +
                       "); give a model directory")


def check_choice(name: str, precision: str | None) -> str:
    """The precision to use (the backend's default for None); raises BackendError for a bad pair."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    allowed = PRECISIONS[name]
    if precision is None:
        return allowed[0]
    if precision not in allowed:
        raise BackendError(f"{precision!r} is not a precision of the {name} backend "
                           f"({', '.join(allowed)})")
    return precision


def backend_options(name: str, precision: str | None = None, *, device: str = "cpu", threads: int = 0,
                    cache_dir: str | Path | None = None, force_rebuild: bool = False) -> dict[str, Any]:
    """The keyword options `create_backend` passes to backend `name`, from settings every caller has.

    Settings a backend has no use for are dropped (threads for TensorRT, the engine cache for the others).
    """
    options: dict[str, Any] = {"precision": check_choice(name, precision)}
    if name == "torch":
        options.update(device=device, threads=threads or None)
    elif name == "onnxruntime":
        options.update(device=device, threads=threads)
    else:
        gpu = device if device.startswith("cuda") else "cuda:0"  # TensorRT runs on a GPU whatever the default says
        options.update(device=gpu, force_rebuild=force_rebuild, cache_dir=Path(cache_dir) if cache_dir else None)
    return options


def create_backend(name: str, model_dir: Path | None = None, *, onnx_path: Path | None = None,
                   clip: tuple[int, int, int] | None = None, heads: tuple[str, ...] | None = None,
                   float_input: bool = False, batch: int = 1, **options: Any) -> Backend:
    """Start a backend. ONNX-based backends take `onnx_path`, or export `model_dir` once and reuse it.

    `options` are those of `backend_options` (a missing precision means the backend's default).
    `float_input` makes the window float32 in [0, 1] instead of uint8 (parity checks on float clips).
    """
    options["precision"] = check_choice(name, options.get("precision"))
    if model_dir is None and (name == "torch" or onnx_path is None):
        raise BackendError(f"the {name} backend needs a model directory" + ("" if name == "torch" else
                                                                             " or an ONNX file"))
    if name == "torch" or onnx_path is None:
        # Only these paths read the model directory; its errors become BackendErrors. torch is imported only
        # by the torch backend and by an export (no cached graph for this model yet).
        from ..model import ConfigError, ModelDirError
        from .graph_files import ExportError
        from .graph_lookup import find_or_export
        try:
            if name == "torch":
                from .torch_backend import TorchBackend
                return TorchBackend(model_dir, clip=clip, heads=heads, float_input=float_input, batch=batch,
                                    **options)
            # The precision of an ONNX graph is fixed at export: onnxruntime runs the fp32 or the int8 graph.
            graph_precision = options["precision"] if name == "onnxruntime" else "fp32"
            onnx_path = find_or_export(model_dir, clip=clip, heads=heads, batch=batch, float_input=float_input,
                                       precision=graph_precision)
        except (ModelDirError, ConfigError, ExportError) as exc:
            raise BackendError(str(exc)) from None
        except ModuleNotFoundError as exc:
            raise BackendError(f"{model_dir} has no exported graph for this configuration yet, and exporting one "
                               f"needs {exc.name} (pip install 'fourds_ros[export]'), or export it on a machine "
                               f"that has it: fourds-ros export --model {model_dir} --out {model_dir}/onnx") from None
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend
        backend = OnnxRuntimeBackend(onnx_path, **options)
    else:
        from .tensorrt_backend import TensorRTBackend
        backend = TensorRTBackend(onnx_path, **options)
    if model_dir is not None:  # the model directory says which heads were trained, whatever a graph's record says
        from ..model.model_dir import ModelDirError, untrained_heads
        try:
            untrained = untrained_heads(model_dir)
        except ModelDirError as exc:
            backend.close()
            raise BackendError(str(exc)) from None
        backend.spec = replace(backend.spec, untrained=tuple(h for h in untrained if h in backend.spec.heads))
    return backend


def create_rig_backend(name: str, model_dir: Path | None, cameras: int, *, onnx_path: Path | None = None,
                       **options: Any) -> BatchedBackend:
    """The backends a rig of `cameras` needs to run its ready windows together (`batching.batch_sizes`).

    A given `onnx_path` is one graph of one batch: its rig runs windows one at a time."""
    sizes = batch_sizes(cameras) if onnx_path is None else (1,)
    first = create_backend(name, model_dir, onnx_path=onnx_path, **options)
    backends = {1: first}
    for size in sizes[1:]:
        try:
            backends[size] = first.with_batch(size) or create_backend(name, model_dir, batch=size, **options)
        except BackendError as exc:  # e.g. no graph of this batch and no torch to export one: still a rig
            log.warning(f"the rig runs its windows in batches of at most {max(backends)}: {exc}")
            break
    return BatchedBackend(backends)
