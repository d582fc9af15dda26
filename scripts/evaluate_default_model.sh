#!/usr/bin/env bash
# Held-out evaluation of models/default: synthetic bags with seeds never used in training (>= 1000),
# scored with `fourds-ros eval` (model and classical baselines in the same report) into reports/heldout/.
# PRECISION=int8 scores the int8 onnxruntime graph instead: reports under $TMPDIR, the summary in
# reports/heldout/summary-int8.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export MUJOCO_GL=egl
bin=${BIN:-.venv/bin}
precision=${PRECISION:-fp32}
if [[ $precision == fp32 ]]; then
  reports=reports/heldout summary=reports/heldout/summary.json
else
  reports=${TMPDIR:-/tmp}/fourds-heldout-$precision summary=reports/heldout/summary-$precision.json
fi
mkdir -p "$reports"
for seed in 1001 1002 1003 1004 1005; do
  bag=${TMPDIR:-/tmp}/fourds-heldout/seed$seed
  [[ -d $bag ]] || "$bin/fourds-ros" synth --out "$bag" --seed $seed --frames 96 --size 96x128
  "$bin/fourds-ros" eval "$bag" --model models/default --precision "$precision" --out "$reports/seed$seed"
done
REPORTS=$reports SUMMARY=$summary "$bin/python" - <<'PY'
import json, os, pathlib
rows = {}
for path in sorted(pathlib.Path(os.environ["REPORTS"]).glob("seed*/metrics.json")):
    r = json.loads(path.read_text())
    m, b = r["model_metrics"], r["baselines"]
    rows[path.parent.name] = {
        "depth_abs_rel": {"model": m["depth"]["median_per_frame"]["abs_rel"],
                          "constant_depth": b["constant_depth"]["depth"]["median_per_frame"]["abs_rel"]},
        "ate_rmse_m": {"model": m["egomotion"]["ate_rmse_m"], "orb_vo": b["orb_essential_vo"]["egomotion"]["ate_rmse_m"]},
        "points_average_jaccard": {"model": m["point_tracks"]["average_jaccard"],
                                   "lucas_kanade": b["lucas_kanade"]["point_tracks"]["average_jaccard"]},
        "points_position_accuracy": {"model": m["point_tracks"]["average_pts_within_thresh"],
                                     "lucas_kanade": b["lucas_kanade"]["point_tracks"]["average_pts_within_thresh"]},
        "points_occlusion_accuracy": {"model": m["point_tracks"]["occlusion_accuracy"],
                                      "lucas_kanade": b["lucas_kanade"]["point_tracks"]["occlusion_accuracy"]},
        "boxes_mean_iou": {"model": m["box_tracks"]["mean_iou"]},
    }
import math
def nanmean(values):  # a bag where a metric is undefined (no scoreable box frames) does not sink the mean
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")
mean = {k: {who: nanmean([r[k][who] for r in rows.values()]) for who in next(iter(rows.values()))[k]}
        for k in next(iter(rows.values()))}
# Per bag, where a baseline exists: on how many bags the model is better (lower error, higher score).
higher_is_better = ("points_average_jaccard", "points_position_accuracy", "points_occlusion_accuracy")
wins = {}
for key in mean:
    baseline = next((who for who in mean[key] if who != "model"), None)
    if baseline is not None:
        better = [r[key]["model"] > r[key][baseline] if key in higher_is_better else r[key]["model"] < r[key][baseline]
                  for r in rows.values()]
        wins[key] = f"model better than {baseline} on {sum(better)} of {len(better)} bags"
summary = {"bags": rows, "mean": mean, "per_bag": wins}
summary["backend"] = json.loads(path.read_text())["backend"]
pathlib.Path(os.environ["SUMMARY"]).write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps({"mean": mean, "per_bag": wins}, indent=2))
PY
