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
"$bin/fourds-ros" summarize "$reports"/seed* --out "$summary"
# Photo-real held-out bags (never in training: photo shards use seeds 100-163): three cameras a robot carries.
photo() {  # seed, then synth's arguments
  local seed=$1; shift
  local bag=${TMPDIR:-/tmp}/fourds-heldout/photo$seed
  [[ -d $bag ]] || "$bin/fourds-ros" synth --out "$bag" --seed "$seed" --frames 96 "$@"
  "$bin/fourds-ros" eval "$bag" --model models/default --precision "$precision" --out "$reports/${group:-photo}/seed$seed"
}
photo 1101 --style photo --size 96x128 --fov 60 --camera-motion robot
photo 1102 --style photo --size 72x128 --fov 50 --camera-motion walking --sensor-effects
photo 1103 --style photo --size 96x128 --fov 70 --camera-motion handheld --sensor-effects
"$bin/fourds-ros" summarize "$reports"/photo/seed* --out "${summary%.json}-photo.json"
# Camera-resolution bags (never in training): the geometric stages (egomotion, depth fusion) see a real camera's
# pixels here, not 128 of them. The depth fusion's settings were chosen on these five: a development set for it.
group=camera
photo 2001 --style photo --size 360x480 --fov 60 --camera-motion robot
photo 2002 --style photo --size 360x480 --fov 55 --camera-motion walking --sensor-effects
photo 2003 --style photo --size 360x640 --fov 70 --camera-motion handheld --sensor-effects
photo 2004 --size 360x480
photo 2005 --size 360x480
"$bin/fourds-ros" summarize "$reports"/camera/seed* --out "${summary%.json}-camera.json"
