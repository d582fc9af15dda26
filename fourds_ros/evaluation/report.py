"""Reports: metrics.json with figures, and the few lines a person reads in the terminal."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..bags.reader import Frame
from .scoring import AlignedTruth, Predictions


def portable_path(path) -> str:
    """A path as a report may hold it: relative to the working directory when inside it, else its last two parts.

    Committed reports must not carry the paths of the machine that made them.
    """
    path = Path(path)
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(Path(*path.parts[-2:]))


def runtime_summary(pred: Predictions) -> dict:
    s = pred.stats
    latencies = np.array(s.latencies_s) * 1e3
    return {"window_latency_ms": {"mean": round(float(latencies.mean()), 2), "p50": round(float(np.percentile(latencies, 50)), 2),
                                  "p99": round(float(np.percentile(latencies, 99)), 2)} if len(latencies) else None,
            "windows_processed": s.windows_processed, "windows_dropped": s.windows_dropped,
            "frames_emitted": s.frames_emitted, "frames_dropped": s.frames_dropped}


def write_report(report: dict, out_dir: Path, frames: list[Frame], truth: AlignedTruth, pred: Predictions,
                 point_query, baseline_predictions: dict, video: bool) -> None:
    from .plots import depth_figure, track_figure, trajectory_figure, write_video
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = report["files"] = {"metrics": "metrics.json"}
    if pred.depth is not None:
        files["depth_plot"] = depth_figure(out_dir / "depth.png", frames, truth.depth, pred.depth)
    if pred.world_from_camera is not None and truth.poses is not None:
        files["trajectory_plot"] = trajectory_figure(out_dir / "trajectory.png", truth.poses, pred.world_from_camera,
                                                     baseline_predictions.get("vo"))
    if pred.point_tracks is not None and point_query is not None:
        files["tracks_plot"] = track_figure(out_dir / "tracks.png", frames, truth, pred, point_query,
                                            baseline_predictions.get("lucas_kanade"))
    if video and pred.depth is not None:
        files["video"] = write_video(out_dir / "side_by_side.mp4", frames, pred.depth)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")


# (label, metric group, keys into the group, baseline and its name, unit): the numbers a summary shows.
HEADLINES = [
    ("depth AbsRel (median-aligned per frame)", "depth", ("median_per_frame", "abs_rel"), "constant_depth",
     "constant depth", ""),
    ("egomotion ATE (Sim3)", "egomotion", ("ate_rmse_m",), "orb_essential_vo", "ORB VO", " m"),
    ("points average Jaccard", "point_tracks", ("average_jaccard",), "lucas_kanade", "Lucas-Kanade", ""),
    ("boxes mean IoU", "box_tracks", ("mean_iou",), None, None, ""),
]


def summary(report: dict, out: Path) -> str:
    """A few lines a person reads: the headline numbers next to the baselines, and where the files are."""
    def value(group: dict, keys: tuple[str, ...]) -> float:
        for key in keys:
            group = group[key]
        return group

    lines = [f"{report['frames']} frames of {report['image_topic']} through {report['backend']}"]
    model, baselines = report["model_metrics"], report.get("baselines", {})
    for label, group, keys, baseline, baseline_name, unit in HEADLINES:
        if group not in model:
            continue
        line = f"  {label}: model {value(model[group], keys):.3f}{unit}"
        if baseline in baselines:
            line += f", {baseline_name} {value(baselines[baseline][group], keys):.3f}{unit}"
        lines.append(line)
    lines += [f"  note: {n}" for n in report.get("notes", [])]
    lines.append(f"report: {out / 'metrics.json'} ({', '.join(v for k, v in report['files'].items() if k != 'metrics')})")
    return "\n".join(lines)
