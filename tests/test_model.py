"""Model directory round trip, config validation and the readout heads beyond depth."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import cli, tiny_config
from fourds_ros.model import ConfigError, FourDS, ModelConfig, ModelDirError, import_official, load_model_dir, \
    save_model_dir
from fourds_ros.model.cubic_resize import resize_axis
from fourds_ros.model.queries import centre_box_query, grid_point_queries


def _queries(config, batch=1):
    points = torch.from_numpy(grid_point_queries(config, 2)).repeat(batch, 1, 1)
    boxes = torch.from_numpy(centre_box_query(config)).repeat(batch, 1, 1)
    return points, boxes


def test_round_trip_gives_identical_outputs(reference, tmp_path):
    first = load_model_dir(import_official(reference / "params.npz", tmp_path / "a", add_heads=("pose", "points", "boxes"),
                                           readout=None))
    second = load_model_dir(save_model_dir(first, tmp_path / "b"))
    assert first.config == second.config
    video = torch.rand(2, 16, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    points, boxes = _queries(first.config, 2)
    with torch.inference_mode():
        a, b = first(video, points, boxes), second(video, points, boxes)
    assert a.keys() == b.keys() == {"depth", "pose", "points", "points_visible_logit", "boxes", "boxes_visible_logit"}
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_head_shapes_and_conventions():
    config = tiny_config()
    model = FourDS(config)
    model.reset_parameters(0)
    points, boxes = _queries(config, batch=3)
    with torch.inference_mode():
        out = model(torch.rand(3, 4, 32, 32, 3), points, boxes)
    assert out["depth"].shape == (3, 4, 32, 32, 1)
    assert out["pose"].shape == (3, 4, 4, 4)
    assert out["points"].shape == (3, 4, 4, 2) and out["points_visible_logit"].shape == (3, 4, 4)
    assert out["boxes"].shape == (3, 1, 4, 4) and out["boxes_visible_logit"].shape == (3, 1, 4)
    pose = out["pose"]
    assert torch.allclose(pose[:, 0], torch.eye(4).expand(3, 4, 4), atol=1e-5), "frame 0 is the reference frame"
    rot = pose[..., :3, :3]
    assert torch.allclose(rot @ rot.transpose(-1, -2), torch.eye(3).expand_as(rot), atol=1e-4)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(3, 4), atol=1e-4)
    boxes_out = out["boxes"]
    assert (boxes_out[..., 2] >= boxes_out[..., 0]).all() and (boxes_out[..., 3] >= boxes_out[..., 1]).all()


def _head_loss(name, out, target):
    if name == "depth":
        return F.mse_loss(out["depth"], target)
    if name == "pose":
        return F.mse_loss(out["pose"][:, 1:, :3, :], target[:, 1:, :3, :])
    if name == "points":
        return F.smooth_l1_loss(out["points"], target[0]) + \
            F.binary_cross_entropy_with_logits(out["points_visible_logit"], target[1])
    return F.l1_loss(out["boxes"], target[0]) + F.binary_cross_entropy_with_logits(out["boxes_visible_logit"], target[1])


def _target(name, out, generator):
    def like(t, scale=1.0):
        return torch.randn(t.shape, generator=generator) * scale + t.detach()
    if name == "depth":
        return like(out["depth"]).abs() + 1
    if name == "pose":
        target = out["pose"].detach().clone()
        target[:, 1:, :3, 3] += torch.randn(target[:, 1:, :3, 3].shape, generator=generator)
        return target
    key = "points" if name == "points" else "boxes"
    vis = (torch.rand(out[f"{key}_visible_logit"].shape, generator=generator) > 0.5).float()
    return like(out[key], 2.0), vis


@pytest.mark.parametrize("head", ["depth", "pose", "points", "boxes"])
def test_each_head_trains(head):
    """A few Adam steps on a fixed synthetic target reduce the loss of every head."""
    torch.manual_seed(0)
    config = tiny_config(heads=(head,))
    model = FourDS(config)
    model.reset_parameters(0)
    generator = torch.Generator().manual_seed(1)
    video = torch.rand(2, 4, 32, 32, 3, generator=generator)
    points, boxes = _queries(config, 2)
    with torch.no_grad():
        target = _target(head, model(video, points, boxes), generator)
    params = [p for n, p in model.named_parameters() if n.startswith("heads.")]
    optimiser = torch.optim.Adam(params, lr=1e-3)
    losses = []
    for _ in range(40):
        loss = _head_loss(head, model(video, points, boxes), target)
        optimiser.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params if p.requires_grad)
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_config_validation_names_the_problem(tmp_path):
    data = tiny_config().to_dict()
    data["clip"]["height"] = 33
    with pytest.raises(ConfigError, match="clip.height = 33 must be a positive multiple of the patch size 16"):
        ModelConfig.from_dict(data)
    data = tiny_config().to_dict()
    data["heads"]["depth"]["num_heads"] = 5
    with pytest.raises(ConfigError, match="heads.depth.num_params 32 is not divisible by num_heads 5"):
        ModelConfig.from_dict(data)
    data = tiny_config().to_dict()
    data["encoder"]["colour"] = "blue"
    with pytest.raises(ConfigError, match=r"encoder has unknown keys: \['colour'\]"):
        ModelConfig.from_dict(data)


def test_broken_model_directories_fail_clearly(tmp_path):
    model = FourDS(tiny_config())
    good = save_model_dir(model, tmp_path / "good")
    with pytest.raises(ModelDirError, match="does not exist"):
        load_model_dir(tmp_path / "nowhere")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "config.json").write_text((good / "config.json").read_text())
    (tmp_path / "corrupt" / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(ModelDirError, match="is not a readable safetensors file"):
        load_model_dir(tmp_path / "corrupt")
    config = json.loads((good / "config.json").read_text())
    config["encoder"]["num_layers"] = 3
    (good / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelDirError, match=r"missing keys \['encoder.blocks.2"):
        load_model_dir(good)


def test_resize_axis_is_identity_at_same_size_and_keeps_constants():
    table = torch.randn(8, 3)
    assert torch.equal(resize_axis(table, 0, 8), table)
    constant = torch.full((8, 2), 3.0)
    assert torch.allclose(resize_axis(constant, 0, 13), torch.full((13, 2), 3.0), atol=1e-6)


def test_cli_reports_a_clip_of_the_wrong_shape(tmp_path):
    import numpy as np
    cli("init-model", "--size", "mu", "--clip", "4,32,32", "--out", tmp_path / "model")
    np.save(tmp_path / "clip.npy", np.zeros((1, 4, 48, 32, 3), np.float32))
    result = cli("predict", "--model", tmp_path / "model", "--clip", tmp_path / "clip.npy", "--out", tmp_path / "o.npz",
                 check=False)
    assert result.returncode == 2
    assert "expected a float32 window shaped (1, 4, 32, 32, 3), got float32 (1, 4, 48, 32, 3)" in result.stderr
    np.save(tmp_path / "clip.npy", np.full((1, 4, 32, 32, 3), 2.0, np.float32))
    result = cli("predict", "--model", tmp_path / "model", "--clip", tmp_path / "clip.npy", "--out", tmp_path / "o.npz",
                 check=False)
    assert result.returncode == 2 and "values must be finite and in [0, 1]" in result.stderr
