"""Inference backends behind one interface: `create_backend(name, ...)` -> `Backend.run(window, queries)`.

- `torch`: the reference (CPU, or CUDA with bf16/fp16 autocast).
- `onnxruntime`: the embedded default on CPU (fp32, or an int8 graph); the CUDA provider where installed.
- `tensorrt`: engines built from the exported ONNX, cached (NVIDIA GPUs with TensorRT).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .backend import Backend, BackendError, IOSpec, Queries, pad_queries

BACKENDS = ("torch", "onnxruntime", "tensorrt")
DEFAULT_BACKEND = "onnxruntime"


def create_backend(name: str, model_dir: Path | None = None, *, onnx_path: Path | None = None,
                   clip: tuple[int, int, int] | None = None, heads: tuple[str, ...] | None = None,
                   float_input: bool = False, **options: Any) -> Backend:
    """Start a backend. ONNX-based backends take `onnx_path`, or export `model_dir` once and reuse it.

    `float_input` makes the window float32 in [0, 1] instead of uint8 (parity checks on float clips).
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if name == "torch":
        if model_dir is None:
            raise BackendError("the torch backend needs a model directory")
        from .torch_backend import TorchBackend
        return TorchBackend(model_dir, clip=clip, heads=heads, float_input=float_input, **options)
    # The precision of an ONNX graph is fixed at export: onnxruntime runs the fp32 or the int8 graph.
    graph_precision = options.pop("precision", "fp32") if name == "onnxruntime" else "fp32"
    if onnx_path is None:
        if model_dir is None:
            raise BackendError(f"the {name} backend needs an ONNX file or a model directory")
        from .export import ExportError, find_or_export
        try:
            onnx_path = find_or_export(model_dir, clip=clip, heads=heads, float_input=float_input,
                                       precision=graph_precision)
        except ExportError as exc:
            raise BackendError(str(exc)) from None
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend(onnx_path, precision=graph_precision, **options)
    from .tensorrt_backend import TensorRTBackend
    return TensorRTBackend(onnx_path, **options)


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Backend", "BackendError", "IOSpec", "Queries", "create_backend",
           "pad_queries"]
