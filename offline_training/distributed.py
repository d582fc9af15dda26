"""Process groups and FSDP2: parameters, gradients and optimizer state sharded over ranks.

Runs the same under `torchrun` (one or many nodes) and as a plain single process (a group of one).
CUDA uses NCCL; CPU uses gloo (the tests run 2 CPU ranks).
"""
from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.checkpoint import checkpoint


def init_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); starts a one-process group when not launched by torchrun."""
    if "RANK" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def shard(module: nn.Module, blocks: list[nn.Module], bf16: bool) -> None:
    """`fully_shard` each transformer block, then the root (which takes the remaining parameters)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    for block in blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(module, mp_policy=policy)


def checkpoint_activations(blocks: list[nn.Module]) -> None:
    """Recompute each block's activations in the backward pass (memory for compute; state dicts unchanged)."""
    for block in blocks:
        forward = block.forward
        block.forward = lambda *args, _forward=forward: checkpoint(_forward, *args, use_reentrant=False)
