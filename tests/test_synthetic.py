"""The synthetic 4D ground truth: geometry, tracks, boxes, determinism, and the bag it is written to."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from fourds_ros.bags.reader import read_bag
from fourds_ros.synthetic.assets import AssetLibrary
from fourds_ros.synthetic.generator import camera_pose, generate, intrinsics_for, project, render_views
from fourds_ros.synthetic.writers import write_bag

os.environ.setdefault("MUJOCO_GL", "egl")


def pybullet_assets(cache_dir: Path) -> AssetLibrary:
    """Photographs and meshes of pybullet_data only: the Debian wallpapers may be missing on a test machine."""
    import pybullet_data
    return AssetLibrary.discover(photo_dirs=[Path(pybullet_data.getDataPath())], cache_dir=cache_dir)


@pytest.fixture(scope="module")
def photo_assets(tmp_path_factory):
    return pybullet_assets(tmp_path_factory.mktemp("textures"))


# The checks of the first generator hold for the photo-real one too (carried by hand, in a 16:9 camera).
@pytest.fixture(scope="module", params=["procedural", "photo"])
def sequence(request):
    if request.param == "procedural":
        return generate(seed=7, frames=40, height=72, width=96, num_points=48)
    return generate(seed=7, frames=40, height=54, width=96, num_points=48, style="photo", camera_motion="handheld",
                    assets=request.getfixturevalue("photo_assets"))


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
            world, seen = [], []
            for f in frames:
                x, y = sequence.point_tracks[n, f]
                z = _depth_at(sequence.depth[f], x, y)
                if z is not None:
                    seen.append(f)
                    world.append(sequence.world_from_camera[f] @ [(x - k[0, 2]) / k[0, 0] * z,
                                                                  (y - k[1, 2]) / k[1, 1] * z, z, 1])
            if len(world) > 1:
                world = np.array(world)[:, :3]
                distance = np.linalg.norm(world - sequence.world_from_camera[seen, :3, 3], axis=1).mean()
                assert np.ptp(world, axis=0).max() < 0.05 * distance + 0.02, n
    assert on_objects > 0


def _depth_at(depth: np.ndarray, x: float, y: float) -> float | None:
    """Depth at a sub-pixel position: inverse depth interpolated bilinearly (exact on a plane, so a floor seen at a
    grazing angle from a low camera is looked up right), or None across a depth edge."""
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    patch = depth[y0:y0 + 2, x0:x0 + 2]
    if patch.shape != (2, 2) or not np.isfinite(patch).all() or np.ptp(patch) > 0.1 * patch.min():
        return None
    ax, ay = x - x0, y - y0
    inverse = 1 / patch
    top, bottom = inverse[0, 0] * (1 - ax) + inverse[0, 1] * ax, inverse[1, 0] * (1 - ax) + inverse[1, 1] * ax
    return float(1 / (top * (1 - ay) + bottom * ay))


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


def test_photo_style_is_reproducible_and_differs_from_the_procedural_room(photo_assets):
    first = generate(seed=11, frames=6, height=48, width=64, num_points=8, style="photo", assets=photo_assets)
    again = generate(seed=11, frames=6, height=48, width=64, num_points=8, style="photo", assets=photo_assets)
    np.testing.assert_array_equal(first.rgb, again.rgb)
    np.testing.assert_array_equal(first.depth, again.depth)
    procedural = generate(seed=11, frames=6, height=48, width=64, num_points=8)
    assert not np.array_equal(first.rgb, procedural.rgb)
    with pytest.raises(ValueError, match="photographs"):
        generate(seed=11, frames=2, height=24, width=32, style="photo", assets=AssetLibrary([], []))
    with pytest.raises(ValueError, match="style"):
        generate(seed=11, frames=2, height=24, width=32, style="cartoon")


def test_an_asset_that_fails_to_load_is_skipped_logged_once_and_counted(tmp_path, caplog):
    photos = tmp_path / "photos"
    photos.mkdir()
    good = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    import cv2
    cv2.imwrite(str(photos / "good.jpg"), good)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cv2.imwrite(str(photos / "icon.png"), good[:32, :32])  # too small to be a photograph: ignored, not an error
    with caplog.at_level(logging.WARNING, logger="fourds_ros.synthetic.assets"):
        library = AssetLibrary.discover(photo_dirs=[photos], cache_dir=tmp_path / "cache")
    assert len(library.textures) == 1 and library.textures[0].suffix == ".png"
    assert any("broken.jpg" in s for s in library.skipped) and not any("icon" in s for s in library.skipped)
    assert sum("broken.jpg" in r.getMessage() for r in caplog.records) == 1
    assert "1 photo textures" in library.describe() and "skipped" in library.describe()
    again = AssetLibrary.discover(photo_dirs=[photos], cache_dir=tmp_path / "cache")
    assert again.textures == library.textures  # cached once, reused


@pytest.mark.parametrize("motion", ["handheld", "walking"])
def test_a_carried_camera_shakes_around_the_robot_path(motion):
    robot = generate(seed=9, frames=30, height=24, width=32, num_points=4)
    carried = generate(seed=9, frames=30, height=24, width=32, num_points=4, camera_motion=motion)
    offset = np.linalg.norm(carried.world_from_camera[:, :3, 3] - robot.world_from_camera[:, :3, 3], axis=1)
    assert 0.003 < offset.max() < 0.1, offset.max()  # centimetres around the same path
    assert set(carried.motion) == {"move"}


def test_shards_are_written_once_in_parallel_with_settings_drawn_from_the_seed(tmp_path):
    from fourds_ros.synthetic.shards import ASPECTS, shard_settings, write_shards
    varied = [shard_settings(seed, 128, "procedural", vary=True) for seed in range(40)]
    assert varied == [shard_settings(seed, 128, "procedural", vary=True) for seed in range(40)]
    assert {(s.height, s.width) for s in varied} <= {(128 * a // b, 128) for a, b in ASPECTS}
    assert len({(s.height, s.camera_motion, s.sensor_effects) for s in varied}) > 4
    assert all(40 <= s.fovy_deg <= 75 for s in varied)
    plain = shard_settings(3, 64, "procedural", vary=False)
    assert (plain.height, plain.fovy_deg, plain.camera_motion, plain.sensor_effects) == (48, 60.0, "robot", False)
    paths = write_shards([0, 1, 2], tmp_path, frames=4, width=32, vary=True, workers=2, progress=False)
    assert [p.name for p in paths] == ["0.npz", "1.npz", "2.npz"] and all(p.is_file() for p in paths)
    with np.load(paths[1]) as shard:
        settings = shard_settings(1, 32, "procedural", vary=True)
        assert shard["rgb"].shape == (4, settings.height, 32, 3)
    stamps = [p.stat().st_mtime_ns for p in paths]
    write_shards([0, 1, 2, 3], tmp_path, frames=4, width=32, vary=True, workers=1, progress=False)
    assert [p.stat().st_mtime_ns for p in paths] == stamps and (tmp_path / "3.npz").is_file()
