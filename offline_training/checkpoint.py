"""Sharded checkpoints with torch.distributed.checkpoint, written atomically, the last K kept.

A checkpoint is written to `step_<N>.tmp/` and renamed to `step_<N>/` by rank 0 after every rank has
finished and the COMPLETE marker is in place; a directory without the marker (a crash mid-save) is never
picked for resume. Beside the sharded model and optimizer it holds the scheduler, the step (which is the
data position) and every rank's RNG states.
"""
from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)

MARKER = "COMPLETE"
_NAME = re.compile(r"^step_(\d{8})$")


class RunFolderBusy(RuntimeError):
    """Another run is writing to the same output folder."""


def lock_run_folder(out: Path):
    """An exclusive lock on `out` for this process's lifetime (rank 0 takes it): two runs writing the same
    checkpoints would delete and resume each other's files. Returns the open lock file (keep a reference)."""
    import fcntl
    out.mkdir(parents=True, exist_ok=True)
    handle = (out / ".lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunFolderBusy(f"{out} is being written by another training run ({holder}); give this run its own "
                            f"folder (--set out_dir=...) or wait for that one to finish") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / MARKER).is_file()]
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    found = complete_checkpoints(Path(root))
    return found[-1][1] if found else None


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def save_checkpoint(root: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, keep: int) -> Path:
    root = Path(root)
    rank = dist.get_rank()
    final = root / f"step_{step:08d}"
    tmp = root / f"step_{step:08d}.tmp"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    dist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp))
    torch.save(_rng_state(), tmp / f"rng_rank{rank}.pt")
    if rank == 0:
        torch.save({"step": step, "scheduler": scheduler.state_dict()}, tmp / "trainer.pt")
    dist.barrier()
    if rank == 0:
        (tmp / MARKER).write_text(f"{step}\n")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for _, old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old)
    dist.barrier()
    return final


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> int:
    """Restore everything saved by `save_checkpoint`; returns the step to continue from."""
    path = Path(path)
    model_state, optim_state = get_state_dict(model, optimizer)
    # AdamW keeps no state for a parameter that has never had a gradient (the blocks past the readout layer
    # while the readouts train the encoder), so the checkpoint has none; a fresh optimizer's state dict has
    # state for every parameter. Ask only for what was saved (the model's weights are all required: `dcp.load`
    # refuses a missing one) and load the optimizer's leniently: those parameters stay without, as they were.
    prefix = "optim.state."
    saved = {key[len(prefix):].rsplit(".", 1)[0] for key in dcp.FileSystemReader(str(path)).read_metadata()
             .state_dict_metadata if key.startswith(prefix)}
    optim_state["state"] = {name: value for name, value in optim_state["state"].items() if name in saved}
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(path))
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optim"], options=StateDictOptions(strict=False))
    trainer = torch.load(path / "trainer.pt", weights_only=False)
    scheduler.load_state_dict(trainer["scheduler"])
    rng_file = path / f"rng_rank{dist.get_rank()}.pt"
    if rng_file.is_file():
        rng = torch.load(rng_file, weights_only=False)
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    return int(trainer["step"])
