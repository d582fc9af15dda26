"""TensorRT: engines built from the exported ONNX with the TensorRT 10 Python API, cached on disk.

Cache key: ONNX sha256 + TensorRT version + GPU name + precision. A matching
engine is loaded, never rebuilt, unless `force_rebuild`; an engine that fails
its checksum or deserialisation, or whose I/O shapes differ from the ONNX
record, is logged as stale/corrupt and rebuilt. I/O goes through preallocated
device buffers on one CUDA stream, with pinned host staging for the copies the
caller needs (numpy in, numpy out).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from .backend import Backend, BackendError
from .graph_files import ExportError, read_record, spec_from_record

log = logging.getLogger("fourds_ros.runtime.tensorrt")
PRECISIONS = ("fp32", "fp16")
DEFAULT_CACHE = Path(os.environ.get("FOURDS_ENGINE_CACHE", Path.home() / ".cache" / "fourds_ros" / "engines"))


def import_tensorrt():
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:
        raise BackendError(f"the tensorrt backend needs the TensorRT Python package and libnvinfer ({exc}); "
                           "use backend 'onnxruntime' or 'torch' on machines without TensorRT") from None
    return trt


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, onnx_path: Path, *, precision: str = "fp16", cache_dir: Path | None = None,
                 workspace_mib: int = 4096, force_rebuild: bool = False, device: str = "cuda:0"):
        if precision not in PRECISIONS:
            raise BackendError(f"unknown TensorRT precision {precision!r}; choose from {list(PRECISIONS)}")
        trt = import_tensorrt()
        import torch
        if not torch.cuda.is_available():
            raise BackendError("the tensorrt backend needs a CUDA GPU, and torch sees none")
        self.trt, self.torch = trt, torch
        self.device = torch.device(device)
        onnx_path = Path(onnx_path)
        try:
            self.record = read_record(onnx_path)
        except ExportError as exc:
            raise BackendError(str(exc)) from None
        if self.record["spec"].get("precision", "fp32") != "fp32":
            raise BackendError(f"{onnx_path} is an onnxruntime int8 graph; TensorRT builds its engines from the "
                               f"fp32 export (precision fp16 or fp32)")
        gpu = torch.cuda.get_device_name(self.device)
        key = f"{self.record['onnx_sha256'][:16]}-trt{trt.__version__}-{_slug(gpu)}-{precision}"
        cache_dir = Path(cache_dir or DEFAULT_CACHE)
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.engine_path = cache_dir / f"{key}.engine"
        self.timing_cache_path = cache_dir / f"timing-trt{trt.__version__}-{_slug(gpu)}.cache"
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = None if force_rebuild else self._load_cached()
        if self.engine is None:
            self.engine = self._build(onnx_path, precision, workspace_mib)
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        self._allocate()
        super().__init__(spec_from_record(self.record),
                         f"tensorrt {trt.__version__} {precision} on {gpu} ({self.engine_path.name})")

    # Engine cache -----------------------------------------------------------
    def _load_cached(self):
        meta_path = self.engine_path.with_suffix(".json")
        if not self.engine_path.is_file():
            return None
        try:
            data = self.engine_path.read_bytes()
            meta = json.loads(meta_path.read_text())
            if meta.get("engine_sha256") != hashlib.sha256(data).hexdigest():
                raise ValueError("checksum differs from its record")
            engine = self.runtime.deserialize_cuda_engine(data)
            if engine is None:
                raise ValueError("TensorRT could not deserialise it")
            self._check_io(engine)
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            log.warning("engine %s is stale or corrupt (%s); rebuilding", self.engine_path, exc)
            return None
        log.info("loaded cached TensorRT engine %s", self.engine_path)
        return engine

    def _build(self, onnx_path: Path, precision: str, workspace_mib: int):
        trt = self.trt
        log.info("building TensorRT %s engine from %s (this takes a while once; cached at %s)",
                 precision, onnx_path, self.engine_path)
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        cached = self.timing_cache_path.read_bytes() if self.timing_cache_path.is_file() else b""
        timing_cache = config.create_timing_cache(cached)
        config.set_timing_cache(timing_cache, False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
        data = bytes(serialized)
        _atomic_write(self.timing_cache_path, bytes(config.get_timing_cache().serialize()))
        _atomic_write(self.engine_path, data)
        _atomic_write(self.engine_path.with_suffix(".json"), json.dumps({
            "engine_sha256": hashlib.sha256(data).hexdigest(), "onnx": str(onnx_path),
            "onnx_sha256": self.record["onnx_sha256"], "precision": precision}, indent=2).encode())
        engine = self.runtime.deserialize_cuda_engine(data)
        self._check_io(engine)
        return engine

    def _io(self, engine) -> dict[str, tuple[bool, tuple[int, ...], np.dtype]]:
        trt = self.trt
        out = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            out[name] = (is_input, tuple(engine.get_tensor_shape(name)), np.dtype(trt.nptype(engine.get_tensor_dtype(name))))
        return out

    def _check_io(self, engine) -> None:
        expected = {**{n: tuple(i["shape"]) for n, i in self.record["inputs"].items()},
                    **{n: tuple(o["shape"]) for n, o in self.record["outputs"].items()}}
        actual = {name: shape for name, (_, shape, _) in self._io(engine).items()}
        if actual != expected:
            raise ValueError(f"engine I/O shapes {actual} do not match the ONNX record {expected}")

    # Execution --------------------------------------------------------------
    def _allocate(self) -> None:
        torch = self.torch
        self.inputs, self.outputs = {}, {}
        for name, (is_input, shape, dtype) in self._io(self.engine).items():
            tdtype = torch.from_numpy(np.zeros(0, dtype)).dtype
            device = torch.empty(shape, dtype=tdtype, device=self.device)
            host = torch.empty(shape, dtype=tdtype, pin_memory=True)
            self.context.set_tensor_address(name, device.data_ptr())
            (self.inputs if is_input else self.outputs)[name] = (host, device)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.cuda.stream(self.stream):
            for name, (host, device) in self.inputs.items():
                host.numpy()[...] = feeds[name]
                device.copy_(host, non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise BackendError(f"TensorRT execution failed for {self.engine_path.name}")
            for host, device in self.outputs.values():
                host.copy_(device, non_blocking=True)
        self.stream.synchronize()
        return {name: host.numpy().copy() for name, (host, _) in self.outputs.items()}

    def close(self) -> None:
        self.context = self.engine = None
        self.inputs = self.outputs = {}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
