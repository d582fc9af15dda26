"""python -m offline_training {pretrain,distill,readouts,selfsup} --config CONFIG.yaml [--set key=value ...]

Single process:   python -m offline_training pretrain --config config/training/small.yaml
One node, 8 GPUs: torchrun --standalone --nproc_per_node 8 -m offline_training pretrain --config config/training/b.yaml
Many nodes:       torchrun --nnodes N --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \
                      --rdzv_id RUN -m offline_training pretrain --config config/training/large.yaml
"""
from __future__ import annotations

import argparse
import sys

import torch.distributed as dist

from .config import TASKS, TrainConfigError, load_train_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m offline_training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set steps=10 --set optim.lr=1e-3")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    rank = 0
    try:
        config = load_train_config(args.config, [f"task={args.task}", *args.set])
        from .checkpoint import RunFolderBusy
        from .data import DataError
        from .trainer import TrainingDiverged, train
        try:
            path = train(config, progress=not args.no_progress)
            rank = dist.get_rank()
        except (DataError, TrainingDiverged, RunFolderBusy) as exc:
            raise TrainConfigError(str(exc)) from None
    except TrainConfigError as exc:
        print(f"offline_training {args.task}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:  # every rank returns here; one line says where the model is
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
