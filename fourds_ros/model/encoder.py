"""The 4DS video ViT encoder: tubelet embedding, learned (t, h, w) positions, pre-LN blocks.

Feature list (as the release's GeneralizedTransformer): the embedded tokens,
then the *input* of every block, so `[tokens, tokens, out_0, ..., out_{L-2}]`
(L + 1 entries); the last block's output is never part of it. Element k >= 1
needs k - 1 blocks, so inference runs only the blocks the readout reads.
There is no final norm: readouts normalise the raw residual stream themselves.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import EncoderConfig
from .layers import Block


class VideoEncoder(nn.Module):
    def __init__(self, config: EncoderConfig, token_grid: tuple[int, int, int]):
        super().__init__()
        self.config = config
        self.token_grid = token_grid
        dim = config.hidden_size
        # A Conv3d whose kernel equals its stride: one linear map per 2x16x16 tubelet.
        self.patch_embed = nn.Conv3d(3, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(*token_grid, dim))
        self.blocks = nn.ModuleList(Block(dim, config.num_heads, config.mlp_size) for _ in range(config.num_layers))

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """`(B, T, H, W, 3)` in [0, 1] -> tokens `(B, t*h*w, D)`, flattened in (t h w) order."""
        x = self.patch_embed(video.permute(0, 4, 1, 2, 3))
        x = x.permute(0, 2, 3, 4, 1) + self.pos_embed
        return x.flatten(1, 3)

    def run_blocks(self, tokens: torch.Tensor, num_blocks: int) -> torch.Tensor:
        for block in self.blocks[:num_blocks]:
            tokens = block(tokens)
        return tokens

    def feature(self, video: torch.Tensor, index: int) -> torch.Tensor:
        """Element `index` of the feature list, computing only the blocks it needs."""
        return self.run_blocks(self.embed(video), max(index - 1, 0))

    def features(self, video: torch.Tensor) -> list[torch.Tensor]:
        """The whole feature list (L + 1 tensors of shape `(B, N, D)`)."""
        x = self.embed(video)
        out = [x]
        for block in self.blocks:
            out.append(x)
            x = block(x)
        return out

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Output of the last block (what MAE pretraining and distillation train)."""
        return self.run_blocks(self.embed(video), len(self.blocks))
