"""Shared test helpers: the parity fixture, tiny configs and the installed CLI."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("FOURDS_REFERENCE_FIXTURE", REPO.parent / "shared" / "fixtures" / "fourds_reference"))
# Parity tolerance from the fixture's README: max|port - ref| <= 5e-6 * max|ref| for every array.
PARITY_RTOL = 5e-6
# Graphs and engines that tests export go to a cache of this run (inherited by node processes), not the user's.
os.environ["FOURDS_CACHE_DIR"] = tempfile.mkdtemp(prefix="fourds-test-cache-")


@pytest.fixture(scope="session")
def reference() -> Path:
    if not (REFERENCE / "params.npz").is_file():
        message = f"4DS parity fixture not found at {REFERENCE} (set FOURDS_REFERENCE_FIXTURE)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return REFERENCE


@pytest.fixture(scope="session")
def expected(reference: Path) -> dict[str, np.ndarray]:
    with np.load(reference / "expected.npz") as data:
        return {k: data[k] for k in data.files}


def relative_error(port: np.ndarray, ref: np.ndarray) -> float:
    assert port.shape == ref.shape, f"shape {port.shape} != reference {ref.shape}"
    return float(np.abs(port.astype(np.float64) - ref).max() / np.abs(ref).max())


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the installed `fourds-ros` console script."""
    exe = Path(sys.executable).parent / "fourds-ros"
    result = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"fourds-ros {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


def tiny_config(heads=("depth", "pose", "points", "boxes"), frames: int = 4, size: int = 32):
    from fourds_ros.model import ClipConfig, EncoderConfig, ModelConfig, ReadoutConfig
    encoder = EncoderConfig(hidden_size=32, num_layers=2, num_heads=2, mlp_size=64)
    readout = {h: ReadoutConfig(num_params=32, num_heads=2, max_queries=8, num_frequencies=4) for h in heads}
    return ModelConfig(encoder=encoder, clip=ClipConfig(frames, size, size), heads=readout, name="tiny")
