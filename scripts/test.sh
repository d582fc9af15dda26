#!/usr/bin/env bash
# Run the whole test suite (installs the environment first if needed). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
# Keep ROS traffic on this machine; tests pick distinct domain ids themselves.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export PYTHONUNBUFFERED=1
exec "$root/.venv/bin/python" -m pytest "$@"
