"""Analytic FLOPs of one window (2 per multiply-add; matmuls and attention only, the >99% part).

Counts what inference runs: the encoder blocks up to the readout feature (10
of 12 for 4DS-B), the time resize and each head's cross-attention readout.
"""
from __future__ import annotations

import math

from ..model import ModelConfig


def _linear(tokens: int, d_in: int, d_out: int) -> int:
    return 2 * tokens * d_in * d_out


def encoder_flops(config: ModelConfig) -> int:
    enc = config.encoder
    n, d = config.num_tokens, enc.hidden_size
    embed = _linear(n, 3 * math.prod(enc.patch_size), d)
    block = _linear(n, d, 3 * d) + 2 * (2 * n * n * d) + _linear(n, d, d) + 2 * _linear(n, d, enc.mlp_size)
    blocks_run = max(enc.readout_index - 1, 0)
    _, h, w = config.token_grid
    resize = 2 * config.clip.frames * config.token_grid[0] * h * w * d
    return embed + blocks_run * block + resize


def readout_flops(config: ModelConfig, head: str, num_queries: int) -> int:
    cfg = config.heads[head]
    width, d = cfg.num_params, config.encoder.hidden_size
    _, h, w = config.token_grid
    keys = config.clip.frames * h * w
    flops = 2 * _linear(keys, d, width)  # key and value embeddings
    flops += 2 * (2 * num_queries * keys * width)  # scores and weighted sum
    flops += _linear(num_queries, width, width) + 2 * _linear(num_queries, width, 4 * width)
    out_dim = {"depth": math.prod(cfg.decoding_patch), "pose": 9, "points": 3 * config.clip.frames,
               "boxes": 5 * config.clip.frames}[head]
    flops += _linear(num_queries, width, out_dim)
    if head in ("points", "boxes"):
        coords = 3 if head == "points" else 5
        flops += _linear(num_queries, coords * (1 + 2 * cfg.num_frequencies), width) + _linear(num_queries, d, width)
    return flops


def head_queries(config: ModelConfig, head: str) -> int:
    if head == "depth":
        return math.prod(config.depth_query_grid())
    if head == "pose":
        return config.clip.frames
    return config.heads[head].max_queries


def window_flops(config: ModelConfig, heads: tuple[str, ...] | None = None) -> dict[str, int]:
    """FLOPs of one window: `{"encoder": ..., <head>: ..., "total": ...}` (tracking heads at max_queries)."""
    out = {"encoder": encoder_flops(config)}
    for head in config.heads:
        if heads is None or head in heads:
            out[head] = readout_flops(config, head, head_queries(config, head))
    out["total"] = sum(out.values())
    return out
