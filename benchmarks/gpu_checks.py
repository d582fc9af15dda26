"""Everything worth measuring in a short GPU loan, in one run of at most 8 minutes (`scripts/gpu_checks.sh`).

Steps, each with its own time budget, each recorded as ok, failed (with the error) or skipped (with why), so
one missing package or one failure never costs the others:
1. `cuda_tests`: the test suite's GPU tests (`pytest -m gpu`).
2. `parity`: the torch backend on the GPU against the CPU, on the default model and on a randomly initialised
   ViT-B at 16x224x224 (TF32 off: fp32 means fp32).
3. `latency`: the 4DS-B window (ViT-B 16x224x224, four readouts) in fp16 and bf16, batches 1, 2 and 4, eager
   and `torch.compile`, per window (the paper-scale target: at most 2 ms on an H100).
4. `training`: MAE pretraining throughput of ViT-B (`training_throughput.py`, a few steps).
5. `rig`: the multi-camera benchmark (`rig.py`) with the torch backend on the GPU, rig against separate nodes.
Writes benchmarks/results/gpu_checks-<device>.json. `--dry-run` runs the same steps on the CPU at toy sizes
(a Ti model at 16x32x32, one step, seconds of streaming) so CI keeps the script working.

    bash scripts/gpu_checks.sh            # on a GPU machine
    bash scripts/gpu_checks.sh --dry-run  # anywhere
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from result_file import cpu_name, write_result  # noqa: E402
from runtime_latency import inputs_for, percentile, size_config, time_calls  # noqa: E402

from fourds_ros.model import ClipConfig, EncoderConfig, FourDS, ModelConfig, ReadoutConfig, save_model_dir  # noqa: E402

# Seconds each step may take on the GPU (8 minutes in all, start-up included).
BUDGET_S = {"cuda_tests": 75, "parity": 60, "latency": 170, "training": 45, "rig": 110}
BATCHES = (1, 2, 4)
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class Skip(Exception):
    """A step that cannot run here, and why."""


def toy_config() -> ModelConfig:
    """The dry run's stand-in for ViT-B at 16x224x224."""
    heads = {h: ReadoutConfig(num_params=64, num_heads=2) for h in ("depth", "pose", "points", "boxes")}
    return ModelConfig(encoder=EncoderConfig.from_size("Ti"), clip=ClipConfig(16, 32, 32), heads=heads,
                       name="vit-Ti-32-dry-run")


def subprocess_step(command: list, budget_s: float, out: Path | None = None) -> dict:
    """Run a command within the step's budget; its JSON result (`out`) or its last lines."""
    try:
        done = subprocess.run([str(c) for c in command], cwd=REPO, capture_output=True, text=True, timeout=budget_s,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"over its {budget_s:.0f} s budget; last output: {(exc.stdout or '')[-500:]}") from None
    tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: " + " | ".join(tail))
    return json.loads(out.read_text()) if out is not None else {"summary": tail[-1] if tail else ""}


# Steps ---------------------------------------------------------------------------------------------------
def cuda_tests(args, tmp: Path) -> dict:
    return subprocess_step([sys.executable, "-m", "pytest", "-q", "-rs", "-m", "gpu", "-p", "no:cacheprovider",
                            "tests/test_runtime.py"], args.budget("cuda_tests"))


def parity(args, tmp: Path) -> dict:
    """Max |device - cpu| / max |cpu| per head, on one random window with queries."""
    from fourds_ros.runtime import create_backend, default_model_dir
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    large = FourDS(args.large_config())
    large.reset_parameters(0)
    models = {"default": default_model_dir(), args.large_name: save_model_dir(large, tmp / "large")}
    out = {}
    for name, model_dir in models.items():
        cpu = create_backend("torch", model_dir, device="cpu")
        device = create_backend("torch", model_dir, device=args.device)
        window, queries = inputs_for(cpu.spec)
        expected, got = cpu.run(window, queries), device.run(window, queries)
        out[name] = {head: float(np.abs(got[head] - ref).max() / max(np.abs(ref).max(), 1e-12))
                     for head, ref in expected.items()}
    return {"max_abs_diff_over_max_abs": out, "tolerance": 1e-4,
            "within_tolerance": all(v <= 1e-4 for heads in out.values() for v in heads.values())}


def latency(args, tmp: Path) -> dict:
    """Milliseconds per window of the large model: eager for every dtype and batch first, then compiled."""
    from fourds_ros.runtime.graph import InferenceGraph
    config = args.large_config()
    model = FourDS(config)
    model.reset_parameters(0)
    graph = InferenceGraph(model).to(args.device).eval()
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    deadline = time.monotonic() + args.budget("latency")
    results = []

    def measure(label: str, fn, dtype_name: str, batch: int, feeds) -> None:
        if time.monotonic() > deadline:
            results.append({"variant": label, "dtype": dtype_name, "batch": batch, "skipped": "over the step's budget"})
            return

        def call():
            with torch.inference_mode(), torch.autocast(args.device, dtype=DTYPES[dtype_name]):
                fn(*feeds)
        times = time_calls(call, args.iters, 3, sync)
        p50 = percentile(times, 50)
        results.append({"variant": label, "dtype": dtype_name, "batch": batch, "call_ms_p50": round(p50, 3),
                        "window_ms_p50": round(p50 / batch, 3), "call_ms_p99": round(percentile(times, 99), 3)})
        print(results[-1], file=sys.stderr, flush=True)

    feeds = {b: [t.to(args.device) for t in graph.example_inputs(b)] for b in BATCHES}
    for dtype_name in DTYPES:
        for batch in BATCHES:
            measure("eager", graph, dtype_name, batch, feeds[batch])
    compiled = torch.compile(graph, backend=args.compile_backend)
    for dtype_name in DTYPES:
        for batch in BATCHES:
            measure(f"torch.compile ({args.compile_backend})", compiled, dtype_name, batch, feeds[batch])
    done = [r for r in results if "window_ms_p50" in r]
    best = min(done, key=lambda r: r["window_ms_p50"]) if done else None
    return {"model": config.name, "clip": [config.clip.frames, config.clip.height, config.clip.width],
            "results": results, "best": best, "target_window_ms": 2.0,
            "meets_target": bool(best and best["window_ms_p50"] <= 2.0)}


def training(args, tmp: Path) -> dict:
    out = tmp / "training.json"
    sizes = ["--sizes", "B", "--steps", "3", "--batch", "32"] if not args.dry_run else \
        ["--sizes", "default", "--steps", "1", "--batch", "1"]
    return subprocess_step([sys.executable, REPO / "benchmarks" / "training_throughput.py", *sizes, "--out", out],
                           args.budget("training"), out)


def rig(args, tmp: Path) -> dict:
    try:
        import rclpy  # noqa: F401
    except ImportError:
        raise Skip("rclpy is not installed in this Python (the rig benchmark runs perception_node processes)")
    out = tmp / "rig.json"
    common = ["--out", out, "--domain", str(args.domain)]
    if args.dry_run:
        options = ["--cameras", "2", "--duration", "3", "--warmup", "1", "--size", "96x128"]
    else:
        options = ["--cameras", "1,4", "--duration", "15", "--warmup", "5", "--backend", "torch", "--device", "cuda"]
    return subprocess_step([sys.executable, REPO / "benchmarks" / "rig.py", *options, *common], args.budget("rig"), out)


STEPS = {"cuda_tests": cuda_tests, "parity": parity, "latency": latency, "training": training, "rig": rig}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU at toy sizes")
    parser.add_argument("--steps", default=",".join(STEPS), help="which steps, comma-separated")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/gpu_checks-<device>.json)")
    parser.add_argument("--domain", type=int, default=91, help="ROS domain of the rig benchmark's nodes")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        raise SystemExit("gpu_checks: torch sees no CUDA GPU here; --dry-run runs the steps on the CPU")
    args.device = "cuda" if cuda and not args.dry_run else "cpu"
    args.iters = 2 if args.dry_run else 30
    # Inductor on the GPU; the dry run keeps compile's graph capture without compiling kernels (no compiler needed).
    args.compile_backend = "eager" if args.dry_run else "inductor"
    args.large_name = "toy Ti 16x32x32" if args.dry_run else "random ViT-B 16x224x224"
    args.large_config = toy_config if args.dry_run else (lambda: size_config("B"))
    args.budget = lambda step: BUDGET_S[step] * (3 if args.dry_run else 1)  # a slow CPU gets more time
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"{cpu_name()} (dry run)"
    report = {"benchmark": "gpu_checks", "device": device_name, "dry_run": args.dry_run, "torch": torch.__version__,
              "steps": {}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.steps.split(","):
            began = time.monotonic()
            try:
                entry = {"status": "ok", **STEPS[name](args, Path(tmp))}
            except Skip as exc:
                entry = {"status": "skipped", "why": str(exc)}
            except Exception as exc:  # one step's failure is recorded; the next steps still run
                entry = {"status": "failed", "error": f"{exc!r}", "traceback": traceback.format_exc()[-2000:]}
            entry["seconds"] = round(time.monotonic() - began, 1)
            report["steps"][name] = entry
            print(f"gpu_checks: {name} {entry['status']} in {entry['seconds']} s", file=sys.stderr, flush=True)
    report["seconds"] = round(time.monotonic() - started, 1)
    write_result(report, "gpu_checks", device_name if not args.dry_run else "dry-run", args.out)
    if any(step["status"] == "failed" for step in report["steps"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
