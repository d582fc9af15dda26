"""Depth from flow and motion, kept as points and fused with the model's depth, on a rendered room of known
geometry (ray cast, `room_render.py`)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fourds_ros.streaming.depth_fusion import DepthFusion
from fourds_ros.streaming.settings import DepthFusionConfig
from fourds_ros.streaming.depth_points import DepthPoints
from fourds_ros.streaming.flow_depth import FlowDepth
from room_render import look, render

K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
SIZE = (240, 320)
GRID = (48, 64)  # "model" pixels: every fifth camera pixel


def grid() -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:GRID[0], 0:GRID[1]].astype(np.float64)
    return x * 5 + 2, y * 5 + 2


def at_grid(image: np.ndarray) -> np.ndarray:
    x, y = grid()
    return image[y.astype(int), x.astype(int)]


def abs_rel(pred: np.ndarray, truth: np.ndarray) -> float:
    ok = np.isfinite(pred) & (truth > 0)
    scaled = pred[ok] * np.median(truth[ok]) / np.median(pred[ok])
    return float(np.mean(np.abs(scaled - truth[ok]) / truth[ok]))


@pytest.fixture(scope="module")
def sideways():
    """A camera sliding sideways and a little forward past the room's far wall and floor."""
    poses = [look(4 * i / 12, (-0.3 + 0.05 * i, 0.1, -1.2 + 0.02 * i)) for i in range(13)]
    return poses, [render(pose, K, SIZE) for pose in poses]


def measured(sideways, newest=12):
    poses, frames = sideways
    flow = FlowDepth()
    for pose, (grey, _) in zip(poses[:newest], frames[:newest]):
        flow.remember(grey, pose)
    truth = at_grid(frames[newest][1])
    references = flow.references(poses[newest], float(np.median(truth)))
    assert len(references) >= 2
    x, y = grid()
    return flow.consistent_depth(frames[newest][0], references, K, poses[newest], x, y), truth


def test_flow_and_motion_give_the_true_depth(sideways):
    (depth, weight), truth = measured(sideways)
    ok = np.isfinite(depth) & (weight > 0)
    assert ok.mean() > 0.5, f"only {ok.mean():.0%} of the pixels measured"
    assert abs_rel(np.where(ok, depth, np.nan), truth) < 0.03
    # Metric to a few percent: the baseline's length comes from the poses.
    assert np.median(depth[ok] / truth[ok]) == pytest.approx(1.0, abs=0.06)


def test_no_measurement_without_baseline_or_from_a_view_that_does_not_match(sideways):
    poses, frames = sideways
    flow = FlowDepth()
    flow.remember(frames[0][0], poses[0])
    assert flow.references(poses[0], 2.0) == []  # the same place: no baseline
    assert flow.fine_enough(K) and not flow.fine_enough(np.diag([83.0, 83.0, 1.0]))  # 128 pixels at 75 degrees
    noise = np.random.default_rng(0).integers(0, 255, SIZE, dtype=np.uint8)
    x, y = grid()
    assert flow.measure(frames[6][0], noise, K, np.linalg.inv(poses[6]) @ poses[0], x, y) is None


def test_a_reference_that_does_not_match_is_passed_over(sideways):
    """The first reference shows something else (a glitch in the odometry, a view that does not match): the
    next ones measure, as they do without it."""
    poses, frames = sideways
    noise = np.random.default_rng(1).integers(0, 255, SIZE, dtype=np.uint8)
    good = [(frames[6][0], poses[6]), (frames[3][0], poses[3])]
    x, y = grid()
    alone = FlowDepth().consistent_depth(frames[12][0], good, K, poses[12], x, y)
    after_noise = FlowDepth().consistent_depth(frames[12][0], [(noise, poses[6])] + good, K, poses[12], x, y)
    assert alone is not None and after_noise is not None
    np.testing.assert_array_equal(alone[0], after_noise[0])
    assert FlowDepth().consistent_depth(frames[12][0], [(noise, poses[6]), good[0]], K, poses[12], x, y) is None


def test_the_reference_ring_keeps_the_newest_frames_and_restarts_on_a_new_size():
    from fourds_ros.streaming.settings import FlowDepthConfig
    flow = FlowDepth(FlowDepthConfig(memory=4))
    for i in range(6):
        flow.remember(np.full((3, 5), i, np.uint8), look(0, (i, 0, 0)))
    assert [int(grey[0, 0]) for grey, _ in flow.frames] == [2, 3, 4, 5]  # oldest first
    assert [pose[0, 3] for _, pose in flow.frames] == [2, 3, 4, 5]
    flow.remember(np.zeros((4, 5), np.uint8), look())  # the camera's size changed: old frames are no reference
    assert len(flow.frames) == 1
    flow.reset()
    assert flow.frames == []


def test_the_rotation_flow_moves_each_pixel_where_the_turned_camera_sees_its_ray():
    from scipy.spatial.transform import Rotation
    flow = FlowDepth()
    v, u = 17.0, 250.0
    for turn in ([0.02, -0.05, 0.01], [0.3, -0.4, 0.2]):
        reference_from_current = Rotation.from_rotvec(turn).as_matrix()
        seen = K @ reference_from_current @ np.linalg.solve(K, [u, v, 1.0])
        predicted = flow.rotation_flow(SIZE, K, reference_from_current)[int(v), int(u)]
        np.testing.assert_allclose(predicted, seen[:2] / seen[2] - [u, v], atol=1e-3)
    # Turned so far that the right of the view is behind the reference camera: nothing is predicted there, the
    # rest as before.
    turned = Rotation.from_rotvec([0.0, 1.3, 0.0]).as_matrix()
    partly = flow.rotation_flow(SIZE, K, turned)
    assert not partly[:, 300].any()
    seen = K @ turned @ np.linalg.solve(K, [20.0, v, 1.0])
    np.testing.assert_allclose(partly[int(v), 20], seen[:2] / seen[2] - [20.0, v], atol=1e-3)


def test_points_project_into_another_view_at_their_depth(sideways):
    poses, frames = sideways
    (depth, weight), _ = measured(sideways)
    points = DepthPoints()
    x, y = grid()
    points.add(depth, weight, x, y, K, poses[12])
    # Into the same view: the same depths on the same grid.
    back, back_weight = points.project(poses[12], K, lambda u, v: ((u - 2) / 5, (v - 2) / 5), GRID)
    ok = np.isfinite(depth) & (weight > 0)
    assert np.isfinite(back[ok]).mean() > 0.95
    np.testing.assert_allclose(back[ok & np.isfinite(back)], depth[ok & np.isfinite(back)], rtol=1e-6)
    # Into an earlier view: its own depths, as the renderer gives them.
    earlier, _ = points.project(poses[9], K, lambda u, v: ((u - 2) / 5, (v - 2) / 5), GRID)
    assert abs_rel(earlier, at_grid(frames[9][1])) < 0.05
    assert points.project(np.linalg.inv(look(180.0)), K, lambda u, v: (u, v), GRID) is None  # facing away


def test_fusion_corrects_a_wrong_model_depth_where_measured(sideways):
    (depth, weight), truth = measured(sideways)
    wrong = np.linspace(1.0, 4.0, GRID[0])[:, None] * np.ones(GRID)  # "floor below, wall above", upside down
    fusion = DepthFusion()
    untouched = wrong.copy()
    assert not fusion.apply(untouched)  # nothing measured yet: the model's depth as it is
    np.testing.assert_array_equal(untouched, wrong)
    assert fusion.update(wrong, depth, weight)
    fused = wrong.copy()
    assert fusion.apply(fused)
    assert abs_rel(fused, truth) < 0.5 * abs_rel(wrong, truth)
    # A correction from too few measurements is refused; an old one expires as the camera moves on.
    few = np.full(GRID, np.nan)
    few[0, :3] = truth[0, :3]
    assert not fusion.update(wrong, few, np.ones(GRID))
    fusion.moved(0.9 * fusion.config.max_moving_s)
    assert fusion.apply(wrong.copy())
    fusion.moved(0.2 * fusion.config.max_moving_s)
    assert not fusion.apply(wrong.copy())


def test_a_standing_camera_keeps_a_correction_until_its_measurements_pass_the_horizon(sideways):
    (depth, weight), truth = measured(sideways)
    wrong = np.linspace(1.0, 4.0, GRID[0])[:, None] * np.ones(GRID)
    fusion = DepthFusion()
    measured_ns = 5 * 10**9
    assert fusion.update(wrong, depth, weight, measured_ns=measured_ns)
    horizon_ns = int(fusion.config.horizon_s * 1e9)
    assert fusion.apply(wrong.copy(), measured_ns + horizon_ns)  # standing: no motion ages it
    assert not fusion.apply(wrong.copy(), measured_ns + horizon_ns + 1)
    assert not fusion.apply(wrong.copy(), measured_ns)  # and it is gone, not merely skipped


def test_fusion_keeps_a_right_model_depth_and_ignores_imprecise_measurements():
    truth = np.linspace(1.0, 4.0, GRID[0])[:, None] * np.ones(GRID)
    fusion = DepthFusion()
    precise = np.full(GRID, 1 / 0.03 ** 2)  # inverse variance of log depth: 3% noise
    assert fusion.update(truth * 1.3, truth, precise)  # right shape, another scale
    corrected = (truth * 1.3).astype(np.float32)
    assert fusion.apply(corrected)
    np.testing.assert_allclose(corrected, truth, rtol=1e-3)
    # Noisier than half the model's assumed error: not a correction at all.
    assert not DepthFusion().update(truth, truth[::-1], np.full(GRID, 1 / 0.5 ** 2))


def test_bad_fusion_settings_are_named():
    with pytest.raises(ValueError, match="sigma"):
        DepthFusion(DepthFusionConfig(sigma=0))
    with pytest.raises(ValueError, match="model_sigma"):
        DepthFusion(DepthFusionConfig(model_sigma=-1))


def test_the_pipeline_publishes_fused_depth_closer_to_the_truth():
    """The streaming core with the shipped model on a camera moving through the rendered room: the published
    depth with `fuse_depth` is closer to the truth than the model's own (the same run with it off).

    The camera walks 4 cm a frame: the fusion wants a baseline of 5% of the model's median depth (about 4 m
    here). At 2.5 cm a frame the odometry's measured motion never reached it; the test passed only through one
    spurious 0.4 m step, which the egomotion's speed gate now clamps."""
    from fourds_ros.runtime import create_backend
    from fourds_ros.runtime.selection import default_model_dir
    from fourds_ros.streaming import StreamConfig, StreamingPipeline
    poses = [look(2 * np.sin(i / 8), (-0.4 + 0.04 * i, 0.1 * np.sin(i / 5), -1.3 + 0.01 * i)) for i in range(40)]
    frames = [render(pose, K, SIZE) for pose in poses]
    errors = {}
    for fuse_depth in (False, True):
        outputs = []
        pipeline = StreamingPipeline(create_backend("onnxruntime", default_model_dir()),
                                     StreamConfig(point_tracks=0, flush_after_s=0.0, fuse_depth=fuse_depth),
                                     outputs.append)
        pipeline.set_camera_matrix(K)
        try:
            for i, (grey, _) in enumerate(frames):
                pipeline.push("mono8", SIZE[0], SIZE[1], SIZE[1], grey.tobytes(), i * 33_000_000, "camera")
                pipeline.wait_idle()
            pipeline.flush()
            pipeline.wait_idle()
        finally:
            pipeline.close()
        assert len(outputs) == len(frames)
        per_frame = []
        for out in outputs[16:]:  # once the camera has moved far enough to triangulate
            h, w = out.depth.shape
            y, x = np.mgrid[0:h, 0:w].astype(np.float64)
            u, v = out.pixel_map.to_source(x, y)
            truth = frames[out.info.seq][1][np.clip(np.rint(v), 0, SIZE[0] - 1).astype(int),
                                            np.clip(np.rint(u), 0, SIZE[1] - 1).astype(int)]
            per_frame.append(abs_rel(out.depth, truth))
        errors[fuse_depth] = float(np.mean(per_frame))
    assert errors[True] < 0.8 * errors[False], errors


def test_confidence_is_higher_where_measured_and_fades_with_age(sideways):
    (depth, weight), truth = measured(sideways)
    wrong = np.linspace(1.0, 4.0, GRID[0])[:, None] * np.ones(GRID)
    fusion = DepthFusion()
    config, window = fusion.config, 16
    prior = fusion.confidence(wrong, 0, window, window)  # nothing measured: the model's prior alone, everywhere
    expected = math.erf(config.confidence_tolerance / config.model_sigma / math.sqrt(2))
    np.testing.assert_allclose(prior, expected, rtol=1e-5)
    assert fusion.update(wrong, depth, weight, measured_ns=0)
    fused = wrong.copy()
    fusion.apply(fused, 0)
    fresh = fusion.confidence(fused, 0, window, window)
    measured_here = np.isfinite(depth) & (weight > 0)
    assert fresh[measured_here].mean() > 0.5 > expected and fresh.max() <= 1
    assert fresh[~measured_here].min() >= expected - 1e-6  # a measurement never makes a pixel less trusted
    # The more a pixel was trusted, the closer its fused depth is to the truth.
    error = np.abs(fused - truth) / truth
    trusted = fresh >= np.median(fresh)
    assert error[trusted].mean() < error[~trusted].mean()
    # Moving on without new measurements, and time, both fade it back to the prior.
    fusion.moved(0.5 * config.max_moving_s)
    half = fusion.confidence(fused, 0, window, window)
    assert expected - 1e-6 <= half.mean() < fresh.mean()
    late = fusion.confidence(fused, int(0.99 * config.horizon_s * 1e9), window, window)
    assert late.mean() < half.mean()
    # A window of fewer distinct frames (a stream's first): its model depth is trusted less.
    assert DepthFusion().confidence(wrong, 0, 1, window).max() < 0.5 * expected
    invalid = wrong.copy()
    invalid[0, 0], invalid[0, 1] = np.nan, -1.0
    assert (DepthFusion().confidence(invalid, 0, window, window)[0, :2] == 0).all()
