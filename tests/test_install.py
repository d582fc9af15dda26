"""The install paths a newcomer takes: a colcon workspace, and `pip install .` into a clean environment.

Each starts perception_node from its own installation with no model_dir, as `ros2 run` or a shell would, and the
sample bag is replayed into it: the node must find the default model it was installed with and answer every frame.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from ros_helpers import next_domain

pytestmark = pytest.mark.slow  # builds and installs: `-m "not slow"` leaves them out

SAMPLE_BAG = REPO / "data" / "sample_bag"
WHEELHOUSE = REPO / ".whl" / "core"  # the core install's wheels, downloaded by scripts/bootstrap.sh
# Variables that would let the new installation see this environment's packages.
LEAKS = ("PYTHONPATH", "AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH", "VIRTUAL_ENV", "PYTHONHOME", "ROS_DISTRO")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LEAKS}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(Path(sys.executable).parent)))
    return env


def _run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def _replay_into(executable: Path, env: dict[str, str], out: Path) -> str:
    """Replay the sample bag into `executable` (no model_dir); returns the node's log."""
    from fourds_ros.ros.replay import replay
    report = replay(SAMPLE_BAG, None, out, domain=next_domain(), node_executable=executable, node_env=env)
    # How many frames a loaded machine answers in real time is not this test's subject: that it answers is.
    assert report["runtime"]["end_to_end_latency_ms"]["frames"] > 0 and "depth" in report["model_metrics"]
    (log,) = out.glob("perception_node-*.log")
    return log.read_text()


def test_a_colcon_workspace_builds_and_runs_the_node_it_installed(tmp_path):
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "fourds_ros").symlink_to(REPO)
    _run([Path(sys.executable).parent / "colcon", "build", "--packages-select", "fourds_ros"], cwd=workspace)
    install = workspace / "install" / "fourds_ros"
    share = install / "share" / "fourds_ros"
    for path in ("package.xml", "launch/perception.launch.py", "config/perception.yaml",
                 "models/default/model.safetensors"):
        assert (share / path).is_file(), path
    assert list((share / "models" / "default" / "onnx").glob("fourds-*.onnx"))
    # What `source install/setup.bash` gives a shell, then the script `ros2 run fourds_ros perception_node` starts.
    sourced = _run(["bash", "-c", f"source {workspace / 'install' / 'setup.bash'} && env -0"], env=os.environ)
    env = dict(line.split("=", 1) for line in sourced.stdout.split("\0") if "=" in line)
    log = _replay_into(install / "lib" / "fourds_ros" / "perception_node", env, tmp_path / "replay")
    assert f"using the default model {share / 'models' / 'default'}" in log, log


def test_pip_install_into_a_clean_environment_runs_the_node_without_torch(tmp_path):
    if not list(WHEELHOUSE.glob("onnxruntime-*.whl")):
        pytest.fail(f"{WHEELHOUSE} has no wheels: scripts/bootstrap.sh downloads them (run scripts/test.sh)")
    venv = tmp_path / "venv"
    env = _clean_env()
    _run([sys.executable, "-m", "venv", venv], env=env)
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-index", "--find-links", WHEELHOUSE,
          REPO], env=env)
    probe = subprocess.run([venv / "bin" / "python", "-c", "import torch"], capture_output=True, env=env)
    assert probe.returncode != 0, "the core install pulled torch"
    log = _replay_into(venv / "bin" / "perception_node", env, tmp_path / "replay")
    assert f"using the default model {venv / 'share' / 'fourds_ros' / 'models' / 'default'}" in log, log
