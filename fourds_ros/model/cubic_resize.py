"""Cubic resampling matrices that reproduce `jax.image.resize(..., CUBIC)`.

JAX uses the Keys kernel with a = -0.5, half-pixel sample positions, and drops
taps that fall outside the input and renormalises the rest. PyTorch's bicubic
interpolation (a = -0.75, edge clamping) differs by up to 7e-3 relative on the
4DS readout features, so the port applies this matrix instead.
"""
from __future__ import annotations

import numpy as np
import torch


def _keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def cubic_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """`(out_size, in_size)` float64 matrix M with `out[i] = sum_j M[i, j] in[j]`."""
    if in_size <= 0 or out_size <= 0:
        raise ValueError(f"resize sizes must be positive, got {in_size} -> {out_size}")
    if in_size == out_size:
        return np.eye(in_size)
    scale = out_size / in_size
    # Downsampling widens the kernel (antialiasing), as jax does.
    kernel_scale = max(1.0 / scale, 1.0)
    sample = (np.arange(out_size) + 0.5) / scale - 0.5
    offsets = (sample[:, None] - np.arange(in_size)[None, :]) / kernel_scale
    weights = _keys_cubic(offsets)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.where(np.abs(total) > 1000 * np.finfo(np.float32).eps, weights / np.where(total == 0, 1, total), 0)
    inside = (sample >= -0.5) & (sample <= in_size - 0.5)
    return weights * inside[:, None]


def resize_axis(x: torch.Tensor, axis: int, out_size: int) -> torch.Tensor:
    """Cubic-resize one axis of a tensor (for tables: position embeddings, queries)."""
    axis = axis % x.ndim
    in_size = x.shape[axis]
    if in_size == out_size:
        return x
    matrix = torch.as_tensor(cubic_resize_matrix(in_size, out_size), dtype=torch.float64)
    moved = x.movedim(axis, -1).to(torch.float64)
    return (moved @ matrix.T).movedim(-1, axis).to(x.dtype)
