"""Cross-attention readouts over the frozen (or fine-tuned) encoder features.

All heads share `CrossAttentionReadout`, the release's AttentionReadout: queries
attend to LayerNorm'd features plus a learned temporal position, the query is
the residual of the attention output, then a residual MLP and a final dense.
The heads differ only in where their queries come from and how the final
dense output is decoded:

- depth: learned queries, one per (2, 8, 8) output patch -> metres, `(B, T, H, W, 1)`.
- pose: learned queries, one per frame -> `(B, T, 4, 4)`, each frame's camera
  pose in the first frame's camera (REP 103 optical frame: x right, y down,
  z forward), so frame 0 is the identity; translation in the training data's
  units (metres for the synthetic data; a monocular model is up to scale).
- points: a query per point `(t, y, x)` -> `(B, Q, T, 2)` positions `(x, y)`
  and `(B, Q, T)` visibility logits.
- boxes: a query per box `(t, x_min, y_min, x_max, y_max)` -> `(B, Q, T, 4)`
  boxes in the same order and `(B, Q, T)` visibility logits.

Pixel coordinates: x is the column, y the row, pixel centres at integers (the
OpenCV / ROS CameraInfo convention), in the model's input resolution. Frame
indices `t` count from the first frame of the window.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig, ReadoutConfig
from .layers import Mlp, layer_norm


class CrossAttentionReadout(nn.Module):
    def __init__(self, feature_dim: int, frames: int, cfg: ReadoutConfig, out_dim: int):
        super().__init__()
        self.num_heads = cfg.num_heads
        width = cfg.num_params
        self.norm_in = layer_norm(feature_dim)
        self.temporal_pos = nn.Parameter(torch.zeros(frames, 1, feature_dim))
        self.key = nn.Linear(feature_dim, width)
        self.value = nn.Linear(feature_dim, width)
        self.proj = nn.Linear(width, width)
        self.norm_mlp = layer_norm(width)
        self.mlp = Mlp(width, 4 * width)
        self.out = nn.Linear(width, out_dim)

    def forward(self, features: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """features `(B, T, N, C)`, queries `(B or 1, Q, width)` -> `(B, Q, out_dim)`."""
        b = features.shape[0]
        x = (self.norm_in(features) + self.temporal_pos).flatten(1, 2)
        heads = self.num_heads
        k = self.key(x).unflatten(-1, (heads, -1)).transpose(1, 2)
        v = self.value(x).unflatten(-1, (heads, -1)).transpose(1, 2)
        q = queries.expand(b, -1, -1)
        attended = F.scaled_dot_product_attention(q.unflatten(-1, (heads, -1)).transpose(1, 2), k, v)
        token = q + self.proj(attended.transpose(1, 2).flatten(2))
        token = token + self.mlp(self.norm_mlp(token))
        return self.out(token)


class DepthReadout(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        cfg = config.heads["depth"]
        self.query_grid = config.depth_query_grid()
        self.patch = cfg.decoding_patch
        num_queries = math.prod(self.query_grid)
        self.queries = nn.Parameter(torch.zeros(num_queries, cfg.num_params))
        self.readout = CrossAttentionReadout(config.encoder.hidden_size, config.clip.frames, cfg, math.prod(self.patch))

    def dense(self, features: torch.Tensor) -> torch.Tensor:
        """The final dense output `(B, Q, p0*p1*p2)`, before the rearrange into a video."""
        return self.readout(features, self.queries[None])

    def to_video(self, dense: torch.Tensor) -> torch.Tensor:
        (n0, n1, n2), (p0, p1, p2) = self.query_grid, self.patch
        x = dense.reshape(-1, n0, n1, n2, p0, p1, p2)
        return x.permute(0, 1, 4, 2, 5, 3, 6).reshape(-1, n0 * p0, n1 * p1, n2 * p2, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.to_video(self.dense(features))


def rotation_from_6d(x: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt of two 3-vectors (Zhou et al. 2019) -> rotation matrices `(..., 3, 3)`."""
    a = F.normalize(x[..., 0:3], dim=-1)
    b = x[..., 3:6]
    b = F.normalize(b - (a * b).sum(-1, keepdim=True) * a, dim=-1)
    c = torch.cross(a, b, dim=-1)
    return torch.stack([a, b, c], dim=-1)


def invert_rigid(pose: torch.Tensor) -> torch.Tensor:
    rot_t = pose[..., :3, :3].transpose(-1, -2)
    trans = -(rot_t @ pose[..., :3, 3:])
    bottom = pose[..., 3:, :]
    return torch.cat([torch.cat([rot_t, trans], dim=-1), bottom], dim=-2)


class PoseReadout(nn.Module):
    """Per-frame camera pose relative to the window's first frame."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        cfg = config.heads["pose"]
        self.queries = nn.Parameter(torch.zeros(config.clip.frames, cfg.num_params))
        self.readout = CrossAttentionReadout(config.encoder.hidden_size, config.clip.frames, cfg, 9)
        # Start from the identity rotation so Gram-Schmidt is well conditioned.
        self.register_buffer("rotation_bias", torch.tensor([1.0, 0, 0, 0, 1, 0]), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.readout(features, self.queries[None])
        rot = rotation_from_6d(out[..., :6] + self.rotation_bias)
        trans = out[..., 6:9, None]
        bottom = torch.tensor([0.0, 0, 0, 1], dtype=out.dtype, device=out.device).expand(*out.shape[:-1], 1, 4)
        world_from_cam = torch.cat([torch.cat([rot, trans], dim=-1), bottom], dim=-2)
        # Expressed in frame 0's camera: frame 0 is exactly the identity by construction.
        return invert_rigid(world_from_cam[:, :1]) @ world_from_cam


class QueryGeometry:
    """Maps pixel/frame coordinates to [-1, 1] and samples encoder features at them."""

    def __init__(self, config: ModelConfig):
        self.frames, self.height, self.width = config.clip.frames, config.clip.height, config.clip.width
        _, self.grid_h, self.grid_w = config.token_grid
        _, self.patch_h, self.patch_w = config.encoder.patch_size

    @staticmethod
    def normalise(coord: torch.Tensor, size: int) -> torch.Tensor:
        return (coord + 0.5) * (2.0 / size) - 1.0

    @staticmethod
    def denormalise(coord: torch.Tensor, size: int) -> torch.Tensor:
        return (coord + 1.0) * (size / 2.0) - 0.5

    def sample(self, features: torch.Tensor, t: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Bilinear in space, nearest frame in time: features `(B, T, h*w, C)`, coords `(B, Q)` -> `(B, Q, C)`."""
        b, frames, n, c = features.shape
        t_idx = torch.round(t).clamp(0, frames - 1).long()
        # Token i covers pixels [i*p, (i+1)*p - 1]: its centre is at i*p + (p - 1) / 2.
        gy = ((y - (self.patch_h - 1) / 2) / self.patch_h).clamp(0, self.grid_h - 1)
        gx = ((x - (self.patch_w - 1) / 2) / self.patch_w).clamp(0, self.grid_w - 1)
        y0, x0 = gy.floor(), gx.floor()
        fy, fx = gy - y0, gx - x0
        y0, x0 = y0.long(), x0.long()
        y1, x1 = (y0 + 1).clamp(max=self.grid_h - 1), (x0 + 1).clamp(max=self.grid_w - 1)
        base = t_idx * n
        index = torch.stack([base + y0 * self.grid_w + x0, base + y0 * self.grid_w + x1,
                             base + y1 * self.grid_w + x0, base + y1 * self.grid_w + x1], dim=-1)
        weight = torch.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], dim=-1)
        flat = features.reshape(b, frames * n, c)
        gathered = torch.gather(flat, 1, index.reshape(b, -1, 1).expand(-1, -1, c))
        return (gathered.reshape(*index.shape, c) * weight[..., None]).sum(-2)


def fourier_features(coords: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """`(..., K)` in [-1, 1] -> `(..., K * (1 + 2F))`: the coordinates and their sines/cosines."""
    freqs = (2.0 ** torch.arange(num_frequencies, dtype=coords.dtype, device=coords.device)) * math.pi
    angles = coords[..., None] * freqs
    return torch.cat([coords, torch.sin(angles).flatten(-2), torch.cos(angles).flatten(-2)], dim=-1)


class TrackQueryEmbedding(nn.Module):
    """Query from a location: Fourier features of its coordinates + the feature sampled there."""

    def __init__(self, feature_dim: int, num_coords: int, cfg: ReadoutConfig):
        super().__init__()
        self.num_frequencies = cfg.num_frequencies
        self.coords = nn.Linear(num_coords * (1 + 2 * cfg.num_frequencies), cfg.num_params)
        self.norm = layer_norm(feature_dim)
        self.appearance = nn.Linear(feature_dim, cfg.num_params)

    def forward(self, coords_normalised: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
        return self.coords(fourier_features(coords_normalised, self.num_frequencies)) + self.appearance(self.norm(sampled))


class PointTrackReadout(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        cfg = config.heads["points"]
        self.geometry = QueryGeometry(config)
        self.embed = TrackQueryEmbedding(config.encoder.hidden_size, 3, cfg)
        self.readout = CrossAttentionReadout(config.encoder.hidden_size, config.clip.frames, cfg, 3 * config.clip.frames)

    def forward(self, features: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """queries `(B, Q, 3)` as `(t, y, x)` -> positions `(B, Q, T, 2)` as (x, y), visibility logits `(B, Q, T)`."""
        g = self.geometry
        t, y, x = queries.unbind(-1)
        normalised = torch.stack([g.normalise(t, g.frames), g.normalise(y, g.height), g.normalise(x, g.width)], -1)
        out = self.readout(features, self.embed(normalised, g.sample(features, t, y, x)))
        out = out.unflatten(-1, (g.frames, 3))
        xy = normalised[..., None, [2, 1]] + out[..., :2]
        positions = torch.stack([g.denormalise(xy[..., 0], g.width), g.denormalise(xy[..., 1], g.height)], -1)
        return positions, out[..., 2]


class BoxTrackReadout(nn.Module):
    # Log-size changes are clamped so exp() stays finite for untrained or wild outputs.
    MAX_LOG_SCALE = 4.0

    def __init__(self, config: ModelConfig):
        super().__init__()
        cfg = config.heads["boxes"]
        self.geometry = QueryGeometry(config)
        self.embed = TrackQueryEmbedding(config.encoder.hidden_size, 5, cfg)
        self.readout = CrossAttentionReadout(config.encoder.hidden_size, config.clip.frames, cfg, 5 * config.clip.frames)

    def forward(self, features: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """queries `(B, Q, 5)` as `(t, x_min, y_min, x_max, y_max)` -> boxes `(B, Q, T, 4)`, logits `(B, Q, T)`."""
        g = self.geometry
        t, x0, y0, x1, y1 = queries.unbind(-1)
        corners = torch.stack([g.normalise(x0, g.width), g.normalise(y0, g.height),
                               g.normalise(x1, g.width), g.normalise(y1, g.height)], -1)
        normalised = torch.cat([g.normalise(t, g.frames)[..., None], corners], -1)
        sampled = g.sample(features, t, (y0 + y1) / 2, (x0 + x1) / 2)
        out = self.readout(features, self.embed(normalised, sampled)).unflatten(-1, (g.frames, 5))
        centre = (corners[..., None, 0:2] + corners[..., None, 2:4]) / 2 + out[..., 0:2]
        size = (corners[..., None, 2:4] - corners[..., None, 0:2]) * torch.exp(
            out[..., 2:4].clamp(-self.MAX_LOG_SCALE, self.MAX_LOG_SCALE))
        lo, hi = centre - size / 2, centre + size / 2
        boxes = torch.stack([g.denormalise(lo[..., 0], g.width), g.denormalise(lo[..., 1], g.height),
                             g.denormalise(hi[..., 0], g.width), g.denormalise(hi[..., 1], g.height)], -1)
        return boxes, out[..., 4]
