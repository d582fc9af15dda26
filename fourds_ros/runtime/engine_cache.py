"""What the TensorRT backend decides without TensorRT or a GPU: build settings per TensorRT version, the engine
cache (keys, checksums, atomic writes, pruning) and the check of an engine's inputs and outputs.

Kept apart from `tensorrt_backend.py` so that all of it is tested on machines without TensorRT (which is every
machine this project is built on); the backend only adds the calls into TensorRT and CUDA.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backend import BackendError
from .graph_files import atomic_write, cache_root, remove_leftovers

log = logging.getLogger("fourds_ros.runtime.tensorrt")

PRECISIONS = ("fp16", "fp32")
# Pruning defaults: engines are 2-4x their ONNX graph and one is built per (graph, GPU, TensorRT, precision).
MAX_CACHE_BYTES = 8 << 30
MAX_AGE_DAYS = 90.0


def default_cache_dir() -> Path:
    return Path(os.environ.get("FOURDS_ENGINE_CACHE") or cache_root() / "engines")


def parse_version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    if not match:
        raise BackendError(f"cannot read the TensorRT version {text!r}")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class BuildSettings:
    """How to build an engine of `precision` with one TensorRT version (TensorRT 10 and 11 Python API)."""

    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED
    set_flags: tuple[str, ...]  # BuilderFlag names to set
    clear_flags: tuple[str, ...]  # BuilderFlag names to clear (when the version has them)
    note: str = ""  # said once in the log (a deprecated path still in use)


def build_settings(version: str, precision: str) -> BuildSettings:
    """The settings for `precision` on TensorRT `version`, or a BackendError saying why it cannot be built.

    - 8.x and older: `create_network(0)` would mean an implicit-batch network: refused.
    - 10.0-10.11: weakly typed; fp16 through BuilderFlag.FP16.
    - 10.12-10.x: BuilderFlag.FP16 still works but is deprecated (weak typing is deprecated from 10.12).
    - 11.x and later: strongly typed only, no FP16 flag: the precision comes from the graph, and the exported
      graph is fp32, so only fp32 engines are built.
    fp32 engines clear TF32, which TensorRT otherwise enables for fp32 matmuls and convolutions: an engine
    called fp32 computes in fp32.
    """
    if precision not in PRECISIONS:
        raise BackendError(f"unknown TensorRT precision {precision!r}; choose from {list(PRECISIONS)}")
    major, minor = parse_version(version)
    if major < 10:
        raise BackendError(f"TensorRT {version} is not supported: the tensorrt backend is written for the TensorRT "
                           f"10 and 11 APIs (explicit-batch networks, named I/O tensors); install TensorRT >= 10 "
                           f"or use backend 'onnxruntime'")
    clear = ("TF32",) if precision == "fp32" else ()
    if major >= 11:
        if precision == "fp16":
            raise BackendError(f"TensorRT {version} builds strongly typed networks only and has no FP16 builder "
                               f"flag: an fp16 engine needs an fp16 ONNX graph, and the exported graph is fp32. "
                               f"Use precision 'fp32' (or TensorRT 10.x for fp16)")
        return BuildSettings(True, (), clear)
    if precision == "fp16":
        note = (f"TensorRT {version}: BuilderFlag.FP16 (weak typing) is deprecated from 10.12 and removed in 11; "
                f"fp16 engines will need an fp16 graph there") if minor >= 12 else ""
        return BuildSettings(False, ("FP16",), (), note)
    return BuildSettings(False, (), clear)


def device_index(device: str) -> int:
    """'cuda', 'cuda:1', 'gpu:1' or '1' -> the CUDA device ordinal."""
    match = re.fullmatch(r"(?:(?:cuda|gpu)(?::(\d+))?|(\d+))", device.strip().lower())
    if not match:
        raise BackendError(f"device {device!r} is not a CUDA device (use 'cuda' or 'cuda:N')")
    return int(match.group(1) or match.group(2) or 0)


def engine_key(onnx_sha256: str, trt_version: str, gpu_name: str, precision: str) -> str:
    return f"{onnx_sha256[:16]}-trt{trt_version}-{_slug(gpu_name)}-{precision}"


def timing_cache_name(trt_version: str, gpu_name: str) -> str:
    """One timing cache per TensorRT version and GPU, shared by the engines built there."""
    return f"timing-trt{trt_version}-{_slug(gpu_name)}.cache"


def io_mismatch(engine_io: dict[str, tuple[int, ...]], record: dict[str, Any]) -> str:
    """'' when the engine's tensors are exactly the graph record's inputs and outputs, else what differs."""
    expected = {**{n: tuple(i["shape"]) for n, i in record["inputs"].items()},
                **{n: tuple(o["shape"]) for n, o in record["outputs"].items()}}
    actual = {name: tuple(shape) for name, shape in engine_io.items()}
    if actual == expected:
        return ""
    parts = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            parts.append(f"{name} missing")
        elif name not in expected:
            parts.append(f"unexpected {name}")
        elif actual[name] != expected[name]:
            parts.append(f"{name} {actual[name]} instead of {expected[name]}")
    return "engine I/O differs from the ONNX record: " + ", ".join(parts)


class EngineCache:
    """Serialized engines under one directory: `<key>.engine` + `<key>.json` (checksum and provenance).

    A read checks the checksum; a write is atomic (a killed build leaves no engine that looks complete); using an
    engine refreshes its time, and `prune` removes the least recently used beyond a total size or age.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.directory / f"{key}.engine", self.directory / f"{key}.json"

    def load(self, key: str) -> bytes | None:
        """The engine's bytes if it is cached and intact; None (with a log line if it was there but bad)."""
        engine_path, meta_path = self.paths(key)
        if not engine_path.is_file():
            return None
        try:
            data = engine_path.read_bytes()
            meta = json.loads(meta_path.read_text())
            if meta.get("engine_sha256") != hashlib.sha256(data).hexdigest():
                raise ValueError("its checksum differs from its record")
        except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            log.warning("cached engine %s is stale or corrupt (%s); rebuilding", engine_path, exc)
            return None
        self.touch(key)
        return data

    def store(self, key: str, data: bytes, provenance: dict[str, Any]) -> Path:
        """Write the engine, then its record: an engine without a record is never loaded."""
        self.directory.mkdir(parents=True, exist_ok=True)
        engine_path, meta_path = self.paths(key)
        atomic_write(engine_path, data)
        meta = {"engine_sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), **provenance}
        atomic_write(meta_path, (json.dumps(meta, indent=2) + "\n").encode())
        return engine_path

    def touch(self, key: str) -> None:
        for path in self.paths(key):
            try:
                os.utime(path)
            except OSError:  # a read-only cache still serves its engines
                pass

    def prune(self, max_bytes: int = MAX_CACHE_BYTES, max_age_days: float = MAX_AGE_DAYS,
              keep: str | None = None) -> list[Path]:
        """Remove engines unused for `max_age_days`, then the least recently used until the rest fit in
        `max_bytes`; never `keep`. Returns the removed engine files."""
        if not self.directory.is_dir():
            return []
        remove_leftovers(self.directory)
        engines = sorted(self.directory.glob("*.engine"), key=lambda p: p.stat().st_mtime, reverse=True)
        now, total, removed = time.time(), 0, []
        for path in engines:
            size = path.stat().st_size
            stale = now - path.stat().st_mtime > max_age_days * 86400
            if path.stem != keep and (stale or total + size > max_bytes):
                for victim in (path, path.with_suffix(".json")):
                    victim.unlink(missing_ok=True)
                removed.append(path)
                continue
            total += size
        if removed:
            log.info("pruned %d engines from %s (older than %.0f days or over %.1f GiB)", len(removed),
                     self.directory, max_age_days, max_bytes / 2**30)
        return removed


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")
