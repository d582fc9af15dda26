"""TensorRT: engines built from the exported ONNX with the TensorRT 10/11 Python API, cached on disk.

Written to NVIDIA's TensorRT 10 and 11 Python API documentation and never run on the machines this project is
built on (TensorRT cannot be installed there, and they have no GPU). Everything that can be decided without
TensorRT (build settings per version, cache keys, checksums, pruning, the I/O check) is in `engine_cache.py` and
tested there. Device memory, pinned host buffers and the stream come from NVIDIA's CUDA Python bindings
(`cuda-python`), not from PyTorch, so a Jetson deployment needs neither torch nor a CUDA build of it.

Cache key: ONNX sha256 + TensorRT version + GPU name + precision. A cached engine is checksummed, deserialised
and its inputs and outputs checked against the ONNX record before use; a new engine is checked the same way
before it is written to the cache, so a mismatch never lands there.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from .backend import Backend, BackendError
from .engine_cache import PRECISIONS, EngineCache, build_settings, default_cache_dir, device_index, engine_key, \
    io_mismatch, log, timing_cache_name
from .graph_files import ExportError, atomic_write, read_record, spec_from_record

__all__ = ["PRECISIONS", "TensorRTBackend"]


def import_tensorrt():
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:
        raise BackendError(f"the tensorrt backend needs the TensorRT Python package and libnvinfer ({exc}); "
                           "use backend 'onnxruntime' or 'torch' on machines without TensorRT") from None
    return trt


def import_cudart():
    """The CUDA runtime bindings of cuda-python (`cuda.bindings.runtime` from 12.6, `cuda.cudart` before)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise BackendError(f"the tensorrt backend needs NVIDIA's CUDA Python bindings ({exc}): "
                               f"pip install cuda-python (or 'fourds_ros[tensorrt]')") from None
    return cudart


class CudaRuntime:
    """The few CUDA runtime calls the backend makes, with errors turned into BackendErrors."""

    def __init__(self, device: int):
        self.cudart = import_cudart()
        self.device = device
        self.call("cudaSetDevice", device)

    def call(self, name: str, *args):
        result = getattr(self.cudart, name)(*args)
        err, values = result[0], result[1:]
        if err != self.cudart.cudaError_t.cudaSuccess:
            raise BackendError(f"CUDA {name} failed on device {self.device}: {err}")
        return values[0] if len(values) == 1 else values

    def device_name(self) -> str:
        name = self.call("cudaGetDeviceProperties", self.device).name
        return name.decode(errors="replace").rstrip("\0") if isinstance(name, bytes) else str(name)

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, np.ndarray]:
        """Page-locked host memory (fast asynchronous copies) and a numpy view of it."""
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        ptr = self.call("cudaMallocHost", nbytes)
        raw = (ctypes.c_uint8 * nbytes).from_address(int(ptr))
        return ptr, np.frombuffer(raw, dtype=np.uint8)[: int(np.prod(shape)) * np.dtype(dtype).itemsize] \
            .view(dtype).reshape(shape)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, onnx_path: Path, *, precision: str = "fp16", cache_dir: Path | None = None,
                 workspace_mib: int = 4096, force_rebuild: bool = False, device: str = "cuda:0"):
        trt = import_tensorrt()
        settings = build_settings(trt.__version__, precision)
        self.trt = trt
        self.cuda = CudaRuntime(device_index(device))
        onnx_path = Path(onnx_path)
        try:
            self.record = read_record(onnx_path)
        except ExportError as exc:
            raise BackendError(str(exc)) from None
        if self.record["spec"].get("precision", "fp32") != "fp32":
            raise BackendError(f"{onnx_path} is an onnxruntime int8 graph; TensorRT builds its engines from the "
                               f"fp32 export (precision fp16 or fp32)")
        gpu = self.cuda.device_name()
        self.key = engine_key(self.record["onnx_sha256"], trt.__version__, gpu, precision)
        self.cache = EngineCache(cache_dir or default_cache_dir())
        self.engine_path = self.cache.paths(self.key)[0]
        self.timing_path = self.cache.directory / timing_cache_name(trt.__version__, gpu)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = None if force_rebuild else self._load_cached()
        if self.engine is None:
            self.engine = self._build(onnx_path, settings, precision, workspace_mib)
        self.cache.prune(keep=self.key)
        self.context = self.engine.create_execution_context()
        self.stream = self.cuda.call("cudaStreamCreate")
        self._allocate()
        super().__init__(spec_from_record(self.record),
                         f"tensorrt {trt.__version__} {precision} on {gpu} (device {self.cuda.device}, "
                         f"{self.engine_path.name})")

    # Engines ----------------------------------------------------------------
    def _load_cached(self):
        data = self.cache.load(self.key)
        if data is None:
            return None
        engine = self.runtime.deserialize_cuda_engine(data)
        problem = "TensorRT could not deserialise it" if engine is None else io_mismatch(self._shapes(engine),
                                                                                        self.record)
        if problem:
            log.warning("cached engine %s is stale or corrupt (%s); rebuilding", self.engine_path, problem)
            return None
        log.info("loaded cached TensorRT engine %s", self.engine_path)
        return engine

    def _build(self, onnx_path: Path, settings, precision: str, workspace_mib: int):
        trt = self.trt
        if settings.note:
            log.warning(settings.note)
        log.info("building TensorRT %s engine from %s (this takes a while once; cached at %s)",
                 precision, onnx_path, self.engine_path)
        builder = trt.Builder(self.logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if settings.strongly_typed else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        # From the file path, so weights stored as external data beside a large graph are found.
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
        for flag in settings.set_flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        for flag in settings.clear_flags:
            if hasattr(trt.BuilderFlag, flag):
                config.clear_flag(getattr(trt.BuilderFlag, flag))
        timing_path = self.timing_path
        cached = timing_path.read_bytes() if timing_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(cached), False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
        data = bytes(serialized)
        engine = self.runtime.deserialize_cuda_engine(data)
        problem = "TensorRT could not deserialise the engine it built" if engine is None else \
            io_mismatch(self._shapes(engine), self.record)
        if problem:  # checked before caching: a bad engine is never written
            raise BackendError(f"{onnx_path}: {problem}")
        try:
            self.cache.store(self.key, data, {"onnx": str(onnx_path), "onnx_sha256": self.record["onnx_sha256"],
                                              "precision": precision, "tensorrt": trt.__version__})
            atomic_write(timing_path, bytes(config.get_timing_cache().serialize()))
        except OSError as exc:  # a read-only or full cache: the engine still runs, it is rebuilt next start
            log.error("cannot write the engine cache %s (%s); the engine is kept in memory only",
                      self.cache.directory, exc)
        return engine

    def _shapes(self, engine) -> dict[str, tuple[int, ...]]:
        return {name: shape for name, (_, shape, _) in self._io(engine).items()}

    def _io(self, engine) -> dict[str, tuple[bool, tuple[int, ...], np.dtype]]:
        trt = self.trt
        out = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            out[name] = (is_input, tuple(engine.get_tensor_shape(name)), np.dtype(trt.nptype(engine.get_tensor_dtype(name))))
        return out

    # Execution --------------------------------------------------------------
    def _allocate(self) -> None:
        """One device buffer and one pinned host buffer per tensor, bound to the context once."""
        self.inputs, self.outputs, self._allocations = {}, {}, []
        for name, (is_input, shape, dtype) in self._io(self.engine).items():
            nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
            device = self.cuda.call("cudaMalloc", nbytes)
            host_ptr, host = self.cuda.pinned(shape, dtype)
            self._allocations.append((device, host_ptr))
            self.context.set_tensor_address(name, int(device))
            (self.inputs if is_input else self.outputs)[name] = (host, host_ptr, device, nbytes)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        kinds = self.cuda.cudart.cudaMemcpyKind
        for name, (host, host_ptr, device, nbytes) in self.inputs.items():
            host[...] = feeds[name]
            self.cuda.call("cudaMemcpyAsync", device, host_ptr, nbytes, kinds.cudaMemcpyHostToDevice, self.stream)
        if not self.context.execute_async_v3(int(self.stream)):
            raise BackendError(f"TensorRT execution failed for {self.engine_path.name}")
        for host, host_ptr, device, nbytes in self.outputs.values():
            self.cuda.call("cudaMemcpyAsync", host_ptr, device, nbytes, kinds.cudaMemcpyDeviceToHost, self.stream)
        self.cuda.call("cudaStreamSynchronize", self.stream)
        return {name: host.copy() for name, (host, *_) in self.outputs.items()}

    def close(self) -> None:
        self.context = self.engine = None
        for device, host_ptr in getattr(self, "_allocations", []):
            self.cuda.cudart.cudaFree(device)
            self.cuda.cudart.cudaFreeHost(host_ptr)
        self._allocations, self.inputs, self.outputs = [], {}, {}
        if getattr(self, "stream", None) is not None:
            self.cuda.cudart.cudaStreamDestroy(self.stream)
            self.stream = None
