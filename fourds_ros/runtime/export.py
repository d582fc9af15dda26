"""ONNX export: one static-shape graph per (clip, heads, batch), with a JSON record beside it."""
from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..model import load_model_dir
from ..model.model_dir import WEIGHTS_FILE, sha256_file
from .backend import IOSpec
from .graph import InferenceGraph

# Opset 20 has a native Gelu(approximate="tanh"): ~10% faster in onnxruntime than the decomposed form.
DEFAULT_OPSET = 20
# fp32: the model as trained. int8: MatMul/Gemm weights int8 per output channel, activations quantised per call
# (onnxruntime dynamic quantisation; integer matmuls use AVX512-VNNI / AVX2 / ARM dot-product units). CPU only:
# TensorRT does not take these operators.
PRECISIONS = ("fp32", "int8")


class ExportError(RuntimeError):
    """An ONNX file or its record is missing, corrupt or does not match what was asked for."""


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
    spec = GraphSpec((cfg.clip.frames, cfg.clip.height, cfg.clip.width), graph.heads, batch, float_input, precision)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{spec.stem}.onnx"
    inputs = graph.example_inputs(batch)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        tmp_path = Path(tmp) / onnx_path.name
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, inputs, str(tmp_path), input_names=graph.input_names,
                              output_names=graph.output_names, opset_version=opset, dynamo=dynamo)
        onnx.checker.check_model(str(tmp_path), full_check=True)
        if precision == "int8":
            tmp_path = quantize_int8(tmp_path)
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
            "exporter": {"torch": torch.__version__, "dynamo": dynamo},
        }
        if precision == "int8":
            import onnxruntime
            record["quantization"] = {"method": "onnxruntime dynamic", "weights": "int8, per output channel",
                                      "activations": "uint8, range per call", "ops": ["MatMul", "Gemm"],
                                      "onnxruntime": onnxruntime.__version__}
        os.replace(tmp_path, onnx_path)
    onnx_path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return onnx_path


def quantize_int8(fp32_path: Path) -> Path:
    """The int8 twin of a checked fp32 graph, beside it (`<stem>-int8.onnx`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    out = fp32_path.with_name(f"{fp32_path.stem}-int8.onnx")
    # Only matmuls with a weight (the linear layers, most of the FLOPs): attention's activation-by-activation
    # matmuls, the softmax and the LayerNorms stay float, where quantisation would cost the most accuracy.
    # quantize_dynamic logs a hint to run its pre-processing first; that pass (symbolic shape inference) fails
    # on this graph's computed Reshape shapes and is not needed for MatMul weights, so the hint is muted.
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(str(fp32_path), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        logging.disable(logging.NOTSET)
    onnx.checker.check_model(str(out), full_check=True)
    return out


def _shape(value_info: Any) -> dict[str, Any]:
    t = value_info.type.tensor_type
    import onnx
    return {"dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
            "shape": [d.dim_value for d in t.shape.dim]}


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
    except json.JSONDecodeError as exc:
        raise ExportError(f"{record_path} is not valid JSON: {exc}") from None
    actual = sha256_file(onnx_path)
    if record.get("onnx_sha256") != actual:
        raise ExportError(f"{onnx_path} does not match its record {record_path.name} (sha256 {actual[:12]}, "
                          f"recorded {str(record.get('onnx_sha256'))[:12]}): the file is corrupt or was replaced")
    return record


def find_or_export(model_dir: Path, clip: tuple[int, int, int] | None = None, heads: tuple[str, ...] | None = None,
                   batch: int = 1, float_input: bool = False, precision: str = "fp32") -> Path:
    """The exported graph for this model and spec under `model_dir/onnx/`, exporting it if missing or stale."""
    from ..model.model_dir import load_model_config
    model_dir = Path(model_dir)
    config = load_model_config(model_dir)
    clip = tuple(clip) if clip else (config.clip.frames, config.clip.height, config.clip.width)
    heads = tuple(h for h in config.heads if heads is None or h in heads)
    wanted = GraphSpec(clip, heads, batch, float_input, precision).as_record()
    weights_sha = sha256_file(model_dir / WEIGHTS_FILE)
    out_dir = model_dir / "onnx"
    for candidate in sorted(out_dir.glob("*.onnx")) if out_dir.is_dir() else []:
        try:
            record = read_record(candidate)
        except ExportError:
            continue
        if record.get("source_weights_sha256") == weights_sha and record.get("spec") == wanted:
            return candidate
    return export_onnx(model_dir, out_dir, clip=clip, heads=heads, batch=batch, float_input=float_input,
                       precision=precision)


def spec_from_record(record: dict) -> IOSpec:
    spec, limits = record["spec"], record.get("max_queries", {})
    return IOSpec(int(spec["batch"]), tuple(spec["clip"]), tuple(spec["heads"]), int(limits.get("points", 0)),
                  int(limits.get("boxes", 0)), record["inputs"]["video"]["dtype"])
