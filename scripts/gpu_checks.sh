#!/usr/bin/env bash
# A GPU loan spent measuring (benchmarks/gpu_checks.py): CUDA tests, GPU-CPU parity, 4DS-B window latency,
# training throughput, the multi-camera benchmark; at most 8 minutes on one GPU, JSON in benchmarks/results/.
# `--dry-run` runs the same steps on the CPU at toy sizes (CI runs it). Uses .venv when there is one, else the
# machine's python3 (a lent GPU machine has torch with CUDA but no package index: steps whose packages are
# missing are recorded as skipped, with why).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python=python3
[[ -x $root/.venv/bin/python ]] && python=$root/.venv/bin/python
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# The rig benchmark starts perception_node and video_publisher by name: the venv's entry points first.
[[ -d $root/.venv/bin ]] && export PATH="$root/.venv/bin:$PATH"
exec "$python" "$root/benchmarks/gpu_checks.py" "$@"
