"""ONNX Runtime: the embedded default on CPU; the CUDA execution provider where it is installed."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .backend import Backend, BackendError
from .graph_files import ExportError, read_record, spec_from_record


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, onnx_path: Path, *, threads: int = 0, device: str = "cpu", precision: str | None = None):
        """`precision` (fp32 / int8), when given, must be the graph's: an int8 file is not run by mistake."""
        import onnxruntime as ort

        onnx_path = Path(onnx_path)
        try:
            record = read_record(onnx_path)
        except ExportError as exc:
            raise BackendError(str(exc)) from None
        graph_precision = record["spec"].get("precision", "fp32")
        if precision is not None and precision != graph_precision:
            raise BackendError(f"{onnx_path} is an {graph_precision} graph but precision {precision!r} was asked "
                               f"for; export the {precision} graph (`fourds-ros export --precision {precision}`) "
                               f"or ask for {graph_precision}")
        available = ort.get_available_providers()
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise BackendError(f"device {device!r} asked for, but this onnxruntime has no CUDA provider "
                                   f"(available: {available})")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # Threads that spin waiting for the next run burn a core the geometric stage and the other cameras need;
        # inference is a small part of a window's work.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt graphs
            raise BackendError(f"onnxruntime cannot load {onnx_path}: {exc}") from None
        spec = spec_from_record(record)
        expected = {name: tuple(info["shape"]) for name, info in record["inputs"].items()}
        actual = {i.name: tuple(i.shape) for i in self.session.get_inputs()}
        if expected != actual:
            raise BackendError(f"{onnx_path}: graph inputs {actual} differ from its record {expected}")
        self.output_names = [o.name for o in self.session.get_outputs()]
        super().__init__(spec, f"onnxruntime {ort.__version__} {self.session.get_providers()[0]} {graph_precision} "
                               f"({threads or 'all'} threads) {onnx_path.name}")

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))
