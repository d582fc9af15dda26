#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv from requirements.lock.
# Idempotent: reinstalls only when the lock file or setup.py changed since the last run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"

"$python" - <<'PY' || { echo "fourds_ros needs Python >= 3.10 (found $("$python" --version 2>&1))" >&2; exit 1; }
import sys; sys.exit(sys.version_info < (3, 10))
PY

stamp="$venv/.fourds_ros-lock"
want="$(cat "$root/requirements.lock" "$root/setup.py" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "fourds_ros: installing the environment into $venv (first run takes a few minutes)" >&2
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/requirements.lock"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$root"
"$venv/bin/python" -m pip check >&2 || true
# The core install's wheels (what `pip install .` pulls, at the lock's versions), so the clean-environment install
# test (tests/test_install.py) runs without network. Constraints cannot carry extras: they are stripped.
sed 's/\[[^]]*\]//' "$root/requirements.lock" > "$venv/constraints.txt"
"$venv/bin/python" -m pip download --quiet --disable-pip-version-check --dest "$root/.whl/core" \
  --constraint "$venv/constraints.txt" "$root" setuptools wheel
bash "$root/scripts/install_assets.sh" || true  # photographs for the photo-real generator: optional
echo "$want" > "$stamp"
