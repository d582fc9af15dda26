"""FourDS: the 4DS encoder with its readout heads, one forward from clip to every output."""
from __future__ import annotations

import torch
from torch import nn

from .config import ClipConfig, ModelConfig
from .cubic_resize import cubic_resize_matrix, resize_axis
from .encoder import VideoEncoder
from .readouts import BoxTrackReadout, DepthReadout, PointTrackReadout, PoseReadout

HEAD_MODULES = {"depth": DepthReadout, "pose": PoseReadout, "points": PointTrackReadout, "boxes": BoxTrackReadout}


class FourDS(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = VideoEncoder(config.encoder, config.token_grid)
        self.heads = nn.ModuleDict({name: HEAD_MODULES[name](config) for name in config.heads})
        t = config.token_grid[0]
        # EncoderToReadout: cubic (jax.image.resize) upsampling of the token time axis to the clip's frames.
        self.register_buffer("time_resize", torch.tensor(cubic_resize_matrix(t, config.clip.frames),
                                                         dtype=torch.float32), persistent=False)
        self.reset_parameters()

    def reset_parameters(self, seed: int | None = None) -> None:
        """Initialisation as the release's `model.init`: lecun-normal kernels, zero biases, unit norms, N(0, 0.02) tables."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, param in self.named_parameters():
            with torch.no_grad():
                if name.endswith("bias"):
                    param.zero_()
                elif "norm" in name.rsplit(".", 2)[-2] and name.endswith("weight"):
                    param.fill_(1.0)
                elif param.ndim >= 2 and name.endswith("weight"):
                    fan_in = param[0].numel()
                    param.copy_(torch.randn(param.shape, generator=generator) * fan_in ** -0.5)
                else:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
        # Tracking and pose heads start from "nothing moves": each track at its query, the camera
        # at the identity. Random final layers would start them tens of pixels off.
        for name in ("pose", "points", "boxes"):
            if name in self.heads:
                nn.init.zeros_(self.heads[name].readout.out.weight)

    # Encoder side ---------------------------------------------------------
    def to_readout(self, feature: torch.Tensor) -> torch.Tensor:
        """`(B, t*h*w, D)` -> `(B, T, h*w, D)`: the feature every readout reads."""
        t = self.config.token_grid[0]
        x = feature.unflatten(1, (t, -1))
        return torch.einsum("Tt,btnd->bTnd", self.time_resize.to(x.dtype), x)

    def readout_features(self, video: torch.Tensor) -> torch.Tensor:
        return self.to_readout(self.encoder.feature(video, self.config.encoder.readout_index))

    # Heads ----------------------------------------------------------------
    def run_heads(self, features: torch.Tensor, point_queries: torch.Tensor | None = None,
                  box_queries: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if "depth" in self.heads:
            out["depth"] = self.heads["depth"](features)
        if "pose" in self.heads:
            out["pose"] = self.heads["pose"](features)
        if "points" in self.heads and point_queries is not None:
            out["points"], out["points_visible_logit"] = self.heads["points"](features, point_queries)
        if "boxes" in self.heads and box_queries is not None:
            out["boxes"], out["boxes_visible_logit"] = self.heads["boxes"](features, box_queries)
        return out

    def forward(self, video: torch.Tensor, point_queries: torch.Tensor | None = None,
                box_queries: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """video `(B, T, H, W, 3)` float in [0, 1] (no mean/std normalisation) -> every head's output."""
        self.check_clip(video)
        return self.run_heads(self.readout_features(video), point_queries, box_queries)

    def forward_with_features(self, video: torch.Tensor, point_queries: torch.Tensor | None = None,
                              box_queries: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """As `forward`, plus the whole feature list, the readout input and the depth dense output."""
        self.check_clip(video)
        feature_list = self.encoder.features(video)
        readout_input = self.to_readout(feature_list[self.config.encoder.readout_index])
        out = self.run_heads(readout_input, point_queries, box_queries)
        out["encoder_to_readout"] = readout_input
        out.update({f"features_{i}": f for i, f in enumerate(feature_list)})
        if "depth" in self.heads:
            out["readout_dense_out"] = self.heads["depth"].dense(readout_input)
        return out

    def at_clip(self, clip: tuple[int, int, int] | None) -> "FourDS":
        """The same model with its learned tables resampled to clip `(T, H, W)` (itself when None or equal)."""
        c = self.config.clip
        if clip is None or tuple(clip) == (c.frames, c.height, c.width):
            return self
        target = ModelConfig(encoder=self.config.encoder, clip=ClipConfig(*clip), heads=self.config.heads,
                             name=self.config.name)
        resized = FourDS(target)
        resized.load_state_dict(resize_tables(self.state_dict(), self.config, target))
        return resized.eval()

    def check_clip(self, video: torch.Tensor) -> None:
        clip = self.config.clip
        expected = (clip.frames, clip.height, clip.width, 3)
        if video.ndim != 5 or tuple(video.shape[1:]) != expected:
            raise ValueError(f"expected a clip of shape (B, {', '.join(map(str, expected))}), got {tuple(video.shape)}")


def resize_tables(state: dict[str, torch.Tensor], source: ModelConfig, target: ModelConfig) -> dict[str, torch.Tensor]:
    """Adapt the learned tables of a state dict trained at `source`'s clip size to `target`'s.

    The position table `(t, h, w, D)`, each readout's temporal table `(T, 1, C)`
    and the learned query tables (depth: one per output patch on the
    `(T/2, H/8, W/8)` grid; pose: one per frame) are tied to the clip size they
    were trained at. They are resampled axis by axis with the same cubic kernel
    the model uses in time. The weights stay usable; accuracy away from the
    trained size is not guaranteed and is best recovered by fine-tuning.
    """
    out = dict(state)
    out["encoder.pos_embed"] = _resize_to(state["encoder.pos_embed"], (*target.token_grid, -1))
    for head in target.heads:
        key = f"heads.{head}.readout.temporal_pos"
        if key in state:
            out[key] = _resize_to(state[key], (target.clip.frames, 1, -1))
    if "heads.depth.queries" in state:
        old = state["heads.depth.queries"]
        table = old.reshape(*source.depth_query_grid(), -1)
        out["heads.depth.queries"] = _resize_to(table, (*target.depth_query_grid(), -1)).reshape(-1, old.shape[-1])
    if "heads.pose.queries" in state:
        out["heads.pose.queries"] = _resize_to(state["heads.pose.queries"], (target.clip.frames, -1))
    return out


def _resize_to(table: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    for axis, size in enumerate(shape):
        if size != -1:
            table = resize_axis(table, axis, size)
    return table
