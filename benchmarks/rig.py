"""A camera rig on one node against the same cameras on separate nodes: 1, 2 and 4 cameras at 640x480, 15 Hz
each, the default model on the embedded default backend.

Each camera is a video_publisher process (its own procedural clip, looped, best effort, as a camera driver
publishes); perception_node runs them all (`cameras`, windows batched through one model) or one node per camera,
each in its camera's namespace (the same topics). This process subscribes to every camera's depth/image and
records receive time minus the image's stamp (publish time, same clock). After a warm-up, for `--duration`
seconds: each camera's end-to-end latency p50/p99 and depth rate, and the CPU time of the node processes (user +
system, from /proc) per camera; at the end each camera's windows replaced and frames dropped (node diagnostics).
Prints JSON and writes benchmarks/results/rig-<device>.json.

    .venv/bin/python benchmarks/rig.py --duration 60
"""
from __future__ import annotations

import argparse
import os
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

from fourds_ros.contract import node_topic  # noqa: E402
from fourds_ros.ros.messages import stamp_ns  # noqa: E402
from fourds_ros.ros.processes import NodeProcess, TopicRecorder  # noqa: E402
from fourds_ros.synthetic.pattern_clip import moving_pattern_clip  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from result_file import cpu_name, write_result  # noqa: E402

CAMERAS = ("front", "rear", "left", "right")
RATE_HZ = 15.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pgid: int) -> float:
    """User + system CPU of every process in the process group (a node and anything it started)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state ppid pgrp ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def camera_status(msg, camera: str):
    """This camera's status in a /diagnostics message, if it is there (rig: '<node> <camera>'; separate
    nodes: the node in the camera's namespace)."""
    for status in msg.status:
        if status.name.endswith(f" {camera}") or f"/{camera}/" in status.name:
            return {kv.key: kv.value for kv in status.values}
    return None


def run(mode: str, cameras: tuple[str, ...], frames_dir: dict[str, Path], args, tmp: Path) -> dict:
    domain = args.domain
    params = ["--params-file", REPO / "config" / "perception.yaml", "-p", f"backend:={args.backend}",
              "-p", f"device:={args.device}"]
    if mode == "rig":
        nodes = [NodeProcess("perception_node", ["--ros-args", *params, "-p", f"cameras:=[{', '.join(cameras)}]"],
                             domain, tmp)]
    else:
        nodes = [NodeProcess("perception_node", ["--ros-args", *params, "-r", f"__ns:=/{name}"], domain, tmp)
                 for name in cameras]
    topics = {f"/{name}/{node_topic('depth/image')}": Image for name in cameras}
    recorder, publishers = None, []
    try:
        for node in nodes:
            node.wait_for_log("ready:", timeout=300)
        recorder = TopicRecorder(domain, {**topics, "/diagnostics": DiagnosticArray}, reliable=False)
        for name in cameras:
            publishers.append(NodeProcess("video_publisher", [
                "--ros-args", "-r", f"__ns:=/{name}", "-p", f"source:={frames_dir[name]}", "-p", f"rate:={RATE_HZ}",
                "-p", "loop:=true", "-p", "reliability:=best_effort", "-p", "wait_for_subscribers:=1"], domain, tmp))
        recorder.wait_until(lambda: all(recorder.messages(t) for t in topics), 120, "every camera's first depth")
        time.sleep(args.warmup)  # the benchmark's clock: how long to stream before measuring
        began, cpu0 = time.time(), sum(cpu_seconds(n.proc.pid) for n in nodes)
        time.sleep(args.duration)
        ended, cpu1 = time.time(), sum(cpu_seconds(n.proc.pid) for n in nodes)
        for p in publishers:
            p.stop()
        diagnostics = {}
        for msg in reversed(recorder.messages("/diagnostics")):
            for name in cameras:
                if name not in diagnostics and (values := camera_status(msg, name)) is not None:
                    diagnostics[name] = values
            if len(diagnostics) == len(cameras):
                break
        per_camera = {}
        for name, topic in zip(cameras, topics):
            timed = [(t, (t - stamp_ns(m.header) / 1e9) * 1e3) for t, m in recorder.timed(topic)
                     if began <= t <= ended]
            latency = np.array([ms for _, ms in timed]) if timed else np.array([np.nan])
            d = diagnostics.get(name, {})
            per_camera[name] = {"latency_ms": {"p50": round(float(np.percentile(latency, 50)), 1),
                                               "p99": round(float(np.percentile(latency, 99)), 1)},
                                "depth_rate_hz": round(len(timed) / (ended - began), 2),
                                "windows_processed": int(d.get("windows_processed", -1)),
                                "windows_replaced": int(d.get("windows_dropped", -1)),
                                "frames_dropped": int(d.get("frames_dropped", -1))}
        backend = next(iter(diagnostics.values()), {}).get("backend")
    finally:
        for p in [*publishers, *nodes]:
            p.stop()
        if recorder is not None:
            recorder.close()
    cpu_cores = (cpu1 - cpu0) / (ended - began)
    return {"mode": mode, "cameras": len(cameras), "backend": backend,
            "node_cpu_cores": round(cpu_cores, 3), "node_cpu_cores_per_camera": round(cpu_cores / len(cameras), 3),
            "real_time": all(c["depth_rate_hz"] >= 0.95 * RATE_HZ for c in per_camera.values()),
            "per_camera": per_camera}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured per configuration")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds streamed before measuring")
    parser.add_argument("--cameras", default="1,2,4", help="rig sizes to run")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--device", default="cpu", help="the nodes' device (cuda with --backend torch)")
    parser.add_argument("--size", default="480x640", help="camera image HxW")
    parser.add_argument("--domain", type=int, default=88)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    sizes = [int(n) for n in args.cameras.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames_dir = {}
        for seed, name in enumerate(CAMERAS[:max(sizes)]):
            frames_dir[name] = tmp / name
            frames_dir[name].mkdir()
            for i, frame in enumerate(moving_pattern_clip(90, height, width, seed=seed)):
                cv2.imwrite(str(frames_dir[name] / f"{i:04d}.png"), frame[..., ::-1])
        for n in sizes:
            for mode in ("rig", "separate") if n > 1 else ("rig",):
                result = run(mode, CAMERAS[:n], frames_dir, args, tmp)
                print(f"{n} cameras, {mode}: {result['node_cpu_cores_per_camera']} cores a camera, real time "
                      f"{result['real_time']}", file=sys.stderr)
                results.append(result)
    ratios = {}
    for n in sizes[1:] if sizes[0] == 1 else sizes:
        rig = next(r for r in results if r["cameras"] == n and r["mode"] == "rig")
        separate = next((r for r in results if r["cameras"] == n and r["mode"] == "separate"), None)
        if separate:
            ratios[str(n)] = round(rig["node_cpu_cores_per_camera"] / separate["node_cpu_cores_per_camera"], 3)
    report = {"benchmark": "rig", "device": cpu_name(), "cpu_count": os.cpu_count(),
              "input": {"rate_hz": RATE_HZ, "size": [height, width], "encoding": "rgb8"},
              "model": "models/default", "duration_s": args.duration, "warmup_s": args.warmup,
              "cpu_per_camera_rig_over_separate": ratios, "runs": results}
    write_result(report, "rig", cpu_name(), args.out)


if __name__ == "__main__":
    main()
