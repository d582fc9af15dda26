"""Photometric self-supervision of depth and camera motion on unlabelled video (after Monodepth2, Godard et al.
2019): the target frame is rebuilt from source frames of the same window through the predicted depth, the
predicted relative pose and the camera intrinsics; how well it matches is the loss.

- Error per pixel: 0.85 (1 - SSIM) / 2 + 0.15 L1 (SSIM over 3x3 neighbourhoods).
- Per-pixel minimum over the source frames (a pixel occluded in one source is seen in another).
- Auto-masking of static pixels: where a source frame *unwarped* already matches the target at least as well as
  the warped one (a camera standing still, an object moving with the camera), the pixel teaches nothing and is
  left out.
- Edge-aware smoothness of the mean-normalised inverse depth, weight 1e-3.

Conventions: images `(B, 3, H, W)` in [0, 1]; depth `(B, 1, H, W)` metres along the optical axis; intrinsics
`(B, 3, 3)` in pixels of these images; `target_to_source` `(B, 4, 4)` maps a point in the target camera's frame to
the source camera's (x_s = R x_t + t), optical axes (x right, y down, z forward).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_WEIGHT = 0.85
SMOOTHNESS_WEIGHT = 1e-3
_C1, _C2 = 0.01 ** 2, 0.03 ** 2


def ssim_dissimilarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 per pixel and channel, over 3x3 neighbourhoods (reflection padded), in [0, 1]."""
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x ** 2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y ** 2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + _C1) * (2 * sigma_xy + _C2)
    denominator = (mu_x ** 2 + mu_y ** 2 + _C1) * (sigma_x + sigma_y + _C2)
    return ((1 - numerator / denominator) / 2).clamp(0, 1)


def photometric_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`(B, 1, H, W)`: SSIM and L1 mixed, averaged over channels."""
    l1 = (a - b).abs().mean(1, keepdim=True)
    return SSIM_WEIGHT * ssim_dissimilarity(a, b).mean(1, keepdim=True) + (1 - SSIM_WEIGHT) * l1


def warp(source: torch.Tensor, depth: torch.Tensor, target_to_source: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """`source` resampled at the pixels where the target's pixels, lifted by `depth`, land in it."""
    b, _, h, w = depth.shape
    v, u = torch.meshgrid(torch.arange(h, dtype=depth.dtype, device=depth.device),
                          torch.arange(w, dtype=depth.dtype, device=depth.device), indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)]).reshape(1, 3, -1).expand(b, -1, -1)
    points = (torch.linalg.inv(k) @ pixels) * depth.reshape(b, 1, -1)
    moved = target_to_source[:, :3, :3] @ points + target_to_source[:, :3, 3:]
    projected = k @ moved
    z = projected[:, 2:].clamp(min=1e-6)
    x, y = projected[:, 0:1] / z, projected[:, 1:2] / z
    # grid_sample's normalised coordinates with align_corners=False: pixel centres at (2i + 1) / n - 1.
    grid = torch.cat([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1], 1).reshape(b, 2, h, w).permute(0, 2, 3, 1)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)


def reprojection_loss(target: torch.Tensor, sources: list[torch.Tensor], depth: torch.Tensor,
                      target_to_sources: list[torch.Tensor], k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The auto-masked per-pixel minimum reprojection error (scalar), and the mask of pixels that counted."""
    warped = torch.cat([photometric_error(warp(s, depth, pose, k), target)
                        for s, pose in zip(sources, target_to_sources)], 1)
    # A hair of noise breaks exact ties (a textureless patch) in favour of neither side.
    identity = torch.cat([photometric_error(s, target) for s in sources], 1)
    identity = identity + torch.randn_like(identity) * 1e-5
    best_warped, _ = warped.min(1, keepdim=True)
    best_identity, _ = identity.min(1, keepdim=True)
    moving = (best_warped < best_identity).float()
    return (best_warped * moving).sum() / moving.sum().clamp(min=1.0), moving


def smoothness(depth: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness of the mean-normalised inverse depth (gradients cost less across image edges)."""
    disparity = 1.0 / depth.clamp(min=1e-3)
    disparity = disparity / disparity.mean((2, 3), keepdim=True).clamp(min=1e-7)
    dx = (disparity[..., :, 1:] - disparity[..., :, :-1]).abs()
    dy = (disparity[..., 1:, :] - disparity[..., :-1, :]).abs()
    edges_x = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    edges_y = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (dx * torch.exp(-edges_x)).mean() + (dy * torch.exp(-edges_y)).mean()


def self_supervised_loss(target: torch.Tensor, sources: list[torch.Tensor], depth: torch.Tensor,
                         target_to_sources: list[torch.Tensor], k: torch.Tensor) -> dict[str, torch.Tensor]:
    """`loss` (reprojection + weighted smoothness) with its parts and the fraction of pixels auto-masking kept."""
    reprojection, kept = reprojection_loss(target, sources, depth, target_to_sources, k)
    smooth = smoothness(depth, target)
    return {"loss": reprojection + SMOOTHNESS_WEIGHT * smooth, "reprojection": reprojection, "smoothness": smooth,
            "kept": kept.mean()}
