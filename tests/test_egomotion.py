"""The geometric egomotion stage on rendered sequences of known motion (a textured room, ray cast)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fourds_ros.evaluation.metrics import rotation_angle_deg
from fourds_ros.streaming.egomotion import GeometricOdometry, blend
from fourds_ros.streaming.settings import EgomotionConfig
from room_render import look, render

K = np.array([[150.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]])
SIZE = (120, 160)


def run(poses: list[np.ndarray], boxes=None, readout=None, mode="geometric", frames=None, box_half=0.35,
        depth_factor=lambda i: 1.0, **config):
    """Odometry over rendered frames; the readout (if not given) is a wrong guess: the identity. The depth the
    odometry is given is the rendered one times `depth_factor(frame)`."""
    odometry = GeometricOdometry(EgomotionConfig(**config), mode)
    out = []
    for i, pose in enumerate(poses):
        if frames is not None:
            grey, depth = frames[i]
        else:
            grey, depth = render(pose, K, SIZE, None if boxes is None else boxes[i], box_half)

        def depth_at(points, depth=depth, factor=depth_factor(i)):
            return factor * depth[np.clip(np.round(points[:, 1]).astype(int), 0, SIZE[0] - 1),
                                  np.clip(np.round(points[:, 0]).astype(int), 0, SIZE[1] - 1)].astype(np.float64)
        out.append(odometry.step(i, grey, K, depth_at, np.eye(4) if readout is None else readout[i]))
    return out, odometry


def relative(poses):
    return [np.linalg.inv(poses[0]) @ p for p in poses]


def test_pure_translation_is_recovered_with_the_depth_scale():
    truth = [look(0, (0.02 * i, 0.005 * i, -1.5 + 0.03 * i)) for i in range(16)]
    estimates, odometry = run(truth)
    expected = relative(truth)
    # A 160x120 camera: tenths of a degree and a few centimetres are what its pixels allow.
    for est, ref in zip(estimates[4:], expected[4:]):
        assert np.linalg.norm(est.world_from_camera[:3, 3] - ref[:3, 3]) < 0.2 * np.linalg.norm(ref[:3, 3]) + 0.01
        assert rotation_angle_deg(est.world_from_camera[:3, :3].T @ ref[:3, :3]) < 2.0
    assert odometry.stats.by_source["geometry"] > 8 and odometry.stats.by_source["readout"] == 0


def test_pure_rotation_gives_the_rotation_and_no_translation():
    truth = [look(0.6 * i) for i in range(16)]
    estimates, odometry = run(truth)
    for est, ref in zip(estimates, relative(truth)):
        assert rotation_angle_deg(est.world_from_camera[:3, :3].T @ ref[:3, :3]) < 0.15
        assert np.linalg.norm(est.world_from_camera[:3, 3]) < 0.01
    assert odometry.stats.by_source["rotation"] >= 10


def test_a_standing_camera_reports_exactly_no_motion_while_an_object_moves_through_the_view():
    poses = [look(5.0)] * 16
    boxes = [np.array([-0.9 + 0.12 * i, 0.1, 0.6]) for i in range(16)]  # crosses a third of the view
    estimates, odometry = run(poses, boxes)
    for est in estimates:
        assert np.array_equal(est.world_from_camera, np.eye(4))
    assert odometry.stats.by_source["readout"] == 0


@pytest.mark.parametrize("speed_gate", [3.0, 0.0])
def test_the_speed_gate_clamps_the_steps_a_wrong_depth_throws(speed_gate):
    """A brisk walk (keyframes every few frames); the depth given for the keyframe started on frame 8 reads ten
    times too far (the model misjudging one view), which scales the steps measured from it tenfold. With the
    gate those steps stay near the recent speed and the walk goes on the right way; without it, they jump. (A
    frame taken for a pure rotation keeps the keyframe's position, so the step after it spans two frames.)"""
    truth = [look(0, (0.05 * i, 0.0, -1.5 + 0.04 * i)) for i in range(16)]
    estimates, odometry = run(truth, depth_factor=lambda i: 10.0 if i == 8 else 1.0, speed_gate=speed_gate)
    positions = np.array([e.world_from_camera[:3, 3] for e in estimates])
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    true_step, end = np.hypot(0.05, 0.04), relative(truth)[-1][:3, 3]
    error = np.linalg.norm(positions[-1] - end)
    if speed_gate:
        assert steps.max() < 2 * 4 * true_step and odometry.stats.clamped >= 1
        assert error < 0.5 * np.linalg.norm(end)
        assert positions[-1] @ end / (np.linalg.norm(positions[-1]) * np.linalg.norm(end)) > 0.99
    else:  # the fault bites: the gate is what holds the walk above
        assert steps.max() > 15 * true_step and odometry.stats.clamped == 0
        assert error > 1.5 * np.linalg.norm(end)


def test_a_walking_camera_held_at_its_keyframe_says_so_in_its_covariance():
    """A steady walk whose frames right after each keyframe show too little parallax to measure: they are taken
    for pure rotations and keep the keyframe's position while the camera walks on. Their covariance must cover
    that lag (a robot's filter then leans on its wheels), while a camera that turns from standing stays sure it
    has not moved."""
    truth = [look(0, (0.03 * i, 0.0, -1.5 + 0.015 * i)) for i in range(24)]
    estimates, _ = run(truth)
    first_measured = next(i for i, e in enumerate(estimates) if e.source == "geometry")
    held = [(e, ref) for e, ref in zip(estimates[first_measured:], relative(truth)[first_measured:])
            if e.source == "rotation"]
    assert len(held) >= 6  # the walk shows the fault this test is about
    for estimate, ref in held:
        error = np.linalg.norm(estimate.world_from_camera[:3, 3] - ref[:3, 3])
        sigma = np.sqrt(estimate.covariance[0, 0])
        assert error > 0.03 and error < 3 * sigma
    turned, _ = run([look(0.6 * i) for i in range(16)])
    assert all(e.covariance[:3, :3].max() < 1e-6 for e in turned)


def test_bad_speed_gate_settings_are_named():
    with pytest.raises(ValueError, match="speed_gate"):
        GeometricOdometry(EgomotionConfig(speed_gate=-1.0))


@pytest.mark.parametrize("leave_standing_frames, stands", [(3, True), (1, False)])
def test_a_vibrating_standing_camera_stands_and_one_that_starts_turning_slowly_is_followed(leave_standing_frames,
                                                                                           stands):
    """A standing robot's camera swings out by a little more than the standing threshold (0.25 deg) for a frame
    or two and back: that is no motion. A camera that then starts turning slowly (0.08 deg a frame, under the
    threshold per frame) is taken to move a few frames late and its heading is right from then on."""
    swing = [0.0] * 6 + [0.3, 0.1, 0.32, 0.34, 0.05, 0.0, 0.3, 0.0]
    turn = [0.08 * i for i in range(1, 21)]
    truth = [look(5.0 + yaw) for yaw in swing + turn]
    estimates, _ = run(truth, leave_standing_frames=leave_standing_frames)
    still = all(np.array_equal(est.world_from_camera, np.eye(4)) for est in estimates[:len(swing)])
    assert still == stands
    expected = relative(truth)
    for est, ref in zip(estimates[-8:], expected[-8:]):
        assert rotation_angle_deg(est.world_from_camera[:3, :3].T @ ref[:3, :3]) < 0.15


@pytest.mark.parametrize("settled_frames, stands", [(5, True), (10**6, False)])
def test_a_standing_camera_stands_while_a_body_close_by_covers_most_of_the_view(settled_frames, stands):
    """A person walking right past a tripod hides the scene and brings its own tracks, all moving alike; the
    tracks of the scene that stood still before decide, and while they are hidden the camera still stands
    (without them, the tracks on the body move the camera)."""
    poses = [look(5.0)] * 30
    # Out of view for 8 frames, then a 0.9 m body passes 0.25 m in front of the lens, hiding nearly all.
    boxes = [np.array([-3.0, 0.0, -1.0])] * 8 + [np.array([-1.0 + 0.09 * i, 0.0, -0.8]) for i in range(22)]
    estimates, _ = run(poses, boxes, box_half=0.45, settled_frames=settled_frames)
    still = all(np.array_equal(est.world_from_camera, np.eye(4)) for est in estimates)
    assert still == stands


@pytest.mark.xfail(strict=True, reason="known limitation: a textured object moving fast across a third of the "
                   "view of a moving camera fits the essential matrix (it moves along the epipolar lines) and "
                   "drags the pose; rejecting it by the 4DS depth's disagreement dropped good tracks on real "
                   "footage with the shipped depth (holo_office_b ATE 0.298 -> 0.66 m), see issue #13's note")
def test_tracks_on_a_moving_object_are_outliers_of_a_moving_camera():
    truth = [look(0, (0.025 * i, 0.0, -1.5 + 0.02 * i)) for i in range(12)]
    boxes = [np.array([0.5 - 0.1 * i, -0.2, 0.4]) for i in range(12)]  # moves against the camera
    estimates, _ = run(truth, boxes)
    last, ref = estimates[-1].world_from_camera, relative(truth)[-1]
    assert np.linalg.norm(last[:3, 3] - ref[:3, 3]) < 0.12 * np.linalg.norm(ref[:3, 3]) + 0.005


def test_a_textureless_stretch_falls_back_to_the_readout_with_a_large_covariance_and_no_nan():
    flat = (np.full(SIZE, 128, np.uint8), np.full(SIZE, 2.0, np.float32))
    textured = [render(look(0, (0.02 * i, 0, -1.5)), K, SIZE) for i in range(4)]
    frames = textured + [flat] * 6
    readout = [np.eye(4) for _ in range(10)]
    for i in range(4, 10):
        readout[i][:3, 3] = [0.02 * i, 0, 0]
    estimates, odometry = run([None] * 10, readout=readout, frames=frames)
    assert all(np.isfinite(e.world_from_camera).all() and np.isfinite(e.covariance).all() for e in estimates)
    fallback = [e for e in estimates[4:] if e.source == "readout"]
    assert len(fallback) >= 5
    geometric = [e for e in estimates[1:4] if e.source != "readout"]
    assert min(np.trace(e.covariance) for e in fallback) > 10 * max(np.trace(e.covariance) for e in geometric)
    # Each fallback step follows the readout's motion.
    steps = [np.linalg.inv(a.world_from_camera) @ b.world_from_camera for a, b in zip(estimates[5:], estimates[6:])]
    assert all(np.allclose(s[:3, 3], [0.02, 0, 0], atol=1e-9) for s in steps)


def test_bad_standing_settings_are_named():
    with pytest.raises(ValueError, match="leave_standing_frames"):
        GeometricOdometry(EgomotionConfig(leave_standing_frames=0))
    with pytest.raises(ValueError, match="leave_standing_factor"):
        GeometricOdometry(EgomotionConfig(leave_standing_factor=0.5))


def test_blend_weights_by_covariance():
    a, b = np.eye(4), np.eye(4)
    b[:3, 3] = [1.0, 0, 0]
    b[:3, :3] = Rotation.from_rotvec([0, 0.1, 0]).as_matrix()
    mean, cov = blend(a, np.eye(6) * 1e-4, b, np.eye(6))
    assert np.linalg.norm(mean[:3, 3]) < 1e-3 and np.all(np.diag(cov) < 1e-4)
    even, _ = blend(a, np.eye(6), b, np.eye(6))
    np.testing.assert_allclose(even[:3, 3], [0.5, 0, 0])
    assert rotation_angle_deg(even[:3, :3]) == pytest.approx(np.degrees(0.05))


def test_point_refinement_lands_on_the_true_projection_to_a_fraction_of_a_pixel():
    """Points on the rendered room, the camera sliding right; the readout's guesses are 3 px off. The refined
    tracks must follow the true projection (from the rendered depth and the known poses)."""
    import cv2

    from fourds_ros.streaming.camera import PixelMap
    from fourds_ros.streaming.refine import PointRefiner
    from fourds_ros.streaming.tracks import TrackFrame
    poses = [look(0, (0.015 * i, 0.0, -1.5)) for i in range(6)]
    renders = [render(p, K, SIZE) for p in poses]
    grey = np.stack([g for g, _ in renders])
    start = cv2.goodFeaturesToTrack(grey[0], 30, 0.01, 8).reshape(-1, 2)
    depth0 = renders[0][1]
    z = depth0[np.round(start[:, 1]).astype(int), np.round(start[:, 0]).astype(int)]
    points = np.column_stack([(start[:, 0] - K[0, 2]) / K[0, 0] * z, (start[:, 1] - K[1, 2]) / K[1, 1] * z, z,
                              np.ones(len(z))])
    world = (poses[0] @ points.T).T
    truth = []
    for pose in poses:
        camera = (np.linalg.inv(pose) @ world.T).T
        truth.append(np.column_stack([K[0, 0] * camera[:, 0] / camera[:, 2] + K[0, 2],
                                      K[1, 1] * camera[:, 1] / camera[:, 2] + K[1, 2]]))
    rng = np.random.default_rng(0)
    ids = np.arange(len(start), dtype=np.uint32)
    frames = []
    for t in truth:
        guess = (t + rng.uniform(-3, 3, t.shape)).astype(np.float32)
        frames.append(TrackFrame(ids, guess, np.ones(len(ids), np.uint8), np.ones(len(ids), np.float32), guess))
    refiner = PointRefiner("refined")
    identity = PixelMap(1.0, 1.0, 0.0, 0.0)
    refiner.refine(frames, list(range(6)), grey, identity, {int(i): (0, tuple(start[i])) for i in ids})
    errors = np.concatenate([np.linalg.norm(f.source_values - t, axis=1)[f.visible.astype(bool)]
                             for f, t in zip(frames[1:], truth[1:])])
    assert len(errors) > 0.8 * 5 * len(ids)  # most refinements pass their check
    assert np.median(errors) < 0.3 and np.percentile(errors, 90) < 1.0, (np.median(errors), np.percentile(errors, 90))
    np.testing.assert_allclose(frames[0].source_values, start, atol=1e-4)  # a track starts exactly at its seed
