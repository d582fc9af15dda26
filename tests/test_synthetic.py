"""The synthetic 4D ground truth: geometry, tracks, boxes, determinism, and the bag it is written to."""
from __future__ import annotations

import os

import numpy as np
import pytest

from fourds_ros.bags.reader import read_bag
from fourds_ros.synthetic.generator import camera_pose, generate, intrinsics_for, project, render_views
from fourds_ros.synthetic.writers import write_bag

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="module")
def sequence():
    return generate(seed=7, frames=40, height=72, width=96, num_points=48)


def test_depth_of_a_plane_at_known_distance_is_constant_along_the_optical_axis():
    import mujoco
    distance = 2.5
    xml = f"""<mujoco><visual><global offwidth="96" offheight="72"/><map znear="0.01" zfar="50"/></visual>
      <worldbody><geom type="box" pos="{distance} 0 0" size="0.05 10 10" rgba="0.5 0.5 0.5 1"/>
      <camera name="camera" pos="0 0 0" xyaxes="0 -1 0 0 0 1" fovy="60"/></worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(model, 72, 96)
    try:
        _, depth, seg = render_views(renderer, data)
    finally:
        renderer.close()
    face = distance - 0.05
    # z-depth (along the optical axis), not ray length: the same value at the centre and in the corners.
    np.testing.assert_allclose(depth, face, rtol=2e-3)
    pose = camera_pose(data)
    np.testing.assert_allclose(pose[:3, 2], [1, 0, 0], atol=1e-9)  # optical z looks down world +x
    np.testing.assert_allclose(pose[:3, 1], [0, 0, -1], atol=1e-9)  # optical y points down
    assert (seg == 0).all()


def test_depth_backprojects_into_the_room(sequence):
    from fourds_ros.synthetic.scene import ROOM_HALF, WALL_HEIGHT
    k = sequence.intrinsics
    for f in (0, 20, 39):
        d = sequence.depth[f]
        v, u = np.nonzero(np.isfinite(d))
        z = d[v, u]
        camera = np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z, np.ones_like(z)])
        world = sequence.world_from_camera[f] @ camera
        assert (np.abs(world[:2]) <= ROOM_HALF + 0.1).all() and (world[2] >= -0.01).all()
        assert (world[2] <= WALL_HEIGHT + 0.05).all()
        assert (np.abs(world[2]) < 0.01).mean() > 0.05, "part of the view is the floor at z = 0"


def test_tracked_points_land_on_their_object_and_static_points_stay_put(sequence):
    k = sequence.intrinsics
    on_objects = 0
    for n in range(len(sequence.point_tracks)):
        frames = np.flatnonzero(sequence.point_visible[n])
        obj = sequence.point_object[n]
        if obj >= 0:
            # Boxes of objects showing fewer than MIN_BOX_PIXELS pixels are marked invisible: compare the rest.
            frames = frames[sequence.box_visible[obj, frames]]
            boxes = sequence.boxes[obj, frames]
            x, y = sequence.point_tracks[n, frames].T
            inside = (x >= boxes[:, 0] - 1) & (x <= boxes[:, 2] + 1) & (y >= boxes[:, 1] - 1) & (y <= boxes[:, 3] + 1)
            assert inside.all(), f"track {n} leaves the box of {sequence.box_names[obj]}"
            on_objects += len(frames)
        else:
            # A point of the static scene: back-projected through the depth it lands on, it stays in place.
            world = []
            for f in frames:
                x, y = sequence.point_tracks[n, f]
                z = sequence.depth[f, int(round(y)), int(round(x))]
                world.append(sequence.world_from_camera[f] @ [(x - k[0, 2]) / k[0, 0] * z,
                                                              (y - k[1, 2]) / k[1, 1] * z, z, 1])
            if len(world) > 1:
                # Depth is looked up at the nearest pixel: allow a pixel's worth at grazing angles.
                world = np.array(world)[:, :3]
                distance = np.linalg.norm(world - sequence.world_from_camera[frames, :3, 3], axis=1).mean()
                assert np.ptp(world, axis=0).max() < 0.05 * distance + 0.02, n
    assert on_objects > 0


def test_boxes_are_inside_the_image_and_tracks_project_consistently(sequence):
    h, w = sequence.depth.shape[1:]
    b = sequence.boxes[sequence.box_visible]
    assert (b[:, 0] <= b[:, 2]).all() and (b[:, 1] <= b[:, 3]).all()
    assert (b[:, [0, 2]] >= 0).all() and (b[:, [0, 2]] < w).all() and (b[:, [1, 3]] < h).all()
    assert np.allclose(intrinsics_for(h, w, 60.0), sequence.intrinsics)
    assert project(np.array([[0.0, 0.0, 1.0]]), sequence.intrinsics)[0].tolist() == [(w - 1) / 2, (h - 1) / 2]
    assert set(sequence.motion) <= {"move", "rotate", "static"}


def test_same_seed_same_bag(tmp_path):
    first = generate(seed=3, frames=20, height=48, width=64, num_points=8)
    second = generate(seed=3, frames=20, height=48, width=64, num_points=8)
    np.testing.assert_array_equal(first.rgb, second.rgb)
    np.testing.assert_array_equal(first.point_tracks, second.point_tracks)
    write_bag(first, tmp_path / "a")
    write_bag(second, tmp_path / "b")
    (_, frames_a, gt_a), (_, frames_b, gt_b) = read_bag(tmp_path / "a"), read_bag(tmp_path / "b")
    assert [f.data for f in frames_a] == [f.data for f in frames_b]
    assert all(np.array_equal(gt_a.poses[s], gt_b.poses[s]) for s in gt_a.poses)
    different = generate(seed=4, frames=20, height=48, width=64, num_points=8)
    assert not np.array_equal(first.rgb, different.rgb)


def test_bag_round_trip_keeps_the_ground_truth(sequence, tmp_path):
    write_bag(sequence, tmp_path / "bag")
    topic, frames, gt = read_bag(tmp_path / "bag")
    assert topic == "/camera/image_raw" and len(frames) == 40
    np.testing.assert_array_equal(frames[5].rgb(), sequence.rgb[5])
    stamp = frames[5].stamp_ns
    np.testing.assert_array_equal(gt.depth[stamp], sequence.depth[5])
    np.testing.assert_allclose(gt.poses[stamp], sequence.world_from_camera[5], atol=1e-9)
    np.testing.assert_allclose(gt.intrinsics, sequence.intrinsics)
    points = gt.points[stamp]
    np.testing.assert_allclose(np.stack([points["u"], points["v"]], 1), sequence.point_tracks[:, 5])
    assert (points["visible"].astype(bool) == sequence.point_visible[:, 5]).all()


def test_a_standing_camera_sees_people_walk_across_its_view():
    """camera_motion='standing': one pose for every frame, people-sized bodies crossing the view (their boxes
    move), the static scene still; reproducible by seed."""
    seq = generate(seed=2001, frames=48, height=72, width=96, num_points=16, camera_motion="standing")
    assert all(np.array_equal(pose, seq.world_from_camera[0]) for pose in seq.world_from_camera)
    assert set(seq.motion) == {"static"}
    movers = [i for i, name in enumerate(seq.box_names) if name.startswith("mover")]
    crossing = [i for i in movers if seq.box_visible[i].sum() >= 8]
    assert crossing, "no person crossed the view"
    for i in crossing:
        seen = np.flatnonzero(seq.box_visible[i])
        centres = (seq.boxes[i, seen, 0] + seq.boxes[i, seen, 2]) / 2
        assert np.ptp(centres) > 5, "a person stood still"
    static = [i for i, name in enumerate(seq.box_names) if not name.startswith("mover") and seq.box_visible[i].all()]
    for i in static:
        assert np.ptp(seq.boxes[i], axis=0).max() == 0
    again = generate(seed=2001, frames=48, height=72, width=96, num_points=16, camera_motion="standing")
    np.testing.assert_array_equal(seq.rgb, again.rgb)
    with pytest.raises(ValueError, match="camera_motion"):
        generate(seed=1, frames=4, height=24, width=32, camera_motion="flying")


def test_sensor_effects_change_the_images_only_and_are_reproducible():
    clean = generate(seed=5, frames=12, height=48, width=64, num_points=8)
    real = generate(seed=5, frames=12, height=48, width=64, num_points=8, sensor_effects=True)
    again = generate(seed=5, frames=12, height=48, width=64, num_points=8, sensor_effects=True)
    np.testing.assert_array_equal(real.rgb, again.rgb)
    np.testing.assert_array_equal(real.depth, clean.depth)
    np.testing.assert_array_equal(real.point_tracks, clean.point_tracks)
    np.testing.assert_array_equal(real.world_from_camera, clean.world_from_camera)
    difference = np.abs(real.rgb.astype(int) - clean.rgb.astype(int)).mean()
    assert 2 < difference < 40, difference  # a noisy, differently exposed view of the same scene
    # Noise: neighbouring pixels of a flat wall differ more than in the render.
    assert np.abs(np.diff(real.rgb.astype(int), axis=2)).mean() > np.abs(np.diff(clean.rgb.astype(int), axis=2)).mean()
