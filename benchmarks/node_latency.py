"""End-to-end latency, throughput and memory of perception_node over a long run at 30 Hz.

A video_publisher process loops a procedural clip at 30 Hz into perception_node
(its own process, the embedded default model and backend); this process
subscribes to depth/image and odometry and records, per frame, receive time
minus the image's stamp (publish time, same clock): odometry is published as
each frame arrives (`odometry.on_arrival`), depth when the frame's window is back. The node's resident memory is sampled
once a second; "flat" means the last minute's mean is within 5% of the first
minute's (after warm-up). Latency is reported as p50, p99 and the true maximum
over the run after a 10% warm-up, next to the node's own slowest window.

Start-up: `perception_node` with no parameters (the shipped default model on
onnxruntime) is started 3 times and timed from the process start to its
"ready:" line, with its resident memory then; and the same with torch imported
first, which is what a node that imports torch would cost. Prints JSON and writes
benchmarks/results/node-<device>.json.

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
from nav_msgs.msg import Odometry  # noqa: E402
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


def rss_tree_mib(pid: int) -> float:
    """Resident memory of a process and its children (the node's bundle-adjustment process)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return rss_mib(pid) + sum(rss_tree_mib(c) for c in children)


def startup(domain: int, log_dir: Path, with_torch: bool, runs: int = 3) -> dict:
    """Seconds from process start to "ready:" and RSS then, for the node with no parameters."""
    times, memory = [], []
    for _ in range(runs):
        if with_torch:
            code = "import sys, torch; from fourds_ros.ros.perception_node import main; sys.exit(main())"
            node = NodeProcess("perception_node", ["-c", code], domain, log_dir, executable=Path(sys.executable))
        else:
            node = NodeProcess("perception_node", [], domain, log_dir)
        began = time.monotonic()
        try:
            node.wait_for_log("ready:", timeout=300)
            times.append(time.monotonic() - began)
            memory.append(rss_mib(node.proc.pid))
        finally:
            node.stop()
    return {"ready_s_median": round(float(np.median(times)), 2), "ready_s": [round(t, 2) for t in times],
            "rss_mib_at_ready": round(float(np.median(memory)), 1)}


def latencies_ms(timed: list) -> np.ndarray:
    """Receive time minus the message's stamp (the image's publish time), ms."""
    return np.array([(received - stamp_ns(m.header) / 1e9) * 1e3 for received, m in timed])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of streaming (>= 300 for the record)")
    parser.add_argument("--model", type=Path, default=REPO / "models" / "default" if (REPO / "models" / "default").is_dir()
                        else None, help="model directory (default: models/default, else the preset with random weights)")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--size", default="480x640", help="camera image HxW")
    parser.add_argument("--domain", type=int, default=87)
    parser.add_argument("--param", "-p", action="append", default=[], metavar="NAME:=VALUE",
                        help="a further node parameter (repeatable), e.g. threads:=1")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        starts = {"default_model_without_torch": startup(args.domain, tmp, with_torch=False),
                  "default_model_with_torch_imported": startup(args.domain, tmp, with_torch=True)}
        print(f"start-up: {starts}", file=sys.stderr)
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
                                               "-p", f"model_dir:={model_dir}", "-p", f"backend:={args.backend}",
                                               *(arg for param in args.param for arg in ("-p", param))],
                           args.domain, tmp)
        recorder = publisher = None
        try:
            node.wait_for_log("ready:", timeout=180)
            recorder = TopicRecorder(args.domain, {"depth/image": Image, "odometry": Odometry,
                                                   "/diagnostics": DiagnosticArray}, reliable=False)
            publisher = NodeProcess("video_publisher", ["--ros-args", "-p", f"source:={frames}", "-p", "rate:=30.0",
                                                        "-p", "loop:=true", "-p", "reliability:=best_effort",
                                                        "-p", "wait_for_subscribers:=1"], args.domain, tmp)
            memory, started = [], time.monotonic()
            while time.monotonic() - started < args.duration:
                time.sleep(1.0)
                memory.append((time.monotonic() - started, rss_mib(node.proc.pid), rss_tree_mib(node.proc.pid)))
            publisher.stop()
            # The node finishes what it accepted (emitted or dropped) before the record is read.
            recorder.wait_until(lambda: (d := recorder.last_diagnostics()) and int(d["frames_emitted"]) +
                                int(d["frames_dropped"]) >= int(d["frames_accepted"]), 60, "the node to drain")
            timed, odometry = recorder.timed("depth/image"), recorder.timed("odometry")
            diag = diagnostics_values(recorder.messages("/diagnostics")[-1])
        finally:
            for p in (publisher, node):
                if p is not None:
                    p.stop()
            if recorder is not None:
                recorder.close()
    if len(timed) < 10:
        raise SystemExit(f"only {len(timed)} depth images arrived; node diagnostics: {diag}")
    latency_ms, odometry_ms = latencies_ms(timed), latencies_ms(odometry)
    steady = latency_ms[len(latency_ms) // 10:]  # skip warm-up
    odometry_steady = odometry_ms[len(odometry_ms) // 10:]
    mem = np.array(memory)
    first = mem[(mem[:, 0] > 30) & (mem[:, 0] <= 90), 1]
    last = mem[mem[:, 0] > mem[-1, 0] - 60, 1]
    span = (timed[-1][0] - timed[0][0]) if len(timed) > 1 else float("nan")
    report = {
        "benchmark": "node_latency", "device": cpu_name(), "duration_s": args.duration,
        "input": {"rate_hz": 30.0, "size": [height, width], "encoding": "rgb8"},
        "parameters": args.param,
        "model": portable_path(args.model) if args.model else f"{DEFAULT_PRESET} (random weights)", "backend": diag.get("backend"),
        "window": {"len": 16, "hop": 4, "stride": 1},
        "end_to_end_latency_ms": {"p50": round(float(np.percentile(steady, 50)), 1),
                                  "p99": round(float(np.percentile(steady, 99)), 1),
                                  "max": round(float(steady.max()), 1), "frames": int(len(latency_ms))},
        "odometry_latency_ms": {"p50": round(float(np.percentile(odometry_steady, 50)), 1),
                                "p99": round(float(np.percentile(odometry_steady, 99)), 1),
                                "max": round(float(odometry_steady.max()), 1), "frames": int(len(odometry_ms))},
        "throughput_depth_hz": round((len(timed) - 1) / span, 2),
        "node_diagnostics": diag,
        "startup": starts,
        "memory_rss_mib": {"first_minute_mean": round(float(first.mean()), 1),
                           "last_minute_mean": round(float(last.mean()), 1), "max": round(float(mem[:, 1].max()), 1),
                           "flat": bool(abs(last.mean() - first.mean()) <= 0.05 * first.mean()),
                           "with_child_processes_max": round(float(mem[:, 2].max()), 1)},
    }
    write_result(report, "node", cpu_name(), args.out)


if __name__ == "__main__":
    main()
