"""Photometric self-supervision (offline_training/photometric.py) on rendered frames of known geometry."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from offline_training.photometric import photometric_error, self_supervised_loss, warp  # noqa: E402
from room_render import look, render  # noqa: E402

K = np.array([[150.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]])
SIZE = (120, 160)


def frame(pose):
    grey, depth = render(pose, K, SIZE)
    image = torch.from_numpy(grey).float().div(255).expand(1, 3, *SIZE).contiguous()
    return image, torch.from_numpy(depth)[None, None]


@pytest.fixture(scope="module")
def pair():
    """A target frame and two source frames around it (a step back and forth along a curve), with the target's
    true depth and the true target->source motions."""
    target_pose = look(0.0, (0.0, 0.0, -1.5))
    source_poses = [look(-1.5, (-0.06, 0.01, -1.56)), look(1.5, (0.06, -0.01, -1.44))]
    target, depth = frame(target_pose)
    sources = [frame(p)[0] for p in source_poses]
    motions = [torch.from_numpy(np.linalg.inv(p) @ target_pose).float()[None] for p in source_poses]
    return target, sources, depth, motions, torch.from_numpy(K).float()[None]


def test_warping_a_source_with_true_depth_and_motion_rebuilds_the_target(pair):
    target, sources, depth, motions, k = pair
    rebuilt = warp(sources[0], depth, motions[0], k)
    inner = (slice(None), slice(None), slice(10, -10), slice(15, -15))  # what the source also sees
    assert photometric_error(rebuilt, target)[inner].mean() < 0.3 * photometric_error(sources[0], target)[inner].mean()


def test_loss_is_near_zero_for_true_depth_and_motion_and_larger_when_either_is_wrong(pair):
    target, sources, depth, motions, k = pair
    true = self_supervised_loss(target, sources, depth, motions, k)["reprojection"]
    scaled = self_supervised_loss(target, sources, depth * 1.5, motions, k)["reprojection"]
    shifted = [m.clone() for m in motions]
    for m in shifted:
        m[0, 0, 3] += 0.05
    moved = self_supervised_loss(target, sources, depth, shifted, k)["reprojection"]
    assert true < 0.02, true
    assert scaled > 2 * true and moved > 2 * true, (true, scaled, moved)


def test_a_standing_camera_teaches_nothing_auto_masking_keeps_no_pixel(pair):
    target, _, depth, _, k = pair
    identity = torch.eye(4)[None]
    out = self_supervised_loss(target, [target.clone(), target.clone()], depth, [identity, identity], k)
    assert float(out["kept"]) < 0.6  # ties broken by noise: about half, never a learning signal of note
    assert float(out["reprojection"]) < 1e-4


def test_a_few_steps_on_the_loss_bring_a_wrong_depth_towards_the_true_one(pair):
    target, sources, depth, motions, k = pair
    log_depth = torch.full_like(depth, float(np.log(4.0)), requires_grad=True)  # a wrong, flat start
    optimizer = torch.optim.Adam([log_depth], lr=0.05)
    losses, errors = [], []
    for _ in range(30):
        out = self_supervised_loss(target, sources, log_depth.exp(), motions, k)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
        errors.append(float(((log_depth.detach().exp() - depth).abs() / depth).median()))
    assert losses[-1] < 0.7 * losses[0], losses
    assert errors[-1] < errors[0], errors
