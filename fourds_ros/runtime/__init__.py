"""Inference backends behind one interface: `create_backend(name, ...)` -> `Backend.run(window, queries)`.

- `torch`: the reference (CPU, or CUDA with bf16/fp16 autocast).
- `onnxruntime`: the embedded default on CPU (fp32, or an int8 graph); the CUDA provider where installed.
- `tensorrt`: engines built from the exported ONNX, cached (NVIDIA GPUs with TensorRT).
"""
from .backend import Backend, BackendError, IOSpec, Queries, pad_queries
from .batching import BatchedBackend, batch_sizes
from .selection import ALL_PRECISIONS, BACKENDS, DEFAULT_BACKEND, PRECISIONS, backend_options, check_choice, \
    create_backend, create_rig_backend, default_model_dir

__all__ = ["ALL_PRECISIONS", "BACKENDS", "DEFAULT_BACKEND", "PRECISIONS", "Backend", "BackendError", "BatchedBackend",
           "IOSpec", "Queries", "backend_options", "batch_sizes", "check_choice", "create_backend",
           "create_rig_backend", "default_model_dir", "pad_queries"]
