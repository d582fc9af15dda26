"""Per-window latency, throughput and achieved FLOP/s of every backend, against the measured matmul peak.

Prints JSON and writes it to benchmarks/results/runtime-<device>.json. Random
weights (latency does not depend on them). On CPU: torch eager, onnxruntime fp32
and onnxruntime int8 (with its deviation from fp32 on the timed window). Backends run one after another,
never interleaved: torch and onnxruntime thread pools slow each other down.

    .venv/bin/python benchmarks/runtime_latency.py                 # CPU: default, S, B
    .venv/bin/python benchmarks/runtime_latency.py --sizes default --iters 50
On a CUDA machine it also runs torch eager fp32/bf16, torch.compile, CUDA
graphs, and TensorRT when the tensorrt package is importable.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fourds_ros.model import ClipConfig, EncoderConfig, FourDS, ModelConfig, ReadoutConfig, save_model_dir  # noqa: E402
from fourds_ros.model.presets import DEFAULT_PRESET, preset  # noqa: E402
from fourds_ros.runtime import create_backend, pad_queries  # noqa: E402
from fourds_ros.runtime.flops import window_flops  # noqa: E402
from fourds_ros.runtime.graph import InferenceGraph  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from result_file import cpu_name, write_result  # noqa: E402

HEADS = ("depth", "pose", "points", "boxes")


def size_config(name: str) -> ModelConfig:
    if name == "default":
        return preset(DEFAULT_PRESET)
    heads = {h: ReadoutConfig(num_params=1024, num_heads=16) for h in HEADS}
    return ModelConfig(encoder=EncoderConfig.from_size(name), clip=ClipConfig(16, 224, 224), heads=heads,
                       name=f"vit-{name}-224")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_calls(fn, iters: int, warmup: int, sync=lambda: None) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def summarise(times_ms: list[float], flops: int) -> dict:
    p50 = percentile(times_ms, 50)
    achieved = flops / (p50 / 1e3) / 1e12
    return {"latency_ms": {"p50": round(p50, 3), "p99": round(percentile(times_ms, 99), 3),
                           "mean": round(statistics.fmean(times_ms), 3), "iters": len(times_ms)},
            "windows_per_s": round(1e3 / p50, 3), "achieved_tflops": round(achieved, 4)}


def matmul_peak_tflops(device: str, dtype: torch.dtype) -> float:
    n = 8192 if device == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = time_calls(lambda: a @ b, iters=10 if device == "cuda" else 5, warmup=3, sync=sync)
    return 2 * n ** 3 / (min(times) / 1e3) / 1e12


CPU_VARIANTS = (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"))


def bench_cpu(name: str, config: ModelConfig, model_dir: Path, args) -> list[dict]:
    """Each backend in its own block of calls, never interleaved; the blocks repeat for `args.rounds` rounds and
    each backend keeps its best round (a shared 2-core machine has noisy neighbours: the best round is the
    machine's own speed, and every backend gets the same chances)."""
    flops = window_flops(config)
    backends = {v: create_backend(v[0], model_dir, threads=args.threads, precision=v[1]) for v in CPU_VARIANTS}
    window, queries = inputs_for(backends[CPU_VARIANTS[0]].spec)
    rounds: dict[tuple, list[list[float]]] = {v: [] for v in CPU_VARIANTS}
    for round_index in range(args.rounds):
        for variant, backend in backends.items():
            time.sleep(0.5)  # let the previous block's thread pool go idle
            rounds[variant].append(time_calls(lambda: backend.run(window, queries), args.iters_for(name),
                                              args.warmup if round_index == 0 else 1))
    outputs = {v[1]: backends[v].run(window, queries) for v in CPU_VARIANTS[1:]}
    results = []
    for (backend_name, precision), backend in backends.items():
        times = min(rounds[(backend_name, precision)], key=lambda t: percentile(t, 50))
        entry = {"size": name, "backend": backend_name, "precision": precision, "device": "cpu",
                 "description": backend.description, "flops": flops, **summarise(times, flops["total"]),
                 "p50_per_round_ms": [round(percentile(t, 50), 3) for t in rounds[(backend_name, precision)]]}
        results.append(entry)
        backend.close()
    torch_p50 = results[0]["latency_ms"]["p50"]
    for entry in results[1:]:
        entry["speedup_vs_torch_eager"] = round(torch_p50 / entry["latency_ms"]["p50"], 3)
    # int8 approximates the model: how far its outputs are from fp32 on this window (random weights; the accuracy
    # of a trained model comes from `eval --precision int8`).
    results[2]["max_abs_diff_over_max_abs_fp32"] = {
        head: round(float(np.abs(outputs["int8"][head] - ref).max() / max(np.abs(ref).max(), 1e-12)), 5)
        for head, ref in outputs["fp32"].items()}
    return results


def bench_gpu(name: str, config: ModelConfig, model_dir: Path, args) -> list[dict]:
    torch.backends.cuda.matmul.allow_tf32 = True
    flops = window_flops(config)
    results = []
    model = FourDS(config)
    graph = InferenceGraph(model).cuda().eval()
    window, queries = inputs_for(create_backend("torch", model_dir).spec)
    feeds = [torch.from_numpy(window).cuda()]
    if queries.points is not None:
        feeds += [torch.from_numpy(queries.points).cuda(), torch.from_numpy(queries.point_valid).cuda()]
    if queries.boxes is not None:
        feeds += [torch.from_numpy(queries.boxes).cuda(), torch.from_numpy(queries.box_valid).cuda()]

    def variant(label: str, fn) -> None:
        times = time_calls(fn, args.iters_for(name) * 5, args.warmup, sync=torch.cuda.synchronize)
        results.append({"size": name, "backend": "torch", "variant": label, "device": "cuda",
                        "flops": flops, **summarise(times, flops["total"])})

    with torch.inference_mode():
        variant("eager fp32 (tf32 matmul)", lambda: graph(*feeds))
        graph_bf16 = InferenceGraph(FourDS(config)).cuda().eval().to(torch.bfloat16)
        variant("eager bf16 weights", lambda: graph_bf16(*feeds))
        compiled = torch.compile(graph_bf16, mode="max-autotune-no-cudagraphs")
        variant("torch.compile bf16", lambda: compiled(*feeds))
        static_out = None
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                compiled(*feeds)
        torch.cuda.current_stream().wait_stream(stream)
        cuda_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cuda_graph):
            static_out = compiled(*feeds)
        variant("torch.compile bf16 + CUDA graph", cuda_graph.replay)
        del static_out
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError):
        results.append({"size": name, "backend": "tensorrt", "skipped": "tensorrt is not installed on this machine"})
    else:
        backend = create_backend("tensorrt", model_dir, precision="fp16")
        times = time_calls(lambda: backend.run(window, queries), args.iters_for(name) * 5, args.warmup)
        results.append({"size": name, "backend": "tensorrt", "precision": "fp16", "device": "cuda",
                        "description": backend.description, "flops": flops, **summarise(times, flops["total"])})
    return results


def inputs_for(spec):
    rng = np.random.default_rng(0)
    window = rng.integers(0, 256, spec.video_shape, dtype=np.uint8)
    t, h, w = spec.clip
    points = np.stack([np.zeros(spec.max_points), rng.uniform(0, h - 1, spec.max_points),
                       rng.uniform(0, w - 1, spec.max_points)], -1) if spec.max_points else None
    boxes = np.tile([0, w / 4, h / 4, w / 2, h / 2], (spec.max_boxes, 1)) if spec.max_boxes else None
    return window, pad_queries(spec, points, boxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="default,S,B", help="comma-separated: default (the embedded model), S, B, ...")
    parser.add_argument("--iters", type=int, default=30, help="timed windows for the default model")
    parser.add_argument("--iters-large", type=int, default=5, help="timed windows for ViT-S/B on CPU")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="CPU: blocks per backend; the best round counts")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/runtime-<device>.json)")
    args = parser.parse_args()
    args.iters_for = lambda name: args.iters if name == "default" else args.iters_large
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if gpu else cpu_name()
    peak_dtype = torch.bfloat16 if gpu else torch.float32
    peak_device = "cuda" if gpu else "cpu"
    peaks = [matmul_peak_tflops(peak_device, peak_dtype) for _ in range(3)]
    report = {"benchmark": "runtime_latency", "device": device, "gpu": gpu,
              "cpu": {"name": cpu_name(), "threads": torch.get_num_threads()},
              "versions": {"torch": torch.__version__, "python": platform.python_version(),
                           "onnxruntime": __import__("onnxruntime").__version__},
              "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sizes.split(","):
            config = size_config(name)
            model = FourDS(config)
            model.reset_parameters(0)
            with torch.no_grad():  # non-zero final layers: zero-initialised heads would make int8 look exact
                generator = torch.Generator().manual_seed(1)
                for head in ("pose", "points", "boxes"):
                    if head in model.heads:
                        model.heads[head].readout.out.weight.normal_(0, 0.05, generator=generator)
            model_dir = save_model_dir(model, Path(tmp) / name)
            del model
            run = bench_gpu if gpu else bench_cpu
            entries = run(name, config, model_dir, args)
            for entry in entries:
                entry["clip"] = [config.clip.frames, config.clip.height, config.clip.width]
                entry["encoder"] = f"{config.encoder.hidden_size}d x {config.encoder.num_layers}"
            report["results"].extend(entries)
            print(json.dumps(entries), file=sys.stderr, flush=True)
    # The peak is measured before and after the runs and the best counts: a shared machine's neighbours can
    # slow one measurement down, never speed it up.
    peaks += [matmul_peak_tflops(peak_device, peak_dtype) for _ in range(3)]
    peak = max(peaks)
    report["measured_matmul_peak_tflops"] = {"dtype": str(peak_dtype).replace("torch.", ""), "value": round(peak, 4),
                                             "measurements": [round(p, 4) for p in peaks]}
    for entry in report["results"]:
        if "achieved_tflops" in entry:  # int8 matmuls are not bounded by the float peak
            entry["fraction_of_peak"] = None if entry.get("precision") == "int8" else \
                round(entry["achieved_tflops"] / peak, 4)
    if not gpu:
        for precision in ("fp32", "int8"):
            speedups = [r["speedup_vs_torch_eager"] for r in report["results"]
                        if "speedup_vs_torch_eager" in r and r["precision"] == precision]
            report[f"target_onnxruntime_{precision}_1.25x_faster_than_torch"] = all(s >= 1.25 for s in speedups)
    write_result(report, "runtime" if args.sizes == "default,S,B" else f"runtime-{args.sizes.replace(',', '-')}", device,
                 args.out)


if __name__ == "__main__":
    main()
