"""MAE pretraining throughput (clips/s) and model FLOP utilisation, for the default size and ViT-B.

Times full training steps (forward, backward, AdamW) of the real MAE objective on random clips, after
warm-up, in one process. FLOPs are analytic: 3x the forward (encoder on the visible tubelets only,
decoder on all), matmuls and attention. On CUDA it runs bf16 autocast and reports MFU against the
measured bf16 matmul peak; on CPU, the fraction of the measured fp32 matmul peak.

    .venv/bin/python benchmarks/training_throughput.py [--sizes default,B] [--steps 5]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from result_file import cpu_name, write_result  # noqa: E402
from runtime_latency import matmul_peak_tflops  # noqa: E402

from fourds_ros.model import ClipConfig, EncoderConfig, FourDS, ModelConfig  # noqa: E402
from offline_training.config import MaeSection  # noqa: E402
from offline_training.objectives import MaskedAutoencoder  # noqa: E402

SIZES = {"default": ("Ti", (16, 64, 64), MaeSection(mask_ratio=0.9, decoder_width=192, decoder_layers=2,
                                                     decoder_heads=3)),
         "B": ("B", (16, 224, 224), MaeSection(mask_ratio=0.95, decoder_width=512, decoder_layers=4,
                                               decoder_heads=8))}


def transformer_flops(tokens: int, dim: int, mlp: int, layers: int) -> int:
    per_block = 2 * tokens * dim * 3 * dim + 4 * tokens * tokens * dim + 2 * tokens * dim * dim + 4 * tokens * dim * mlp
    return layers * per_block


def mae_step_flops(config: ModelConfig, mae: MaeSection, batch: int) -> int:
    enc = config.encoder
    n = config.num_tokens
    keep = max(1, int(round(n * (1 - mae.mask_ratio))))
    embed = 2 * n * 3 * math.prod(enc.patch_size) * enc.hidden_size
    encoder = transformer_flops(keep, enc.hidden_size, enc.mlp_size, enc.num_layers)
    decoder = transformer_flops(n, mae.decoder_width, 4 * mae.decoder_width, mae.decoder_layers)
    heads = 2 * keep * enc.hidden_size * mae.decoder_width + 2 * n * mae.decoder_width * 3 * math.prod(enc.patch_size)
    return 3 * batch * (embed + encoder + decoder + heads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="default,B")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=0, help="clips per step (default: 8 on CPU for default, 2 for B)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    peak = matmul_peak_tflops(device.type, torch.bfloat16 if cuda else torch.float32)
    results = []
    for name in args.sizes.split(","):
        size, clip, mae_cfg = SIZES[name]
        config = ModelConfig(encoder=EncoderConfig.from_size(size), clip=ClipConfig(*clip), heads={})
        batch = args.batch or (64 if cuda else (8 if name == "default" else 2))
        objective = MaskedAutoencoder(FourDS(config).encoder, mae_cfg).to(device)
        optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-4)
        n = config.num_tokens
        keep = max(1, int(round(n * (1 - mae_cfg.mask_ratio))))
        data = {"video": torch.randint(0, 256, (batch, *clip, 3), dtype=torch.uint8, device=device),
                "keep_index": torch.stack([torch.randperm(n, device=device)[:keep].sort().values for _ in range(batch)])}
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        times = []
        for step in range(args.steps + 2):
            sync()
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss, _ = objective(data)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync()
            if step >= 2:
                times.append(time.perf_counter() - start)
        step_s = sorted(times)[len(times) // 2]
        flops = mae_step_flops(config, mae_cfg, batch)
        achieved = flops / step_s / 1e12
        results.append({"size": name, "encoder": size, "clip": list(clip), "batch": batch, "mask_ratio": mae_cfg.mask_ratio,
                        "step_s_median": round(step_s, 4), "clips_per_s": round(batch / step_s, 2),
                        "flops_per_step": flops, "achieved_tflops": round(achieved, 4),
                        "fraction_of_measured_peak": round(achieved / peak, 4)})
        print(results[-1], file=sys.stderr, flush=True)
        del objective, optimizer
    device_name = torch.cuda.get_device_name() if cuda else cpu_name()
    report = {"benchmark": "training_throughput", "device": device_name, "gpu": cuda,
              "measured_matmul_peak_tflops": round(peak, 4), "precision": "bf16 autocast" if cuda else "fp32",
              "note": "single process; FSDP2 sharding adds communication on several ranks", "results": results}
    write_result(report, "training", device_name, args.out)


if __name__ == "__main__":
    main()
