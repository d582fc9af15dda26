"""The geometric stage: what it costs per window, and how each egomotion mode scores next to the baselines.

1. Cost: geometric egomotion plus point refinement of 64 tracks over one window's 4 new frames at 640x480
   (real frames of ../shared/real/holo_office_b resized, or a procedural clip without them), per window; and
   the floor of this design: one forward Lucas-Kanade pass a frame over the same features and tracks.
2. Quality: `fourds-ros eval` of the default model with each egomotion mode on the real sequences (converted
   from ../shared/real into a temporary folder, never into the project) and the synthetic held-out bags
   (seeds 1001-1005; standing camera with people walking by: 2001-2003), next to ORB VO; point tracks with and
   without refinement next to Lucas-Kanade.
Prints JSON and writes benchmarks/results/geometry-<device>.json.

    .venv/bin/python benchmarks/geometry_stage.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fourds_ros.streaming.egomotion import GeometricOdometry  # noqa
from fourds_ros.streaming.settings import EGOMOTION_MODES as MODES, EgomotionConfig, StreamConfig  # noqa: E402
from fourds_ros.streaming.refine import PointRefiner  # noqa: E402
from fourds_ros.streaming.tracks import TrackFrame  # noqa: E402
from result_file import cpu_name, write_result  # noqa: E402

REAL = Path(os.environ.get("FOURDS_REAL_DATA", REPO.parent / "shared" / "real"))
HOP, TRACKS, SIZE = 4, 64, (480, 640)


def frames_640x480() -> tuple[list[np.ndarray], np.ndarray, str]:
    images = sorted((REAL / "holo_office_b" / "images").glob("*.png"))
    if images:
        k = np.loadtxt(REAL / "holo_office_b" / "K.txt")
        sx, sy = SIZE[1] / 540, SIZE[0] / 360
        k[0] *= sx
        k[1] *= sy
        grey = [cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), SIZE[::-1]) for p in images[:64]]
        return grey, k, "holo_office_b frames resized to 640x480"
    from fourds_ros.synthetic.pattern_clip import moving_pattern_clip
    clip = moving_pattern_clip(64, *SIZE, shift_px=3.0)
    k = np.array([[554.0, 0, 319.5], [0, 554.0, 239.5], [0, 0, 1]])
    return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip], k, "procedural clip 640x480"


def stage_cost(repeats: int) -> dict:
    """As the pipeline runs it: frames made grey and resized to at most `geometry_pixels` on arrival (counted), then the
    odometry and the refinement per window."""
    from fourds_ros.streaming.frames import GeometryFrames
    camera, k_camera, source = frames_640x480()
    geometry = GeometryFrames(len(camera), StreamConfig().geometry_pixels)
    began = time.perf_counter()
    for seq, frame in enumerate(camera):
        geometry.write(frame[..., None], "mono8", seq)
    arrival_ms = (time.perf_counter() - began) / len(camera) * 1e3
    grey = list(geometry.frames)
    to_camera = geometry.pixel_map()
    k = to_camera.intrinsics_to_model(k_camera)
    per_window = []
    for _ in range(repeats):
        odometry, refiner = GeometricOdometry(EgomotionConfig()), PointRefiner()
        corners = cv2.goodFeaturesToTrack(grey[0], TRACKS, 0.01, 10).reshape(-1, 2).astype(np.float32)
        ids = np.arange(len(corners), dtype=np.uint32)
        for start in range(0, len(grey) - HOP, HOP):
            window = np.stack(grey[start:start + HOP + 1])
            began = time.perf_counter()
            for i in range(1, HOP + 1):
                odometry.step(start + i, window[i], k, lambda p: np.full(len(p), 3.0), np.eye(4))
            frames = [TrackFrame(ids, corners.copy(), np.ones(len(ids), np.uint8), np.ones(len(ids), np.float32),
                                 corners.copy()) for _ in range(HOP)]
            refiner.refine(frames, list(range(start, start + HOP + 1)), window, to_camera)
            per_window.append(time.perf_counter() - began)
    return {"frames": source, "geometry_size": list(grey[0].shape[::-1]), "window_new_frames": HOP,
            "point_tracks": int(len(ids)), "grey_resize_ms_per_frame": round(arrival_ms, 3),
            "ms_per_window": _percentiles(per_window[1:]),  # the first window starts the keyframe
            "lucas_kanade_floor_ms_per_window": lucas_kanade_floor(grey, repeats),
            "target_ms_per_window": 10.0}


def lucas_kanade_floor(grey: list[np.ndarray], repeats: int) -> dict:
    """The least this design can cost: one forward Lucas-Kanade pass a frame over the odometry's features and
    the point tracks, each with its own tracker, and nothing else (no check, no fit, no new corners)."""
    config = EgomotionConfig()
    odometry_lk = replace(GeometricOdometry(config).tracker, forward_backward_px=None)
    refine_lk = PointRefiner().tracker
    features = cv2.goodFeaturesToTrack(grey[0], config.features, 0.01, 8).reshape(-1, 2)
    tracks = cv2.goodFeaturesToTrack(grey[0], TRACKS, 0.01, 10).reshape(-1, 2)
    per_window = []
    for _ in range(repeats):
        for start in range(0, len(grey) - HOP, HOP):
            began = time.perf_counter()
            for i in range(start + 1, start + HOP + 1):
                odometry_lk.track(grey[i - 1], grey[i], features)
                refine_lk.track(grey[i - 1], grey[i], tracks)
            per_window.append(time.perf_counter() - began)
    return {"odometry_features": len(features), "point_tracks": len(tracks), **_percentiles(per_window)}


def _percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1e3
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p99": round(float(np.percentile(ms, 99)), 2),
            "mean": round(float(ms.mean()), 2), "max": round(float(ms.max()), 2)}


def quality(workdir: Path, quick: bool) -> dict:
    from fourds_ros.bags.convert import convert
    from fourds_ros.evaluation.offline import evaluate
    from fourds_ros.synthetic.generator import generate
    from fourds_ros.synthetic.writers import write_bag
    bags = {}
    if (REAL / "holo_office_b").is_dir():
        convert(REAL / "holo_office_b", workdir / "holo_office_b", fps=10, overwrite=True)
        bags["holo_office_b"] = workdir / "holo_office_b"
    if (REAL / "euroc_v101_static").is_dir():
        convert(REAL / "euroc_v101_static", workdir / "euroc_v101_static", overwrite=True,
                gt=REAL / "euroc_v101_static" / "gt_vicon2gt_V1_01_easy_20hz.csv")
        bags["euroc_v101_static"] = workdir / "euroc_v101_static"
    os.environ.setdefault("MUJOCO_GL", "egl")
    for seed in (1001,) if quick else (1001, 1002, 1003, 1004, 1005):
        write_bag(generate(seed, 96, 96, 128), workdir / f"seed{seed}", overwrite=True)
        bags[f"seed{seed}"] = workdir / f"seed{seed}"
    # A standing camera while people walk across its view (held-out seeds too).
    for seed in (2001,) if quick else (2001, 2002, 2003):
        write_bag(generate(seed, 96, 96, 128, camera_motion="standing"), workdir / f"standing{seed}", overwrite=True)
        bags[f"standing{seed}"] = workdir / f"standing{seed}"
    rows = {}
    for name, bag in bags.items():
        row = {}
        for mode in MODES:
            refine = mode == "geometric"  # points do not depend on the egomotion mode: score both once
            for points in ((True, False) if refine else (True,)):
                try:
                    report = evaluate(bag, None, workdir / "reports" / f"{name}-{mode}-{points}", progress=False,
                                      settings={"egomotion": mode, "refine_points": points})
                except Exception as exc:  # one failing run is a result too, not the end of the benchmark
                    row[f"{mode}{'' if points else '-unrefined'}"] = {"error": f"{type(exc).__name__}: {exc}"}
                    continue
                m, b = report["model_metrics"], report["baselines"]
                if points:
                    row[mode] = _egomotion(m, b)
                if "point_tracks" in m and refine:
                    row["points_refined" if points else "points_readout_only"] = {
                        "model": _points(m["point_tracks"]), "lucas_kanade": _points(b["lucas_kanade"]["point_tracks"])}
        rows[name] = row
    return rows


def _egomotion(m: dict, b: dict) -> dict:
    e, orb = m["egomotion"], b.get("orb_essential_vo", {}).get("egomotion", {})
    if e["static"]:
        return {"rotation_drift_deg_per_min": e["drift"]["rotation_drift_deg_per_min"],
                "translation_drift_per_min": e["drift"]["translation_drift_per_min"],
                "orb_vo_rotation_drift_deg_per_min": orb.get("drift", {}).get("rotation_drift_deg_per_min")}
    return {"ate_rmse_m": e["ate_rmse_m"], "orb_vo_ate_rmse_m": orb.get("ate_rmse_m"),
            "ratio_to_orb_vo": e["ate_rmse_m"] / orb["ate_rmse_m"] if orb.get("ate_rmse_m") else None}


def _points(p: dict) -> dict:
    return {"average_jaccard": p["average_jaccard"], "position_accuracy": p["average_pts_within_thresh"],
            "occlusion_accuracy": p["occlusion_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one synthetic bag, fewer cost repeats")
    parser.add_argument("--cost-only", action="store_true",
                        help="measure only the cost (on a quiet machine) and keep the result file's quality rows")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = {"device": cpu_name(), "cost": stage_cost(1 if args.quick else 3)}
    if args.cost_only:
        import json
        from result_file import result_path
        previous = result_path("geometry", cpu_name(), args.out)
        report["quality"] = json.loads(previous.read_text())["quality"] if previous.is_file() else None
    else:
        with tempfile.TemporaryDirectory(prefix="fourds-geometry-") as tmp:
            report["quality"] = quality(Path(tmp), args.quick)
    write_result(report, "geometry", cpu_name(), args.out)


if __name__ == "__main__":
    main()
