"""ONNX export: one static-shape graph per (clip, heads, batch), with a JSON record beside it (`graph_files.py`)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ..model import load_model_dir
from ..model.model_dir import WEIGHTS_FILE, sha256_file, untrained_heads
from .graph import InferenceGraph
from .graph_files import ExportError, GraphSpec, work_directory, write_record
from .quantize import quantize_int8

# Opset 20 has a native Gelu(approximate="tanh"): ~10% faster in onnxruntime than the decomposed form.
DEFAULT_OPSET = 20
# fp32: the model as trained. int8: see quantize.py.
PRECISIONS = ("fp32", "int8")
# Protobuf cannot hold a message over 2 GiB: a graph whose files pass this keeps its weights in one data file
# beside it (`<stem>.onnx.data`, ONNX external data), which onnxruntime and TensorRT's parser read from the path.
EXTERNAL_DATA_ABOVE_BYTES = 2**31 - 2**27


def export_onnx(model_dir: Path, out_dir: Path, clip: tuple[int, int, int] | None = None,
                heads: tuple[str, ...] | None = None, batch: int = 1, opset: int = DEFAULT_OPSET,
                dynamo: bool = False, float_input: bool = False, precision: str = "fp32") -> Path:
    """Export `model_dir` to `out_dir/<stem>.onnx` (+ `<stem>.json`) and return the ONNX path."""
    import onnx

    if precision not in PRECISIONS:
        raise ExportError(f"unknown ONNX precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    model_dir = Path(model_dir)
    model = load_model_dir(model_dir).at_clip(clip)
    graph = InferenceGraph(model, heads, float_input).eval()
    cfg = model.config
    spec = GraphSpec((cfg.clip.frames, cfg.clip.height, cfg.clip.width), graph.heads, batch, float_input)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = graph.example_inputs(batch)
    with work_directory(out_dir, "export") as tmp:
        tmp_path = Path(tmp) / f"{spec.stem}.onnx"
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, inputs, str(tmp_path), input_names=graph.input_names,
                              output_names=graph.output_names, opset_version=opset, dynamo=dynamo)
        external = _gather_external_data(Path(tmp), tmp_path)
        onnx.checker.check_model(str(tmp_path), full_check=True)
        loaded = onnx.load(str(tmp_path), load_external_data=False)
        record = {
            "format": "fourds-onnx/1",
            "onnx_sha256": sha256_file(tmp_path),
            "opset": max(o.version for o in loaded.opset_import if o.domain in ("", "ai.onnx")),
            "inputs": {i.name: _shape(i) for i in loaded.graph.input},
            "outputs": {o.name: _shape(o) for o in loaded.graph.output},
            "spec": spec.as_record(),
            "video_input": "float32 in [0, 1]" if float_input else "uint8 RGB, divided by 255 in the graph",
            "max_queries": {h: cfg.heads[h].max_queries for h in ("points", "boxes") if h in graph.heads},
            "model_config": cfg.to_dict(),
            "source_weights_sha256": sha256_file(model_dir / WEIGHTS_FILE),
            "untrained_heads": [h for h in untrained_heads(model_dir) if h in graph.heads],
            "exporter": {"torch": torch.__version__, "dynamo": dynamo},
        }
        if external is not None:
            record["external_data"] = {"file": external.name, "sha256": sha256_file(external)}
        if precision == "int8":
            if external is not None:
                raise ExportError(f"{spec.stem}: int8 quantisation of graphs over 2 GB is not supported; use fp32")
            tmp_path, record = quantize_int8(tmp_path, record, Path(tmp))
        onnx_path = out_dir / tmp_path.name
        # Data file, then graph, then record: a process killed in between leaves a graph without a (matching)
        # record, which is never used and is exported again.
        if external is not None:
            os.replace(external, out_dir / external.name)
        os.replace(tmp_path, onnx_path)
    write_record(onnx_path, record)
    return onnx_path


def _gather_external_data(directory: Path, onnx_path: Path) -> Path | None:
    """A graph too large for one protobuf file -> the graph plus one `<name>.data` file; None if it fits.

    The exporter writes a large model's tensors as many files beside the graph; they become one file, so the
    graph travels and is checksummed as two files.
    """
    import onnx
    total = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    if total <= EXTERNAL_DATA_ABOVE_BYTES:
        return None
    model = onnx.load(str(onnx_path))  # with its external tensors, wherever the exporter put them
    data = onnx_path.with_name(f"{onnx_path.name}.data")
    for leftover in directory.iterdir():
        if leftover.is_file():
            leftover.unlink()
    onnx.save_model(model, str(onnx_path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    return data


def _shape(value_info: Any) -> dict[str, Any]:
    t = value_info.type.tensor_type
    import onnx
    return {"dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
            "shape": [d.dim_value for d in t.shape.dim]}
