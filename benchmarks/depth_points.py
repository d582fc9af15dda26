"""What `depth/points` and `depth/confidence` cost the node per frame, by depth resolution.

Per frame, as `ros/outputs.py` does it: the trusted depth (`min_confidence`), the cloud (`depth_cloud.depth_points`:
a ray per pixel, packed x y z confidence) and the PointCloud2 message with its bytes; the confidence image too.
Depth sizes: the default model's 64x64, a ViT-B's 224x224, and 480x640 (a depth at camera resolution). Prints JSON
and writes benchmarks/results/depth_points-<cpu>.json.

    .venv/bin/python benchmarks/depth_points.py [--repeats 200]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fourds_ros.ros import messages  # noqa: E402
from fourds_ros.ros.outputs import float_image  # noqa: E402
from fourds_ros.streaming.depth_cloud import depth_points, trusted_depth  # noqa: E402
from result_file import cpu_name, write_result  # noqa: E402

SIZES = ((64, 64), (224, 224), (480, 640))


def per_frame_ms(work, repeats: int) -> float:
    work()  # warm
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    return round(1e3 * (time.perf_counter() - started) / repeats, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    header = messages.header_at(0, "camera")
    rows = []
    for h, w in SIZES:
        depth = rng.uniform(0.5, 8.0, (h, w)).astype(np.float32)
        confidence = rng.uniform(0, 1, (h, w)).astype(np.float32)
        k = np.array([[w / 1.15, 0, (w - 1) / 2], [0, w / 1.15, (h - 1) / 2], [0, 0, 1]])
        for stride, min_confidence in ((1, 0.0), (1, 0.5), (4, 0.0)):
            rows.append({"depth": f"{w}x{h}", "points_stride": stride, "min_confidence": min_confidence,
                         "points_ms": per_frame_ms(lambda: messages.track_cloud(depth_points(
                             trusted_depth(depth, confidence, min_confidence), confidence, k, stride), header),
                             args.repeats),
                         "depth_and_confidence_images_ms": per_frame_ms(lambda: (
                             float_image(trusted_depth(depth, confidence, min_confidence), header),
                             float_image(confidence, header)), args.repeats)})
    write_result({"benchmark": "depth_points", "device": cpu_name(), "repeats": args.repeats, "per_frame": rows},
                 "depth_points", cpu_name(), args.out)


if __name__ == "__main__":
    main()
