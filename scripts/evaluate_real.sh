#!/usr/bin/env bash
# The real benchmark: converts the public real sequences in ../shared/real (never copied into the project) and
# scores the default model on them next to every classical baseline, with `fourds-ros eval`.
# Writes reports/real/<sequence>/ (metrics.json + plots) and reports/real/summary.json; PRECISION=int8 scores the
# int8 graph into reports/real/int8/. Further arguments go to every `eval` (settings: `--odometry.features 300`).
# Bags go to $TMPDIR/fourds-real (re-made when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${BIN:-.venv/bin}
real=${REAL:-../shared/real}
bags=${TMPDIR:-/tmp}/fourds-real
precision=${PRECISION:-fp32}
reports=reports/real
[[ $precision == fp32 ]] || reports=reports/real/$precision
mkdir -p "$bags" "$reports"
convert() {  # name, then convert's arguments
  local name=$1; shift
  [[ -f $bags/$name/metadata.yaml ]] || "$bin/fourds-ros" convert "$@" --out "$bags/$name" --overwrite
}
convert holo_office_b "$real/holo_office_b" --fps 10
convert euroc_v101_static "$real/euroc_v101_static" --gt "$real/euroc_v101_static/gt_vicon2gt_V1_01_easy_20hz.csv"
convert kitti00_first91 "$real/kitti00_first91" --gt "$real/kitti00_first91/poses.txt"
convert kitti_raw_2011_09_26_0005_first91 "$real/kitti_raw_2011_09_26_0005_first91"  # poses from OXTS
names=(holo_office_b euroc_v101_static kitti00_first91 kitti_raw_2011_09_26_0005_first91)
for name in "${names[@]}"; do
  "$bin/fourds-ros" eval "$bags/$name" --precision "$precision" --out "$reports/$name" "$@"
done
"$bin/fourds-ros" summarize "${names[@]/#/$reports/}" --out "$reports/summary.json"
