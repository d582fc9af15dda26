"""scripts/gpu_checks.sh, the run prepared for a GPU loan, kept working: its dry run (the same steps on the CPU
at toy sizes) completes every step."""
from __future__ import annotations

import json
import subprocess

import pytest

from ros_helpers import REPO, next_domain


@pytest.mark.slow
def test_the_gpu_checks_dry_run_completes_every_step(tmp_path):
    out = tmp_path / "gpu_checks.json"
    done = subprocess.run(["bash", REPO / "scripts" / "gpu_checks.sh", "--dry-run", "--out", out,
                           "--domain", str(next_domain())], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] and list(report["steps"]) == ["cuda_tests", "parity", "latency", "training", "rig"]
    failed = {name: step for name, step in report["steps"].items() if step["status"] != "ok"}
    assert not failed, failed
    steps = report["steps"]
    assert "skipped" in steps["cuda_tests"]["summary"]  # no GPU here: the GPU tests skip, and say so
    assert steps["parity"]["within_tolerance"]
    assert {(r["dtype"], r["batch"]) for r in steps["latency"]["results"]} == \
        {(d, b) for d in ("fp16", "bf16") for b in (1, 2, 4)}
    assert steps["training"]["results"][0]["clips_per_s"] > 0
    assert set(steps["rig"]["cpu_per_camera_rig_over_separate"]) == {"2"}
