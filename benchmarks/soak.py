"""A long run of perception_node at 30 Hz against ground truth: does anything grow, go stale or drift?

A robot drives a loop through a photo-real room (`fourds-ros synth --style photo --camera-motion robot`:
driving, turning in place, stopping, objects moving by itself) for `--loop-s` seconds; played forward and back
again without end (the robot reverses along its path), its frames go to the real node (its own process, the
shipped default model on the embedded default backend) at 30 Hz, in real time, for `--minutes`. This process
publishes the frames, stamped with the wall clock, and digests every output as it arrives (nothing is kept
but a few numbers a frame, so the benchmark itself stays flat):

- once a minute: the node's resident memory, open file descriptors and threads, and its diagnostics;
- per minute: the odometry rate, windows replaced, NaN published (odometry; depth images wholly NaN), the
  egomotion's error over the minute (the relative motion from the minute's first to its last pose, against the
  truth, metric: no alignment), its position error since the start, the depth's AbsRel (median-aligned, and
  metric: the stream's own scale), and whether the published covariances can be fused: the share of frames whose
  twist (the velocity since the frame before) lies within its covariance's 3-sigma bound against the true
  velocity (NEES against the chi-square 99.73% bound for 6 DoF) with the mean NEES (expected: 6), and the same
  for the pose since the start against the pose covariance.

The record is 30 minutes (`--minutes 30`); CI runs 2 minutes on a small camera. Prints JSON and writes
benchmarks/results/soak-<device>.json (or `--out`).

    .venv/bin/python benchmarks/soak.py --minutes 30
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from fourds_ros.bags.reader import pose_matrix, twist_of  # noqa: E402
from fourds_ros.contract import node_topic  # noqa: E402
from fourds_ros.evaluation.metrics import CHI2_6DOF_3SIGMA, nees, twist_consistency  # noqa: E402
from fourds_ros.evaluation.report import portable_path  # noqa: E402
from fourds_ros.ros.messages import stamp_ns  # noqa: E402
from fourds_ros.ros.processes import NodeProcess, TopicRecorder, diagnostics_values  # noqa: E402
from result_file import cpu_name, result_path, write_result  # noqa: E402

RATE_HZ = 30.0
DEFAULT_MODEL = REPO / "models" / "default"


def ping_pong(frames: int) -> np.ndarray:
    """0, 1, ..., n-1, n-2, ..., 1: the loop played forward and back, with no frame twice in a row."""
    return np.concatenate([np.arange(frames), np.arange(frames - 2, 0, -1)])


def process_numbers(pid: int) -> dict:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mib": round(int(status["VmRSS"].split()[0]) / 1024, 1), "threads": int(status["Threads"]),
            "open_fds": len(os.listdir(f"/proc/{pid}/fd"))}


class Soak:
    """Publishes the loop in real time and digests the node's outputs as they come."""

    def __init__(self, seq, order: np.ndarray, domain: int):
        self.seq, self.order = seq, order
        self.index_of: dict[int, int] = {}  # stamp -> frame of the loop (written before the frame is sent)
        self.odometry: list[tuple] = []  # (stamp, pose 4x4, covariance 6x6, twist 6 or None, its covariance)
        self.depth: list[tuple] = []  # (stamp, AbsRel median-aligned, AbsRel metric, all NaN)
        self.recorder = TopicRecorder(domain, {"/diagnostics": DiagnosticArray})
        node = self.recorder.node
        qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=50)
        self.image_pub = node.create_publisher(Image, node_topic("image"), qos)
        self.info_pub = node.create_publisher(CameraInfo, node_topic("camera_info"), qos)
        self.subscriptions = [node.create_subscription(Odometry, node_topic("odometry"), self._odometry, qos),
                              node.create_subscription(Image, node_topic("depth/image"), self._depth, qos)]
        self.sent = 0

    def connected(self) -> bool:
        """The node takes our frames and we take its outputs (a frame sent before that is lost)."""
        return self.image_pub.get_subscription_count() > 0 and all(
            s.get_publisher_count() > 0 for s in self.subscriptions)

    def _odometry(self, msg: Odometry) -> None:
        cov = np.asarray(msg.pose.covariance, np.float64).reshape(6, 6)
        velocity, velocity_cov = twist_of(msg) if msg.twist.covariance[0] >= 0 else (None, None)
        self.odometry.append((stamp_ns(msg.header), pose_matrix(msg.pose.pose), cov, velocity, velocity_cov))

    def _depth(self, msg: Image) -> None:
        stamp = stamp_ns(msg.header)
        depth = np.frombuffer(msg.data, np.float32).reshape(msg.height, msg.width)
        truth = self.seq.depth[self.index_of[stamp]]
        rows = (np.arange(msg.height) * truth.shape[0] / msg.height).astype(int)
        cols = (np.arange(msg.width) * truth.shape[1] / msg.width).astype(int)
        truth = truth[np.ix_(rows, cols)]
        ok = np.isfinite(depth) & (depth > 0) & np.isfinite(truth) & (truth > 0)
        if ok.sum() < 16:
            self.depth.append((stamp, np.nan, np.nan, not np.isfinite(depth).any()))
            return
        d, t = depth[ok].astype(np.float64), truth[ok].astype(np.float64)
        aligned = d * np.median(t) / np.median(d)
        self.depth.append((stamp, float(np.mean(np.abs(aligned - t) / t)), float(np.mean(np.abs(d - t) / t)), False))

    def publish(self, frames: int, stop: threading.Event) -> None:
        """`frames` frames at 30 Hz from now, paced by the clock (the camera does not wait for the node)."""
        k = self.seq.intrinsics
        h, w = self.seq.rgb.shape[1:3]
        start = time.monotonic()
        for n in range(frames):
            if stop.is_set():
                return
            delay = start + n / RATE_HZ - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing a camera, not waiting for a result
            stamp = time.time_ns()
            index = int(self.order[n % len(self.order)])
            self.index_of[stamp] = index
            info = CameraInfo(height=h, width=w, k=[float(v) for v in k.ravel()], distortion_model="plumb_bob",
                              d=[0.0] * 5, p=[float(k[0, 0]), 0.0, float(k[0, 2]), 0.0, 0.0, float(k[1, 1]),
                                              float(k[1, 2]), 0.0, 0.0, 0.0, 1.0, 0.0])
            image = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                          data=self.seq.rgb[index].tobytes())
            for msg in (info, image):
                msg.header.frame_id = "camera_optical_frame"
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            self.info_pub.publish(info)
            self.image_pub.publish(image)
            self.sent = n + 1


def motion_error(est_a, est_b, true_a, true_b) -> tuple[float, float, float]:
    """(translation error m, rotation error deg, true distance m) of the motion a -> b."""
    est = np.linalg.inv(est_a) @ est_b
    true = np.linalg.inv(true_a) @ true_b
    error = np.linalg.inv(true) @ est
    angle = float(np.degrees(np.linalg.norm(Rotation.from_matrix(error[:3, :3]).as_rotvec())))
    return float(np.linalg.norm(error[:3, 3])), angle, float(np.linalg.norm(true[:3, 3]))


def pose_nees(est: np.ndarray, true: np.ndarray, covariance: np.ndarray) -> float:
    """The pose error (position, then rotation vector, world frame: the covariance's order) whitened."""
    return nees(np.concatenate([est[:3, 3] - true[:3, 3],
                                Rotation.from_matrix(est[:3, :3] @ true[:3, :3].T).as_rotvec()]), covariance)


def twist_summary(rows: list[tuple], truth: np.ndarray, index_of: dict) -> dict:
    """The twists of `rows` (odometry messages in order) against the true velocity since the message before,
    scored as the eval reports score them (`metrics.twist_consistency`)."""
    twists = np.array([np.full(6, np.nan) if r[3] is None else r[3] for r in rows])
    covariances = np.array([np.full((6, 6), np.nan) if r[3] is None else r[4] for r in rows])
    scored = twist_consistency(twists, covariances, truth[[index_of[r[0]] for r in rows]],
                               np.array([r[0] for r in rows]) * 1e-9)
    if scored is None:
        return {}
    return {"twist_3sigma_coverage": round(scored["coverage_3sigma"], 3),
            "twist_nees_mean": round(scored["nees_mean"], 2)}


def pose_summary(values: np.ndarray) -> dict:
    if not len(values):
        return {}
    return {"pose_3sigma_coverage": round(float(np.mean(values <= CHI2_6DOF_3SIGMA)), 3),
            "pose_nees_mean": round(float(np.mean(values[np.isfinite(values)])), 2)}


def per_minute(soak: Soak, samples: list[dict], start_ns: int, minutes: int) -> list[dict]:
    truth = soak.seq.world_from_camera
    odo = [row for row in soak.odometry if row[0] in soak.index_of]
    if not odo:
        return []
    first_stamp, first_pose = odo[0][:2]
    true_first = truth[soak.index_of[first_stamp]]
    out = []
    for m in range(minutes):
        lo, hi = start_ns + m * 60 * 10**9, start_ns + (m + 1) * 60 * 10**9
        rows = [r for r in odo if lo <= r[0] < hi]
        depth = [r for r in soak.depth if lo <= r[0] < hi]
        entry = {"minute": m + 1, "odometry_hz": round(len(rows) / 60.0, 2),
                 "nan_odometry": int(sum(not np.isfinite(row[1]).all() for row in rows)),
                 "nan_depth_images": int(sum(r[3] for r in depth)), "depth_images": len(depth)}
        if len(rows) >= 2:
            (sa, pa), (sb, pb) = rows[0][:2], rows[-1][:2]
            t_err, r_err, dist = motion_error(pa, pb, truth[soak.index_of[sa]], truth[soak.index_of[sb]])
            since = np.linalg.inv(true_first) @ truth[soak.index_of[sb]]
            est_since = np.linalg.inv(first_pose) @ pb
            poses = np.array([pose_nees(np.linalg.inv(first_pose) @ p, np.linalg.inv(true_first) @
                                        truth[soak.index_of[s]], c) for s, p, c, _, _ in rows if c[0, 0] >= 0])
            entry.update({"motion_error_m": round(t_err, 4), "motion_error_deg": round(r_err, 3),
                          "true_motion_m": round(dist, 3),
                          "position_error_since_start_m": round(float(np.linalg.norm(est_since[:3, 3] - since[:3, 3])), 4)})
            entry.update(twist_summary(rows, truth, soak.index_of))
            entry.update(pose_summary(poses))
        finite = [r for r in depth if np.isfinite(r[1])]
        if finite:
            entry.update({"depth_abs_rel": round(float(np.mean([r[1] for r in finite])), 4),
                          "depth_abs_rel_metric": round(float(np.mean([r[2] for r in finite])), 4)})
        if m + 1 < len(samples):
            before, after = samples[m], samples[m + 1]
            entry["windows_replaced"] = int(after["windows_dropped"]) - int(before["windows_dropped"])
            entry.update({key: after[key] for key in ("rss_mib", "open_fds", "threads")})
        out.append(entry)
    return out


def targets(minutes: list[dict]) -> dict:
    """The issue's targets, checked on the record (None where the run is too short to say)."""
    if len(minutes) < 2:
        return {}
    rss = [m["rss_mib"] for m in minutes if "rss_mib" in m]
    replaced = [m.get("windows_replaced", 0) for m in minutes]
    five = max(1, min(5, len(minutes) // 2))
    early = [m.get("motion_error_m", np.nan) for m in minutes[:five]]
    late = [m.get("motion_error_m", np.nan) for m in minutes[-five:]]
    coverage = [m["twist_3sigma_coverage"] for m in minutes if "twist_3sigma_coverage" in m]
    nees_mean = [m["twist_nees_mean"] for m in minutes if "twist_nees_mean" in m]
    return {
        "memory_within_5pct_of_minute_1": bool(rss and max(abs(r - rss[0]) for r in rss) <= 0.05 * rss[0]),
        "windows_replaced_never_above_minute_1": bool(max(replaced[1:]) <= replaced[0]),
        "no_nan_published": bool(sum(m["nan_odometry"] + m["nan_depth_images"] for m in minutes) == 0),
        "motion_error_first_vs_last_minutes_m": [round(float(np.nanmean(early)), 4), round(float(np.nanmean(late)), 4)],
        "egomotion_no_worse_at_the_end": bool(np.nanmean(late) <= np.nanmean(early)),
        "twist_3sigma_coverage_mean": round(float(np.mean(coverage)), 3) if coverage else None,
        "twist_coverage_at_least_95pct": bool(coverage and np.mean(coverage) >= 0.95),
        "twist_nees_mean": round(float(np.mean(nees_mean)), 2) if nees_mean else None,
        "twist_nees_within_3x_of_6": bool(nees_mean and 2.0 <= np.mean(nees_mean) <= 18.0),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--loop-s", type=float, default=40.0, help="length of the rendered path (played forward and back)")
    parser.add_argument("--size", default="240x320", help="camera image HxW")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--domain", type=int, default=88)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    from fourds_ros.synthetic.generator import generate
    height, width = (int(v) for v in args.size.split("x"))
    seq = generate(args.seed, int(args.loop_s * RATE_HZ), height, width, fps=RATE_HZ, camera_motion="robot",
                   style="photo")
    order = ping_pong(len(seq.rgb))
    frames = int(args.minutes * 60 * RATE_HZ)
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess("perception_node", ["--ros-args", "--params-file", REPO / "config" / "perception.yaml",
                                               "-p", f"model_dir:={args.model}"], args.domain, Path(tmp))
        soak, stop = None, threading.Event()
        try:
            node.wait_for_log("ready:", timeout=300)
            soak = Soak(seq, order, args.domain)
            soak.recorder.wait_until(soak.connected, 60, "the node's topics to match")
            samples = [dict(process_numbers(node.proc.pid), windows_dropped=0)]
            start_ns = time.time_ns()
            sender = threading.Thread(target=soak.publish, args=(frames, stop), daemon=True)
            sender.start()
            for minute in range(1, args.minutes + 1):
                deadline = time.monotonic() + 60.0
                while time.monotonic() < deadline and node.alive():
                    time.sleep(1.0)  # sampling once a minute, not waiting for the node
                if not node.alive():
                    raise SystemExit(f"perception_node died in minute {minute}:\n{node.log()[-3000:]}")
                diag = soak.recorder.last_diagnostics() or {}
                samples.append(dict(process_numbers(node.proc.pid), windows_dropped=diag.get("windows_dropped", 0)))
                print(f"minute {minute}: {samples[-1]}, odometry {len(soak.odometry)}, depth {len(soak.depth)}",
                      file=sys.stderr, flush=True)
                # A long run leaves its record minute by minute: one cut short still says what it saw.
                partial = result_path("soak", cpu_name(), args.out).with_suffix(".partial.json")
                partial.write_text(json.dumps({"minutes_done": minute, "per_minute": per_minute(
                    soak, samples, start_ns, minute), "node_diagnostics": diag}, indent=2) + "\n")
            sender.join()
            soak.recorder.wait_until(lambda: (d := soak.recorder.last_diagnostics()) and int(d["frames_emitted"]) +
                                     int(d["frames_dropped"]) >= int(d["frames_accepted"]), 120, "the node to drain")
            diag = diagnostics_values(soak.recorder.messages("/diagnostics")[-1])
        finally:
            stop.set()
            node.stop()
            if soak is not None:
                soak.recorder.close()
    minutes = per_minute(soak, samples, start_ns, args.minutes)
    report = {
        "benchmark": "soak", "device": cpu_name(), "minutes": args.minutes,
        "input": {"rate_hz": RATE_HZ, "size": [height, width], "loop_s": args.loop_s, "seed": args.seed,
                  "scene": "photo room, robot path (drive, turn in place, stop, movers), played forward and back"},
        "model": portable_path(args.model), "backend": diag.get("backend"),
        "frames_sent": soak.sent, "odometry_received": len(soak.odometry), "depth_received": len(soak.depth),
        "node_diagnostics": diag, "per_minute": minutes, "targets": targets(minutes),
    }
    write_result(report, "soak", cpu_name(), args.out)
    result_path("soak", cpu_name(), args.out).with_suffix(".partial.json").unlink(missing_ok=True)
    return report


if __name__ == "__main__":
    main()
