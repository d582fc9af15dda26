"""int8 graphs for onnxruntime on CPU, quantised from an exported fp32 graph (onnx + onnxruntime, no torch).

MatMul/Gemm weights become int8 per output channel and activations are quantised per call (onnxruntime dynamic
quantisation; the integer matmuls use AVX512-VNNI / AVX2 / ARM dot-product units). CPU only: TensorRT does not
take these operators.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..model.model_dir import sha256_file
from .graph_files import read_record, work_directory, write_record


def quantize_int8(fp32_path: Path, fp32_record: dict[str, Any], out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The int8 twin of a checked fp32 graph, written as `out_dir/<stem>-int8.onnx`, and its record."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic
    out = Path(out_dir) / f"{Path(fp32_path).stem}-int8.onnx"
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
    record = {**fp32_record, "onnx_sha256": sha256_file(out), "spec": {**fp32_record["spec"], "precision": "int8"},
              "quantization": {"method": "onnxruntime dynamic", "weights": "int8, per output channel",
                               "activations": "uint8, range per call", "ops": ["MatMul", "Gemm"],
                               "onnxruntime": onnxruntime.__version__}}
    return out, record


def quantize_exported(fp32_path: Path, out_dir: Path) -> Path:
    """Quantise an exported fp32 graph (with its record) into `out_dir`; returns the int8 graph's path."""
    record = read_record(fp32_path)
    out_dir = Path(out_dir)
    with work_directory(out_dir, "quantize") as tmp:
        tmp_path, record = quantize_int8(fp32_path, record, Path(tmp))
        path = out_dir / tmp_path.name
        os.replace(tmp_path, path)
    write_record(path, record)
    return path
