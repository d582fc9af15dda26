"""The PyTorch port against reference outputs of the official JAX 4DS code."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import PARITY_RTOL, cli, relative_error
from fourds_ros.model import import_official, load_model_dir
from fourds_ros.model.cubic_resize import cubic_resize_matrix

COMPARED = ["depth", "encoder_to_readout", "readout_dense_out"] + [f"features_{i}" for i in range(13)]


def test_time_resize_matrix_matches_jax(expected):
    ref = expected["temporal_resize_matrix"]
    assert np.abs(cubic_resize_matrix(*ref.shape[::-1]) - ref).max() < 1e-6


def test_feature_list_and_readout_index(reference, expected, tmp_path):
    model = load_model_dir(import_official(reference / "params.npz", tmp_path / "model"))
    assert model.config.encoder.num_features == int(expected["num_features"])
    assert model.config.encoder.readout_index == int(expected["readout_index"])


def test_python_api_parity(reference, expected, tmp_path):
    model = load_model_dir(import_official(reference / "params.npz", tmp_path / "model"))
    video = torch.from_numpy(np.load(reference / "input.npy"))
    with torch.inference_mode():
        out = model.forward_with_features(video)
        fast = model(video)
    errors = {name: relative_error(out[name].numpy(), expected[name]) for name in COMPARED}
    print("parity max|port-ref|/max|ref|:", {k: f"{v:.2e}" for k, v in errors.items()})
    assert max(errors.values()) <= PARITY_RTOL, errors
    # The inference path runs only the blocks the readout needs; it must give the same depth.
    assert torch.equal(fast["depth"], out["depth"])


def test_cli_parity(reference, expected, tmp_path):
    cli("import-official", reference / "params.npz", "--out", tmp_path / "model")
    cli("predict", "--model", tmp_path / "model", "--clip", reference / "input.npy", "--out", tmp_path / "out.npz",
        "--features")
    with np.load(tmp_path / "out.npz") as out:
        errors = {name: relative_error(out[name], expected[name]) for name in COMPARED}
    assert max(errors.values()) <= PARITY_RTOL, errors


@pytest.mark.parametrize("mistake", ["erf_gelu", "layer_norm_eps"])
def test_parity_check_catches_known_mistakes(reference, expected, tmp_path, monkeypatch, mistake):
    """The tolerance is tight enough to see the mistakes the fixture README lists."""
    model = load_model_dir(import_official(reference / "params.npz", tmp_path / "model"))
    if mistake == "erf_gelu":
        exact_gelu = torch.nn.functional.gelu
        monkeypatch.setattr(torch.nn.functional, "gelu", lambda x, approximate="none": exact_gelu(x))
    else:
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.eps = 1e-5
    with torch.inference_mode():
        out = model.forward_with_features(torch.from_numpy(np.load(reference / "input.npy")))
    worst = max(relative_error(out[name].numpy(), expected[name]) for name in COMPARED)
    assert worst > PARITY_RTOL
