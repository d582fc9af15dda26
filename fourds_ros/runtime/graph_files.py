"""Exported ONNX graphs on disk: what one computes (`GraphSpec`), their JSON records, atomic writes and caches.

Nothing here imports torch: a node running the onnxruntime backend on an already exported graph (the shipped
default model carries its fp32 graph) starts without it. Finding a model's graph is `graph_lookup.py`, writing
one `export.py` and `quantize.py`; all three build on this module and none on another.

Graphs live beside the model (`<model_dir>/onnx/`) or, when that directory cannot be written (an installed,
read-only share folder; a full disk), in the user's cache (`$FOURDS_CACHE_DIR`, default `~/.cache/fourds_ros`),
and as a last resort in a fresh temporary directory. Every file is written to a temporary name and renamed into
place, so a process killed mid-write leaves no file that looks complete; a record that does not match its graph
is ignored and the graph exported again.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model.model_dir import sha256_file
from .backend import IOSpec

log = logging.getLogger("fourds_ros.runtime.graph_files")


class ExportError(RuntimeError):
    """An ONNX file or its record is missing, corrupt or does not match what was asked for."""


def cache_root() -> Path:
    return Path(os.environ.get("FOURDS_CACHE_DIR") or Path.home() / ".cache" / "fourds_ros")


@dataclass(frozen=True)
class GraphSpec:
    """What one exported graph computes: the file name and the engine cache key derive from it."""

    clip: tuple[int, int, int]
    heads: tuple[str, ...]
    batch: int = 1
    float_input: bool = False
    precision: str = "fp32"

    @property
    def stem(self) -> str:
        t, h, w = self.clip
        suffix = ("-f32in" if self.float_input else "") + ("" if self.precision == "fp32" else f"-{self.precision}")
        return f"fourds-{t}x{h}x{w}-{'+'.join(self.heads)}-b{self.batch}{suffix}"

    def as_record(self) -> dict[str, Any]:
        return {"clip": list(self.clip), "heads": list(self.heads), "batch": self.batch,
                "float_input": self.float_input, "precision": self.precision}


def temporary_name(path: Path) -> Path:
    """Where `path` is written before it is renamed into place; the writer's pid marks it as its own."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def work_directory(parent: Path, purpose: str) -> tempfile.TemporaryDirectory:
    """A temporary directory inside `parent` (same filesystem: its files can be renamed into place)."""
    return tempfile.TemporaryDirectory(dir=parent, prefix=f".{purpose}-{os.getpid()}-")


def remove_leftovers(directory: Path) -> list[Path]:
    """Temporary files and directories of writers that died (SIGKILL, power loss) before renaming them."""
    removed = []
    for path in Path(directory).glob(".*") if Path(directory).is_dir() else []:
        match = re.fullmatch(r"\..+\.tmp-(\d+)|\.[a-z]+-(\d+)-.+", path.name)
        if match is None or _alive(int(match.group(1) or match.group(2))):
            continue
        try:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
        except OSError:
            pass
    if removed:
        log.info("removed %d leftovers of interrupted writes from %s", len(removed), directory)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write(path: Path, data: bytes) -> None:
    """`path` holds either its old content or all of `data`, whatever happens to this process."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_record(onnx_path: Path, record: dict[str, Any]) -> None:
    atomic_write(Path(onnx_path).with_suffix(".json"), (json.dumps(record, indent=2) + "\n").encode())


def read_record(onnx_path: Path) -> dict[str, Any]:
    """The JSON record of an exported graph, checked against the file it describes."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ExportError(f"ONNX file {onnx_path} does not exist")
    record_path = onnx_path.with_suffix(".json")
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{onnx_path} has no record {record_path.name}; re-export it with `fourds-ros export`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{record_path} is not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ExportError(f"{record_path} is not an export record (a JSON object)")
    actual = sha256_file(onnx_path)
    if record.get("onnx_sha256") != actual:
        raise ExportError(f"{onnx_path} does not match its record {record_path.name} (sha256 {actual[:12]}, "
                          f"recorded {str(record.get('onnx_sha256'))[:12]}): the file is corrupt or was replaced")
    external = record.get("external_data")
    if external:  # the weights of a graph over 2 GB, beside it
        data = onnx_path.with_name(external["file"])
        if not data.is_file():
            raise ExportError(f"{onnx_path} keeps its weights in {data.name}, which is missing")
        if sha256_file(data) != external.get("sha256"):
            raise ExportError(f"{data} does not match the record {record_path.name}: the file is corrupt or was "
                              f"replaced")
    return record


def spec_from_record(record: dict) -> IOSpec:
    spec, limits = record["spec"], record.get("max_queries", {})
    return IOSpec(int(spec["batch"]), tuple(spec["clip"]), tuple(spec["heads"]), int(limits.get("points", 0)),
                  int(limits.get("boxes", 0)), record["inputs"]["video"]["dtype"],
                  tuple(h for h in record.get("untrained_heads", ()) if h in spec["heads"]))
