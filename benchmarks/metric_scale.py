"""How far a model's metric depth scale is from the truth on scenes and cameras it never saw: the calibration of
`odometry.metric_scale_sigma` (the translation's share of the published odometry covariance).

Monocular metric depth has no scale of its own: the model guesses it from what the room looks like, and every
metric translation the odometry gives inherits that guess. This renders a calibration set of synthetic sequences
(seeds 3001 on: never trained on, never in the held-out evaluation), each a different room, camera height, field
of view and motion, runs the model over each (every window, no depth fusion: the odometry's map points are placed
at the model's depth) and measures the sequence's scale: the median over frames of median(true) / median(model).
The root mean square of its logarithm is the model's metric scale error (one sigma, log depth).

    .venv/bin/python benchmarks/metric_scale.py             # models/default, 12 sequences
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fourds_ros.bags.reader import Frame  # noqa: E402
from fourds_ros.evaluation.offline import run_offline  # noqa: E402
from fourds_ros.evaluation.report import portable_path  # noqa: E402
from fourds_ros.runtime import create_backend  # noqa: E402
from fourds_ros.streaming import StreamConfig  # noqa: E402
from result_file import cpu_name, write_result  # noqa: E402

# (style, camera motion, vertical fov in degrees, HxW): rooms and cameras of every kind the package is used with.
CAMERAS = [("procedural", "robot", 60, "96x128"), ("photo", "robot", 60, "96x128"),
           ("photo", "handheld", 70, "96x128"), ("photo", "walking", 50, "72x128"),
           ("procedural", "handheld", 45, "96x128"), ("photo", "robot", 75, "120x160")]


def sequence_scale(seq, backend, window_len: int) -> float:
    """median over frames of median(true depth) / median(model depth), on pixels valid in both."""
    frames = [Frame(int(s), "camera", "rgb8", rgb.shape[0], rgb.shape[1], rgb.shape[1] * 3, rgb.tobytes())
              for s, rgb in zip(seq.stamps_ns, seq.rgb)]
    config = StreamConfig.from_values({"window_len": window_len, "egomotion": "readout", "fuse_depth": False,
                                       "point_tracks": 0, "point_seeding": "none",
                                       "flush_after_s": 0.0})
    pred = run_offline(frames, backend, config, progress=False, camera_matrix=seq.intrinsics)
    scales = []
    for depth, truth in zip(pred.depth, seq.depth):
        rows = (np.arange(depth.shape[0]) * truth.shape[0] / depth.shape[0]).astype(int)
        cols = (np.arange(depth.shape[1]) * truth.shape[1] / depth.shape[1]).astype(int)
        truth = truth[np.ix_(rows, cols)]
        ok = np.isfinite(depth) & (depth > 0) & np.isfinite(truth) & (truth > 0)
        if ok.sum() >= 16:
            scales.append(np.median(truth[ok]) / np.median(depth[ok]))
    return float(np.median(scales))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "default")
    parser.add_argument("--sequences", type=int, default=12)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--first-seed", type=int, default=3001)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    from fourds_ros.synthetic.generator import generate
    backend = create_backend("onnxruntime", args.model)
    rows = []
    for n in range(args.sequences):
        seed = args.first_seed + n
        style, motion, fov, size = CAMERAS[n % len(CAMERAS)]
        height, width = (int(v) for v in size.split("x"))
        seq = generate(seed, args.frames, height, width, fovy_deg=fov, camera_motion=motion, style=style)
        scale = sequence_scale(seq, backend, backend.spec.clip[0])
        rows.append({"seed": seed, "style": style, "motion": motion, "fov_deg": fov, "size": size,
                     "true_over_model": round(scale, 4), "log_scale": round(float(np.log(scale)), 4)})
        print(rows[-1], file=sys.stderr, flush=True)
    logs = np.array([r["log_scale"] for r in rows])
    report = {"benchmark": "metric_scale", "device": cpu_name(), "model": portable_path(args.model),
              "frames_per_sequence": args.frames, "sequences": rows,
              "log_scale_rms": round(float(np.sqrt(np.mean(logs ** 2))), 4),
              "log_scale_mean": round(float(np.mean(logs)), 4), "log_scale_abs_max": round(float(np.abs(logs).max()), 4)}
    write_result(report, "metric_scale", cpu_name(), args.out)
    return report


if __name__ == "__main__":
    main()
