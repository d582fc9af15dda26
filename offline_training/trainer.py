"""One training loop for every task: build, shard, resume, step, log, checkpoint, export."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from tqdm import tqdm

from fourds_ros.model import ClipConfig, EncoderConfig, FourDS, ModelConfig, ReadoutConfig, load_model_dir, \
    save_model_dir
from fourds_ros.model.fourds import resize_tables

from .checkpoint import latest_checkpoint, load_checkpoint, lock_run_folder, save_checkpoint
from .config import TrainConfig
from .data import ClipDataset, load_sequences
from .objectives import Distillation, MaskedAutoencoder, ReadoutSupervision, SelfSupervision
from .distributed import checkpoint_activations, init_distributed, shard


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: training stops before a bad step is applied or saved."""


def model_config(config: TrainConfig) -> ModelConfig:
    m = config.model
    heads = {h: ReadoutConfig(num_params=m.readout_params, num_heads=m.readout_heads,
                              max_queries=16 if h == "boxes" else 64) for h in m.heads}
    return ModelConfig(encoder=EncoderConfig.from_size(m.size), clip=ClipConfig(*m.clip), heads=heads,
                       name=f"fourds-{m.size}-{config.task}")


def build_model(config: TrainConfig) -> FourDS:
    """The model a run trains (the student when distilling), starting from `model.init_from` when given."""
    model = FourDS(model_config(config))
    model.reset_parameters(config.seed)
    if config.model.init_from:
        source = load_model_dir(config.model.init_from)
        own, state = model.state_dict(), source.state_dict()
        if source.config.clip != model.config.clip:  # a larger clip starts from a smaller one's weights
            state = resize_tables(state, source.config, model.config)
        shared = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not any(k.startswith("encoder.") for k in shared):
            raise ValueError(f"model.init_from {config.model.init_from} has no encoder weights of this model's shapes")
        model.load_state_dict(shared, strict=False)
    return model


def build_objective(config: TrainConfig, model: FourDS) -> torch.nn.Module:
    if config.task == "pretrain":
        return MaskedAutoencoder(model.encoder, config.mae)
    if config.task == "distill":
        return Distillation(model, load_model_dir(config.distill.teacher), config.distill.student_mask_ratio)
    if config.task == "selfsup":
        return SelfSupervision(model, config.readouts, config.selfsup)
    return ReadoutSupervision(model, config.readouts)


def build_lr_schedule(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to zero at `config.steps`."""
    warmup, total = config.optim.warmup_steps, config.steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_optimizer(config: TrainConfig, objective: torch.nn.Module) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in objective.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)  # no decay on biases, norms and single vectors
    groups = [{"params": decay, "weight_decay": config.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.optim.lr, betas=tuple(config.optim.betas))


def build_dataset(config: TrainConfig, model: FourDS) -> ClipDataset:
    cfg = model.config
    geometry_labels = config.task in ("readouts", "selfsup")  # depth, poses, tracks: no crop or flip
    mask = config.mae.mask_ratio if config.task == "pretrain" else (
        config.distill.student_mask_ratio if config.task == "distill" else 0.0)
    return ClipDataset(load_sequences(config.data.sources, config.data.image_topic), cfg.clip.frames,
                       (cfg.clip.height, cfg.clip.width), config.data.frame_stride,
                       (1.0, 1.0) if geometry_labels else tuple(config.data.crop_scale),
                       config.data.flip and not geometry_labels, config.seed, cfg.token_grid, mask,
                       config.data.horizontal_fov_deg if config.task == "selfsup" else None)


def train(config: TrainConfig, progress: bool = True) -> Path:
    rank, world, device = init_distributed()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {world} ranks")
    torch.manual_seed(config.seed)
    out = Path(config.out_dir)
    model = build_model(config)
    objective = build_objective(config, model).to(device)
    bf16 = config.bf16 and device.type == "cuda"
    if config.activation_checkpointing:
        checkpoint_activations(objective.transformer_blocks())
    if config.shard:
        shard(objective, objective.transformer_blocks(), bf16)
    optimizer = build_optimizer(config, objective)
    scheduler = build_lr_schedule(config, optimizer)
    dataset = build_dataset(config, model)
    lock = lock_run_folder(out) if rank == 0 else None  # held until the run's last write
    dist.barrier()  # no rank reads the folder before the lock says it is this run's
    start = 0
    resume_from = latest_checkpoint(out / "checkpoints")
    if resume_from is not None:
        start = load_checkpoint(resume_from, objective, optimizer, scheduler)
    per_rank = config.batch_size // world
    positions = [step * config.batch_size + rank * per_rank + i for step in range(start, config.steps)
                 for i in range(per_rank)]
    loader = torch.utils.data.DataLoader(dataset, batch_size=per_rank, sampler=positions,
                                         num_workers=config.data.workers)
    log_file = (out / "train_log.jsonl").open("a") if rank == 0 else None
    if rank == 0 and resume_from is not None:
        print(f"resuming from {resume_from} at step {start}", flush=True)
    bar = tqdm(total=config.steps, initial=start, desc=config.task, disable=not progress or rank != 0)
    window_start, window_clips = time.monotonic(), 0
    objective.train()
    for step, batch in zip(range(start, config.steps), loader):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, logs = objective(batch)
        finite = torch.isfinite(loss.detach()).float()
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)  # every rank stops together
        if not finite:
            last = latest_checkpoint(out / "checkpoints")
            raise TrainingDiverged(f"the loss is not finite at step {step + 1} (learning rate "
                                   f"{scheduler.get_last_lr()[0]:.3g}); the last checkpoint, saved before it: "
                                   f"{last if last is not None else 'none yet'}")
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_([p for p in objective.parameters() if p.requires_grad],
                                                   config.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window_clips += config.batch_size
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            mean_loss = loss.detach().clone()
            dist.all_reduce(mean_loss, op=dist.ReduceOp.AVG)
            elapsed = time.monotonic() - window_start
            record = {"step": done, "loss": float(mean_loss), "lr": scheduler.get_last_lr()[0],
                      "grad_norm": float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm),
                      "clips_per_s": window_clips / elapsed, **logs}
            if log_file is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                bar.set_postfix(loss=f"{record['loss']:.4f}", clips_s=f"{record['clips_per_s']:.1f}")
            window_start, window_clips = time.monotonic(), 0
        bar.update(1)
        stopping = done == config.stop_after
        if done % config.checkpoint_every == 0 or done == config.steps or stopping:
            save_checkpoint(out / "checkpoints", done, objective, optimizer, scheduler, config.keep_checkpoints)
        if stopping:
            break
    bar.close()
    if log_file is not None:
        log_file.close()
    if config.stop_after and start < config.stop_after < config.steps:
        path = out / "checkpoints"
    else:
        path = export(config, objective, model, out / "model")
    if lock is not None:
        lock.close()
    return path


def export(config: TrainConfig, objective: torch.nn.Module, model: FourDS, path: Path) -> Path:
    """Gather the full weights on rank 0 and write the trained model (the student, for distillation)."""
    state = get_model_state_dict(objective, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.get_rank() == 0:
        prefix = {"pretrain": "encoder.", "distill": "student.", "readouts": "model.", "selfsup": "model."}[config.task]
        weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if config.task == "pretrain":
            weights = {f"encoder.{k}": v for k, v in weights.items()}
        exported = FourDS(model.config)
        missing = exported.load_state_dict(weights, strict=False)
        fresh = [k for k in missing.missing_keys if not k.startswith("heads.")]
        if fresh:
            raise RuntimeError(f"export is missing encoder weights: {fresh[:5]}")
        # Pretraining and distillation train the encoder alone: the heads they carry are fresh.
        untrained = sorted(exported.config.heads) if config.task in ("pretrain", "distill") else []
        save_model_dir(exported, path, {"source": f"offline_training {config.task}", "steps": config.steps,
                                        "seed": config.seed, "untrained_heads": untrained}, overwrite=True)
    dist.barrier()
    return path
