"""The exported graph a model needs: found in its caches, or exported (or quantised) once where none is.

Graphs live beside the model (`<model_dir>/onnx/`) or, when that directory cannot be written (an installed,
read-only share folder; a full disk), in the user's cache (`$FOURDS_CACHE_DIR`, default `~/.cache/fourds_ros`),
and as a last resort in a fresh temporary directory, each failure logged with the directory's name. Exporting
imports torch (`export.py`); quantising an fp32 graph does not (`quantize.py`): both are imported only when a
graph is missing, so a node whose graph is cached starts without torch.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from ..model.model_dir import WEIGHTS_FILE, ModelDirError, load_model_config, sha256_file
from .graph_files import ExportError, GraphSpec, cache_root, read_record, remove_leftovers

log = logging.getLogger("fourds_ros.runtime.graph_lookup")


def graph_dirs(model_dir: Path, weights_sha256: str) -> list[Path]:
    """Where graphs of this model are looked for and written, in that order."""
    model_dir = Path(model_dir).resolve()
    return [model_dir / "onnx", cache_root() / "onnx" / f"{model_dir.name}-{weights_sha256[:16]}"]


def find_graph(directories: list[Path], wanted: GraphSpec, weights_sha256: str) -> Path | None:
    """The first graph in `directories` exported from these weights for `wanted`, with a record that checks."""
    for directory in directories:
        for candidate in sorted(directory.glob("*.onnx")) if directory.is_dir() else []:
            try:
                record = read_record(candidate)
            except (ExportError, OSError):
                continue
            if record.get("source_weights_sha256") == weights_sha256 and record.get("spec") == wanted.as_record():
                return candidate
    return None


def find_or_export(model_dir: Path, clip: tuple[int, int, int] | None = None, heads: tuple[str, ...] | None = None,
                   batch: int = 1, float_input: bool = False, precision: str = "fp32") -> Path:
    """The exported graph for this model and spec, exporting it (once) where none is cached.

    An int8 graph is quantised from the cached fp32 graph when there is one, without torch.
    """
    model_dir = Path(model_dir)
    config = load_model_config(model_dir)
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelDirError(f"model directory {model_dir} has no {WEIGHTS_FILE}")
    weights_sha = sha256_file(weights)
    clip = tuple(clip) if clip else (config.clip.frames, config.clip.height, config.clip.width)
    heads = tuple(h for h in config.heads if heads is None or h in heads)
    wanted = GraphSpec(clip, heads, batch, float_input, precision)
    directories = graph_dirs(model_dir, weights_sha)
    for directory in directories:
        remove_leftovers(directory)
    found = find_graph(directories, wanted, weights_sha)
    if found is not None:
        return found
    fp32 = find_graph(directories, GraphSpec(clip, heads, batch, float_input), weights_sha) \
        if precision == "int8" else None

    def write(out_dir: Path) -> Path:
        if fp32 is not None:
            from .quantize import quantize_exported
            return quantize_exported(fp32, out_dir)
        from .export import export_onnx
        return export_onnx(model_dir, out_dir, clip=clip, heads=heads, batch=batch, float_input=float_input,
                           precision=precision)

    return write_first_writable(directories, write, "the ONNX graph")


def write_first_writable(directories: list[Path], write, what: str) -> Path:
    """`write(directory)` into the first directory that takes it, else into a new temporary directory.

    A directory that cannot be written (read-only, full, not a directory) is named in an error log line.
    """
    for directory in directories:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return write(directory)
        except OSError as exc:
            log.error("cannot write %s to %s (%s); trying the next cache", what, directory, exc)
    fallback = Path(tempfile.mkdtemp(prefix="fourds_ros-cache-"))
    log.error("every cache directory failed; writing %s to the temporary directory %s (rebuilt on every start "
              "until a cache directory is writable)", what, fallback)
    return write(fallback)
