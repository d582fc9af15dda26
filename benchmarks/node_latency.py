"""End-to-end latency, throughput and memory of perception_node over a long run at 30 Hz.

A video_publisher process loops a procedural clip at 30 Hz into perception_node
(its own process, the embedded default model and backend); this process
subscribes to depth/image and records, per frame, receive time minus the
image's stamp (publish time, same clock). The node's resident memory is sampled
once a second; "flat" means the last minute's mean is within 5% of the first
minute's (after warm-up). Prints JSON and writes benchmarks/results/node-<device>.json.

    .venv/bin/python benchmarks/node_latency.py --duration 300
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from fourds_ros.model import FourDS, save_model_dir  # noqa: E402
from fourds_ros.model.presets import DEFAULT_PRESET, preset  # noqa: E402
from fourds_ros.ros.processes import NodeProcess, TopicRecorder, diagnostics_values  # noqa: E402
from fourds_ros.evaluation.report import portable_path  # noqa: E402
from fourds_ros.ros.messages import stamp_ns  # noqa: E402
from fourds_ros.synthetic.pattern_clip import moving_pattern_clip  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from result_file import cpu_name, write_result  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of streaming (>= 300 for the record)")
    parser.add_argument("--model", type=Path, default=REPO / "models" / "default" if (REPO / "models" / "default").is_dir()
                        else None, help="model directory (default: models/default, else the preset with random weights)")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--size", default="480x640", help="camera image HxW")
    parser.add_argument("--domain", type=int, default=87)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model
        if model_dir is None:
            model = FourDS(preset(DEFAULT_PRESET))
            model.reset_parameters(0)
            model_dir = save_model_dir(model, tmp / "model")
        frames = tmp / "frames"
        frames.mkdir()
        for i, frame in enumerate(moving_pattern_clip(90, height, width)):
            cv2.imwrite(str(frames / f"{i:04d}.png"), frame[..., ::-1])
        node = NodeProcess("perception_node", ["--ros-args", "--params-file", REPO / "config" / "perception.yaml",
                                               "-p", f"model_dir:={model_dir}", "-p", f"backend:={args.backend}"],
                           args.domain, tmp)
        recorder = publisher = None
        try:
            node.wait_for_log("ready:", timeout=180)
            recorder = TopicRecorder(args.domain, {"depth/image": Image, "/diagnostics": DiagnosticArray},
                                     reliable=False)
            publisher = NodeProcess("video_publisher", ["--ros-args", "-p", f"source:={frames}", "-p", "rate:=30.0",
                                                        "-p", "loop:=true", "-p", "reliability:=best_effort",
                                                        "-p", "wait_for_subscribers:=1"], args.domain, tmp)
            memory, started = [], time.monotonic()
            while time.monotonic() - started < args.duration:
                time.sleep(1.0)
                memory.append((time.monotonic() - started, rss_mib(node.proc.pid)))
            publisher.stop()
            time.sleep(2.0)
            timed = recorder.timed("depth/image")
            diag = diagnostics_values(recorder.messages("/diagnostics")[-1])
        finally:
            for p in (publisher, node):
                if p is not None:
                    p.stop()
            if recorder is not None:
                recorder.close()
    if len(timed) < 10:
        raise SystemExit(f"only {len(timed)} depth images arrived; node diagnostics: {diag}")
    latency_ms = np.array([(received - stamp_ns(m.header) / 1e9) * 1e3 for received, m in timed])
    steady = latency_ms[len(latency_ms) // 10:]  # skip warm-up
    mem = np.array(memory)
    first = mem[(mem[:, 0] > 30) & (mem[:, 0] <= 90), 1]
    last = mem[mem[:, 0] > mem[-1, 0] - 60, 1]
    span = (timed[-1][0] - timed[0][0]) if len(timed) > 1 else float("nan")
    report = {
        "benchmark": "node_latency", "device": cpu_name(), "duration_s": args.duration,
        "input": {"rate_hz": 30.0, "size": [height, width], "encoding": "rgb8"},
        "model": portable_path(args.model) if args.model else f"{DEFAULT_PRESET} (random weights)", "backend": diag.get("backend"),
        "window": {"len": 16, "hop": 4, "stride": 1},
        "end_to_end_latency_ms": {"p50": round(float(np.percentile(steady, 50)), 1),
                                  "p99": round(float(np.percentile(steady, 99)), 1),
                                  "max": round(float(steady.max()), 1), "frames": int(len(latency_ms))},
        "throughput_depth_hz": round((len(timed) - 1) / span, 2),
        "node_diagnostics": diag,
        "memory_rss_mib": {"first_minute_mean": round(float(first.mean()), 1),
                           "last_minute_mean": round(float(last.mean()), 1), "max": round(float(mem[:, 1].max()), 1),
                           "flat": bool(abs(last.mean() - first.mean()) <= 0.05 * first.mean())},
    }
    write_result(report, "node", cpu_name(), args.out)


if __name__ == "__main__":
    main()
