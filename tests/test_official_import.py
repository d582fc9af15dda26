"""Importing released 4DS checkpoints: every key mapped, every bad file refused cleanly."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli
from fourds_ros.model import CheckpointError, FourDS, ClipConfig, import_official, load_model_dir
from fourds_ros.model.model_dir import check_state_dict
from fourds_ros.model.official_import import convert_arrays, read_npz


def _manifest_arrays(reference: Path) -> dict[str, np.ndarray]:
    manifest = json.loads((reference / "manifest_vit_b_224.json").read_text())
    return {p["key"]: np.zeros(p["shape"], dtype=np.float32) for p in manifest["params"]}


def test_release_b224_depth_checkpoint_maps_every_key(reference):
    arrays = _manifest_arrays(reference)
    assert len(arrays) == 213
    config, state = convert_arrays(arrays)
    assert (config.encoder.hidden_size, config.encoder.num_layers, config.encoder.num_heads) == (768, 12, 12)
    assert (config.clip.frames, config.clip.height, config.clip.width) == (16, 224, 224)
    assert config.heads["depth"].num_params == 1024 and config.heads["depth"].num_heads == 16
    assert config.encoder.readout_index == 11
    # Every official float lands in exactly one torch parameter (q/k/v are fused, so counts, not keys).
    assert sum(v.numel() for v in state.values()) == sum(a.size for a in arrays.values()) == 105_026_944
    check_state_dict(FourDS(config), state, "manifest")


def test_encoder_only_layout_imports_without_heads(reference, tmp_path):
    arrays = {k.replace("params/layers_0/", "params/"): v for k, v in read_npz(reference / "params.npz").items()
              if k.startswith("params/layers_0/")}
    model = load_model_dir(import_official(_save(tmp_path / "enc.npz", arrays), tmp_path / "model"))
    assert dict(model.heads) == {}
    with torch.inference_mode():
        assert model(torch.rand(1, 16, 64, 64, 3)) == {}


def _save(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def _broken(reference: Path, tmp_path: Path, kind: str) -> Path:
    arrays = read_npz(reference / "params.npz")
    key = "params/layers_0/processor/layers_3/mlp/dense_in/kernel"
    if kind == "missing":
        del arrays[key]
    elif kind == "extra":
        arrays["params/layers_2/surprise/kernel"] = np.zeros((2, 2), np.float32)
    elif kind == "shape":
        arrays[key] = arrays[key][:, :10]
    else:
        data = (reference / "params.npz").read_bytes()
        path = tmp_path / "bad.npz"
        path.write_bytes(data[: len(data) // 2] if kind == "truncated" else b"this is not a zip file at all")
        return path
    return _save(tmp_path / "bad.npz", arrays)


@pytest.mark.parametrize("kind, message", [
    ("missing", "missing keys ['params/layers_0/processor/layers_3/mlp/dense_in/kernel']"),
    ("extra", "unexpected keys ['params/layers_2/surprise/kernel']"),
    ("shape", "params/layers_0/processor/layers_3/mlp/dense_in/kernel: expected (192, 768), got (192, 10)"),
    ("truncated", "is not a readable .npz checkpoint"),
    ("not_npz", "is not a readable .npz checkpoint"),
])
def test_bad_checkpoints_fail_clearly_and_leave_nothing(reference, tmp_path, kind, message):
    bad = _broken(reference, tmp_path, kind)
    out = tmp_path / "out" / "model"
    with pytest.raises(CheckpointError) as err:
        import_official(bad, out)
    assert message in str(err.value)
    assert not out.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    # The CLI reports the same problem with exit status 2 and no traceback.
    result = cli("import-official", bad, "--out", out, check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_existing_output_directory_is_not_overwritten_silently(reference, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match="already exists"):
        import_official(reference / "params.npz", out)
    assert (out / "keep.txt").read_text() == "mine"
    import_official(reference / "params.npz", out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()


def test_import_at_another_clip_size_resamples_tables(reference, tmp_path):
    model = load_model_dir(import_official(reference / "params.npz", tmp_path / "model",
                                           clip=ClipConfig(8, 96, 64), add_heads=("pose",)))
    assert tuple(model.encoder.pos_embed.shape) == (4, 6, 4, 192)
    with torch.inference_mode():
        out = model(torch.rand(1, 8, 96, 64, 3))
    assert out["depth"].shape == (1, 8, 96, 64, 1) and out["pose"].shape == (1, 8, 4, 4)
    assert torch.isfinite(out["depth"]).all()
