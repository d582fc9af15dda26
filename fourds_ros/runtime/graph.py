"""The inference graph every backend runs: the raw window in, every head's tensors out.

Input contract, shared by the torch backend, the exported ONNX graph and the
TensorRT engine built from it:

- `video`: uint8 `(B, T, H, W, 3)` RGB, as the node's window buffer holds it;
  the conversion to float in [0, 1] happens inside the graph. (`float_input`
  graphs take float32 in [0, 1] instead, for parity checks against float clips.)
- `point_queries` float32 `(B, P, 3)` `(t, y, x)` and `point_valid` bool `(B, P)`;
  `box_queries` float32 `(B, K, 5)` `(t, x_min, y_min, x_max, y_max)` and
  `box_valid` bool `(B, K)`. P and K are the heads' `max_queries`, so one graph
  serves any number of tracks up to that count. Queries never attend to each
  other, so an invalid slot cannot change a valid one; its outputs are zeros
  with a visibility logit of `INVALID_LOGIT`.

Outputs are named as the model's (`depth`, `pose`, `points`,
`points_visible_logit`, `boxes`, `boxes_visible_logit`), see `model/readouts.py`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..model import FourDS

INVALID_LOGIT = -1.0e4
OUTPUT_ORDER = ("depth", "pose", "points", "points_visible_logit", "boxes", "boxes_visible_logit")


class InferenceGraph(nn.Module):
    def __init__(self, model: FourDS, heads: tuple[str, ...] | None = None, float_input: bool = False):
        super().__init__()
        self.model = model
        self.float_input = float_input
        available = tuple(model.config.heads)
        self.heads = tuple(h for h in available if heads is None or h in heads)
        missing = sorted(set(heads or ()) - set(available))
        if missing:
            raise ValueError(f"the model has no head(s) {missing}; it has {list(available)}")
        if not self.heads:
            raise ValueError("nothing to run: the model has no readout heads")

    @property
    def input_names(self) -> list[str]:
        names = ["video"]
        if "points" in self.heads:
            names += ["point_queries", "point_valid"]
        if "boxes" in self.heads:
            names += ["box_queries", "box_valid"]
        return names

    @property
    def output_names(self) -> list[str]:
        return [name for name in OUTPUT_ORDER if name.split("_")[0] in self.heads]

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        cfg = self.model.config
        clip = cfg.clip
        video_dtype = torch.float32 if self.float_input else torch.uint8
        inputs = [torch.zeros(batch, clip.frames, clip.height, clip.width, 3, dtype=video_dtype)]
        for head, width in (("points", 3), ("boxes", 5)):
            if head in self.heads:
                n = cfg.heads[head].max_queries
                inputs += [torch.zeros(batch, n, width), torch.ones(batch, n, dtype=torch.bool)]
        return tuple(inputs)

    def forward(self, video: torch.Tensor, *queries: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self.model
        dtype = model.encoder.pos_embed.dtype
        video = video.to(dtype) if self.float_input else video.to(dtype) * (1.0 / 255.0)
        features = model.readout_features(video)
        out = []
        if "depth" in self.heads:
            out.append(model.heads["depth"](features))
        if "pose" in self.heads:
            out.append(model.heads["pose"](features))
        rest = list(queries)
        for head in ("points", "boxes"):
            if head in self.heads:
                q, valid = rest.pop(0), rest.pop(0)
                values, logits = model.heads[head](features, q.to(dtype))
                out.append(torch.where(valid[..., None, None], values, torch.zeros_like(values)))
                out.append(torch.where(valid[..., None], logits, torch.full_like(logits, INVALID_LOGIT)))
        return tuple(out)
