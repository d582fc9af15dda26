"""Reports: metrics.json with figures, and the few lines a person reads in the terminal."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..bags.reader import Frame
from .metrics import CONFIDENCE_THRESHOLDS
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


def report_header(bag: Path, topic: str, frames: list[Frame], model_dir: Path, notes: list[str]) -> dict:
    """What every report starts with: which bag and model, and every note about the input (frames skipped,
    a damaged bag, where the ground truth came from, what `convert` said)."""
    from ..bags.convert import read_conversion
    conversion = read_conversion(bag) if Path(bag).is_dir() else None
    header = {"bag": portable_path(bag), "image_topic": topic, "frames": len(frames), "model": portable_path(model_dir),
              "input_notes": list(notes)}
    if conversion is not None:
        header["conversion"] = {k: v for k, v in conversion.items() if k != "source"}
        header["input_notes"] += conversion.get("notes", [])
    return header


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
        files["video"] = write_video(out_dir / "side_by_side.mp4", frames, pred.depth, pred.depth_confidence)
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
    depth = model.get("depth", {})
    if "by_confidence" in depth:
        line = f"  depth AbsRel with the stream's own scale (no alignment): {depth['raw_metric']['abs_rel']:.3f}"
        lines.append(line + "; by confidence: " + ", ".join(
            f">={t}: {v['abs_rel']:.3f} (constant {v['constant_abs_rel']:.3f}) on {100 * v['coverage']:.0f}%"
            for t, v in depth["by_confidence"].items()))
    ego = model.get("egomotion", {})
    if ego.get("static"):
        drift_of = lambda m: m["egomotion"]["drift"]["rotation_drift_deg_per_min"]  # noqa: E731
        line = f"  standing camera, rotation drift: model {drift_of(model):.2f} deg/min"
        if "orb_essential_vo" in baselines:
            line += f", ORB VO {drift_of(baselines['orb_essential_vo']):.2f} deg/min"
        lines.append(line + " (ATE means little when the camera does not move)")
    lines += [f"  note: {n}" for n in report.get("input_notes", []) + report.get("notes", [])]
    lines.append(f"report: {out / 'metrics.json'} ({', '.join(v for k, v in report['files'].items() if k != 'metrics')})")
    return "\n".join(lines)


# (row name, metric group, keys, higher is better): what a summary over many reports compares.
SUMMARY_ROWS = [
    ("depth_abs_rel", "depth", ("median_per_frame", "abs_rel"), False),
    ("depth_delta_1.25", "depth", ("median_per_frame", "delta_1.25"), True),
    ("depth_metric_abs_rel", "depth", ("raw_metric", "abs_rel"), False),
    *[(f"depth{part}_at_confidence_{t:g}", "depth", ("by_confidence", f"{t:g}", key), higher)
      for t in CONFIDENCE_THRESHOLDS for part, key, higher in (("_abs_rel", "abs_rel", False),
                                                               ("_constant_abs_rel", "constant_abs_rel", False),
                                                               ("_coverage", "coverage", True))],
    ("ate_rmse_m", "egomotion", ("ate_rmse_m",), False),
    ("ate_se3_rmse_m", "egomotion", ("ate_se3_rmse_m",), False),
    ("rotation_drift_deg_per_min", "egomotion", ("drift", "rotation_drift_deg_per_min"), False),
    ("rpe_rot_rmse_deg", "egomotion", ("rpe_rot_rmse_deg",), False),
    ("points_average_jaccard", "point_tracks", ("average_jaccard",), True),
    ("points_position_accuracy", "point_tracks", ("average_pts_within_thresh",), True),
    ("points_occlusion_accuracy", "point_tracks", ("occlusion_accuracy",), True),
    ("boxes_mean_iou", "box_tracks", ("mean_iou",), True),
]


STATIC_ROWS = ("rotation_drift_deg_per_min",)


def _lookup(group: dict, keys: tuple[str, ...]):
    for key in keys:
        if not isinstance(group, dict) or key not in group:
            return None
        group = group[key]
    return group


def summarize_reports(paths: list[Path]) -> dict:
    """One table over many `metrics.json`: each row's model value next to every baseline that has it, the mean
    over reports, and on how many the model is better than each baseline."""
    import math
    rows: dict[str, dict] = {}
    backend = None
    for path in paths:
        report = json.loads(Path(path).read_text())
        backend = backend or report.get("backend")
        entry = {}
        sources = {"model": report["model_metrics"], **report.get("baselines", {})}
        static = bool(report["model_metrics"].get("egomotion", {}).get("static"))
        for name, group, keys, _ in SUMMARY_ROWS:
            if group == "egomotion" and (name in STATIC_ROWS) != static:
                continue  # a standing camera is scored by drift, a moving one by trajectory error
            values = {who: _lookup(metrics.get(group, {}), keys) for who, metrics in sources.items()}
            values = {who: float(v) for who, v in values.items() if v is not None}
            if "model" in values:
                entry[name] = values
        ego = report["model_metrics"].get("egomotion")
        if ego is not None:
            entry["static"] = bool(ego.get("static"))
        rows[Path(path).parent.name] = entry

    def mean(values):  # a report where a metric is undefined does not sink the mean
        values = [v for v in values if not math.isnan(v)]
        return sum(values) / len(values) if values else float("nan")

    means, wins = {}, {}
    for name, _, _, higher in SUMMARY_ROWS:
        having = [r[name] for r in rows.values() if name in r]
        if not having:
            continue
        means[name] = {who: mean([r[who] for r in having if who in r]) for who in having[0]}
        for who in having[0]:
            if who == "model":
                continue
            pairs = [(r["model"], r[who]) for r in having if who in r]
            better = [m > b if higher else m < b for m, b in pairs]
            wins[f"{name} vs {who}"] = f"model better on {sum(better)} of {len(better)}"
    return {"reports": rows, "mean": means, "per_report": wins, "backend": backend}
