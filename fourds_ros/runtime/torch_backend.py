"""The reference backend: the PyTorch model itself (CPU, or CUDA with optional bf16/fp16 autocast)."""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..model import load_model_dir, untrained_heads
from .backend import Backend, BackendError, IOSpec
from .graph import InferenceGraph

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model_dir: Path, *, clip: tuple[int, int, int] | None = None,
                 heads: tuple[str, ...] | None = None, batch: int = 1, device: str = "cpu",
                 precision: str = "fp32", threads: int | None = None, float_input: bool = False):
        if precision not in PRECISIONS:
            raise BackendError(f"unknown precision {precision!r}; choose from {list(PRECISIONS)}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} asked for, but torch sees no CUDA GPU")
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.autocast = PRECISIONS[precision]
        self.graph = InferenceGraph(load_model_dir(model_dir).at_clip(clip), heads, float_input).to(self.device).eval()
        cfg = self.graph.model.config
        spec = IOSpec(batch, (cfg.clip.frames, cfg.clip.height, cfg.clip.width), self.graph.heads,
                      cfg.heads["points"].max_queries if "points" in self.graph.heads else 0,
                      cfg.heads["boxes"].max_queries if "boxes" in self.graph.heads else 0,
                      "float32" if float_input else "uint8",
                      tuple(h for h in untrained_heads(model_dir) if h in self.graph.heads))
        super().__init__(spec, f"torch {torch.__version__} on {self.device} ({precision})")

    def with_batch(self, batch: int) -> "TorchBackend":
        """The same model (shared, not copied) taking `batch` windows a call."""
        other = copy.copy(self)
        other.spec = replace(self.spec, batch=batch)
        return other

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = [torch.from_numpy(feeds[name]).to(self.device, non_blocking=True) for name in self.graph.input_names]
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.autocast or torch.float32,
                                                    enabled=self.autocast is not None):
            outputs = self.graph(*inputs)
        return {name: out.float().cpu().numpy() for name, out in zip(self.graph.output_names, outputs)}
