"""What each task trains: MAE pretraining, feature distillation, readout supervision, self-supervision.

Each objective is an nn.Module whose forward takes a batch dict and returns the scalar loss (float32) and a
dict of logged values, so the trainer, sharding and checkpointing are shared by all three.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fourds_ros.model import FourDS
from fourds_ros.model.encoder import VideoEncoder
from fourds_ros.model.layers import Block, layer_norm

from .config import MAE_DECODERS, MaeSection, ReadoutSection, SelfSupSection
from .photometric import self_supervised_loss


def to_float(video: torch.Tensor) -> torch.Tensor:
    return video.float() * (1.0 / 255.0)


def patchify(video: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """`(B, T, H, W, C)` -> `(B, t*h*w, pt*ph*pw*C)` tubelets in the encoder's (t h w) token order."""
    b, t, h, w, c = video.shape
    pt, ph, pw = patch
    x = video.reshape(b, t // pt, pt, h // ph, ph, w // pw, pw, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, (t // pt) * (h // ph) * (w // pw), pt * ph * pw * c)


class MaskedAutoencoder(nn.Module):
    """Masked auto-encoding of tubelet pixels, with the 4DS linear decoder or a VideoMAE transformer decoder
    (`MaeSection.decoder`); the loss is on the masked tubelets only."""

    def __init__(self, encoder: VideoEncoder, cfg: MaeSection):
        super().__init__()
        if cfg.decoder not in MAE_DECODERS:
            raise ValueError(f"mae.decoder must be one of {', '.join(MAE_DECODERS)}, got {cfg.decoder!r}")
        self.encoder, self.cfg = encoder, cfg
        self.linear = cfg.decoder == "linear"
        d = encoder.config.hidden_size
        width = d if self.linear else cfg.decoder_width
        self.mask_token = nn.Parameter(torch.zeros(width))
        if not self.linear:
            tokens = math.prod(encoder.token_grid)
            self.decoder_embed = nn.Linear(d, width)
            self.decoder_pos = nn.Parameter(torch.randn(tokens, width) * 0.02)
            self.decoder_blocks = nn.ModuleList(Block(width, cfg.decoder_heads, 4 * width)
                                                for _ in range(cfg.decoder_layers))
        self.decoder_norm = layer_norm(width)
        self.to_pixels = nn.Linear(width, 3 * math.prod(encoder.config.patch_size))
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        video, keep = to_float(batch["video"]), batch["keep_index"]
        tokens = self.encoder.embed(video)
        b, n, d = tokens.shape
        masked = torch.ones(b, n, device=video.device).scatter(1, keep, 0.0)
        if self.linear:
            positions = self.encoder.pos_embed.flatten(0, 2)
            x = torch.where(masked[..., None].bool(), self.mask_token.to(tokens.dtype) + positions, tokens)
            x = self.encoder.run_blocks(x, len(self.encoder.blocks))
        else:
            visible = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, d))
            encoded = self.encoder.run_blocks(visible, len(self.encoder.blocks))
            width = self.cfg.decoder_width
            embedded = self.decoder_embed(encoded)  # under autocast its dtype, not the encoder's, is the one to match
            decoded = self.mask_token.to(embedded.dtype).expand(b, n, width)
            x = decoded.scatter(1, keep[..., None].expand(-1, -1, width), embedded)
            x = x + self.decoder_pos
            for block in self.decoder_blocks:
                x = block(x)
        prediction = self.to_pixels(self.decoder_norm(x)).float()
        target = patchify(video, self.encoder.config.patch_size)
        if self.cfg.norm_pixel_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        loss = (((prediction - target) ** 2).mean(-1) * masked).sum() / masked.sum()
        return loss, {}

    def transformer_blocks(self) -> list[nn.Module]:
        return [*self.encoder.blocks, *(() if self.linear else self.decoder_blocks)]


class Distillation(nn.Module):
    """The student's readout feature regresses the frozen teacher's (LayerNorm'd) through a linear map."""

    def __init__(self, student: FourDS, teacher: FourDS, student_mask_ratio: float = 0.0):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.teacher.requires_grad_(False)
        self.project = nn.Linear(student.config.encoder.hidden_size, teacher.config.encoder.hidden_size)
        self.student_mask_ratio = student_mask_ratio

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        video = to_float(batch["video"])
        with torch.no_grad():
            self.teacher.eval()
            target = self.teacher.encoder.feature(video, self.teacher.config.encoder.readout_index).float()
            target = F.layer_norm(target, target.shape[-1:])
        encoder = self.student.encoder
        tokens = encoder.embed(video)
        if "keep_index" in batch:  # the student sees only part of the clip, and matches the teacher there
            keep = batch["keep_index"]
            tokens = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
            target = torch.gather(target, 1, keep[..., None].expand(-1, -1, target.shape[-1]))
        feature = encoder.run_blocks(tokens, max(self.student.config.encoder.readout_index - 1, 0))
        loss = F.mse_loss(self.project(feature).float(), target)
        return loss, {}

    def transformer_blocks(self) -> list[nn.Module]:
        return [*self.student.encoder.blocks, *self.teacher.encoder.blocks]


def geodesic_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cos = ((a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU of boxes `(..., 4)` (x_min, y_min, x_max, y_max)."""
    area = lambda x: (x[..., 2] - x[..., 0]).clamp(min=0) * (x[..., 3] - x[..., 1]).clamp(min=0)  # noqa: E731
    inter = ((torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
             * (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0))
    union = area(a) + area(b) - inter
    hull = ((torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0]))
            * (torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])))
    return inter / union.clamp(min=1e-6) - (hull - union) / hull.clamp(min=1e-6)


class ReadoutSupervision(nn.Module):
    """Depth (scale-invariant log), pose (geodesic + L1), points (Huber + BCE), boxes (L1 + GIoU + BCE)."""

    def __init__(self, model: FourDS, cfg: ReadoutSection):
        super().__init__()
        self.model, self.cfg = model, cfg
        if not cfg.finetune_encoder:
            self.model.encoder.requires_grad_(False)
        if "depth" in model.heads:
            bias = model.heads["depth"].readout.out.bias
            if not bias.detach().any():  # a fresh head: start at a plausible depth instead of 0 m
                with torch.no_grad():
                    bias.fill_(cfg.depth_init)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.outputs(batch)
        terms = self.terms(out, batch)
        loss = sum(terms.values())
        return loss, {f"loss_{k}": float(v.detach()) for k, v in terms.items()}

    def outputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        video = to_float(batch["video"])
        if self.cfg.finetune_encoder:
            features = self.model.readout_features(video)
        else:
            with torch.no_grad():
                features = self.model.readout_features(video)
        return self.model.run_heads(features, batch.get("point_queries"), batch.get("box_queries"))

    def terms(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The supervised losses of the clips with ground truth (`batch["labelled"]`, all when absent)."""
        cfg, clip = self.cfg, self.model.config.clip
        labelled = batch.get("labelled")
        labelled = torch.ones(batch["video"].shape[0], dtype=torch.bool, device=batch["video"].device) \
            if labelled is None else labelled.bool()
        terms: dict[str, torch.Tensor] = {}
        if "depth" in out:
            pred, gt = out["depth"][..., 0].float(), batch["depth"].float()
            valid = torch.isfinite(gt) & (gt > 0)
            if valid.any():
                log_diff = torch.log(pred.clamp(min=1e-3)[valid]) - torch.log(gt[valid])
                # Scale-invariant log loss (Eigen et al.), plus a hinge that lifts non-positive depths.
                terms["depth"] = cfg.depth_weight * ((log_diff ** 2).mean() - 0.5 * log_diff.mean() ** 2
                                                     + F.relu(1e-3 - pred).mean())
        if "pose" in out and labelled.any():
            pred, gt = out["pose"][labelled].float(), batch["pose"][labelled].float()
            terms["pose"] = cfg.pose_weight * (geodesic_angle(pred[:, 1:, :3, :3], gt[:, 1:, :3, :3]).mean()
                                               + (pred[:, 1:, :3, 3] - gt[:, 1:, :3, 3]).abs().mean())
        scale = torch.tensor([clip.width, clip.height], device=batch["video"].device, dtype=torch.float32)
        if "points" in out:
            valid = batch["point_valid"].bool()
            vis = batch["point_visible"].float()
            position = F.huber_loss(out["points"].float() / scale, batch["point_targets"].float() / scale,
                                    reduction="none", delta=0.05).sum(-1)
            weight = vis * valid[..., None]
            terms["points"] = cfg.points_weight * (
                (position * weight).sum() / weight.sum().clamp(min=1)
                + (F.binary_cross_entropy_with_logits(out["points_visible_logit"].float(), vis, reduction="none")
                   * valid[..., None]).sum() / (valid.sum() * vis.shape[-1]).clamp(min=1))
        if "boxes" in out:
            valid = batch["box_valid"].bool()
            vis = batch["box_visible"].float()
            weight = vis * valid[..., None]
            pred, gt = out["boxes"].float(), batch["box_targets"].float()
            l1 = ((pred - gt).abs() / scale.repeat(2)).sum(-1)
            giou = 1 - generalized_iou(pred, gt)
            terms["boxes"] = cfg.boxes_weight * (
                ((l1 + giou) * weight).sum() / weight.sum().clamp(min=1)
                + (F.binary_cross_entropy_with_logits(out["boxes_visible_logit"].float(), vis, reduction="none")
                   * valid[..., None]).sum() / (valid.sum() * vis.shape[-1]).clamp(min=1))
        return terms

    def transformer_blocks(self) -> list[nn.Module]:
        return list(self.model.encoder.blocks)


class SelfSupervision(ReadoutSupervision):
    """Depth and pose readouts (and the encoder with `readouts.finetune_encoder`) from unlabelled video by
    photometric reprojection between the frames of each clip (photometric.py, after Monodepth2), mixed with the
    supervised readout losses on the clips that have ground truth, which keep depth and motion metric."""

    def __init__(self, model: FourDS, cfg: ReadoutSection, selfsup: SelfSupSection):
        super().__init__(model, cfg)
        self.selfsup = selfsup

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.outputs(batch)
        terms = {k: self.selfsup.supervised_weight * v for k, v in self.terms(out, batch).items()}
        photometric = self.photometric(out, batch)
        terms["photometric"] = self.selfsup.photometric_weight * photometric["loss"]
        loss = sum(terms.values())
        logs = {f"loss_{k}": float(v.detach()) for k, v in terms.items()}
        logs["photometric_kept"] = float(photometric["kept"].detach())
        return loss, logs

    @staticmethod
    def photometric(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every inner frame of the clip rebuilt from its two neighbours through the predicted depth and poses."""
        video = to_float(batch["video"]).permute(0, 1, 4, 2, 3)  # (B, T, 3, H, W)
        depth = out["depth"][..., 0].float().clamp(min=1e-3)[:, :, None]  # (B, T, 1, H, W)
        poses = out["pose"].float()  # frame 0 <- frame t
        k = batch["intrinsics"].float()
        parts = []
        for t in range(1, video.shape[1] - 1):
            to_sources = [torch.linalg.inv(poses[:, s]) @ poses[:, t] for s in (t - 1, t + 1)]
            parts.append(self_supervised_loss(video[:, t], [video[:, t - 1], video[:, t + 1]], depth[:, t],
                                              to_sources, k))
        return {key: torch.stack([p[key] for p in parts]).mean() for key in parts[0]}
