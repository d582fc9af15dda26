#!/usr/bin/env bash
# Set up a fresh machine (virtual environment in .venv) and run the demo on the embedded default
# backend (ONNX Runtime on the CPU). Extra arguments go to `fourds-ros demo`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
exec "$root/.venv/bin/fourds-ros" demo "$@"
