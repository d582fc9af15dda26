"""Real footage in: every converter layout round-trips exactly, bad sources fail naming the file and line,
ROS 1 and compressed-image bags go through `eval`, and the real sequence in ../shared/real converts end to end."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from bag_damage import cut_short, sqlite3_copy
from conftest import REPO, cli, tiny_config
from fourds_ros.bags.convert import ConvertError, convert
from fourds_ros.bags.reader import read_bag
from fourds_ros.bags.trajectory_files import TrajectoryFileError, read_trajectory, read_tum

SHARED_REAL = Path(os.environ.get("FOURDS_REAL_DATA", REPO.parent / "shared" / "real"))


def textured(rng: np.random.Generator, h: int = 48, w: int = 64) -> np.ndarray:
    """A BGR image with enough texture for corners."""
    coarse = rng.integers(0, 255, (h // 4, w // 4, 3), dtype=np.uint8)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_NEAREST)


def random_pose(rng: np.random.Generator) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_rotvec(rng.normal(0, 0.3, 3)).as_matrix()
    pose[:3, 3] = rng.normal(0, 1, 3)
    return pose


def read_back(bag: Path):
    topic, frames, gt = read_bag(bag)
    stamps = [f.stamp_ns for f in frames]
    return topic, frames, gt, stamps


# Layouts ---------------------------------------------------------------------------
def test_plain_folder_round_trips_images_depth_intrinsics_and_poses(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "seq"
    (src / "images").mkdir(parents=True)
    (src / "depth").mkdir()
    k = np.array([[50.5, 0, 31.25], [0, 51.0, 23.5], [0, 0, 1]])
    np.savetxt(src / "K.txt", k)
    poses, depths, images = [], [], []
    for i in range(5):
        images.append(textured(rng))
        cv2.imwrite(str(src / "images" / f"{i:05d}.png"), images[-1])
        depth_mm = rng.integers(500, 4000, (48, 64)).astype(np.uint16)
        depth_mm[:3] = 0  # invalid
        depths.append(depth_mm)
        cv2.imwrite(str(src / "depth" / f"{i:05d}.png"), depth_mm)
        poses.append(random_pose(rng))
    np.savetxt(src / "poses.txt", np.array(poses).reshape(5, 16))
    summary = convert(src, tmp_path / "bag", fps=20, point_tracks=0)
    assert summary["layout"] == "folder" and summary["frames"] == 5 and summary["frames_skipped"] == 0
    _, frames, gt, stamps = read_back(tmp_path / "bag")
    assert stamps == [i * 50_000_000 for i in range(5)]
    np.testing.assert_array_equal(gt.intrinsics, k)
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame.rgb(), cv2.cvtColor(images[i], cv2.COLOR_BGR2RGB))
        expected = depths[i].astype(np.float32) / 1000
        expected[depths[i] == 0] = np.nan
        np.testing.assert_array_equal(gt.depth[stamps[i]], expected)
        np.testing.assert_allclose(gt.poses[stamps[i]], poses[i], atol=1e-12)


def test_tum_layout_associates_depth_and_poses_by_timestamp(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "rgbd_dataset_freiburg1_xyz"
    (src / "rgb").mkdir(parents=True)
    (src / "depth").mkdir()
    rgb_t = [1305031102.175304 + 0.033 * i for i in range(4)]
    rgb_lines, depth_lines, gt_lines, truth = [], [], [], []
    for i, t in enumerate(rgb_t):
        cv2.imwrite(str(src / "rgb" / f"{t:.6f}.png"), textured(rng))
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
        d = t + 0.004  # depth a few ms off, as the Kinect delivers it
        raw = np.full((48, 64), 5000 * (i + 1), np.uint16)  # i+1 metres in 1/5000 m
        cv2.imwrite(str(src / "depth" / f"{d:.6f}.png"), raw)
        depth_lines.append(f"{d:.6f} depth/{d:.6f}.png")
    for j in range(40):  # ground truth at 100 Hz, 3 ms before the camera clock
        t = rgb_t[0] - 0.003 + 0.01 * j
        pose = random_pose(rng)
        q = Rotation.from_matrix(pose[:3, :3]).as_quat()
        gt_lines.append(f"{t:.6f} " + " ".join(f"{v:.9f}" for v in (*pose[:3, 3], *q)))
        truth.append((t, pose))
    for name, lines in (("rgb.txt", rgb_lines), ("depth.txt", depth_lines), ("groundtruth.txt", gt_lines)):
        (src / name).write_text("# timestamp filename\n" + "\n".join(lines) + "\n")
    convert(src, tmp_path / "bag", point_tracks=0)
    _, frames, gt, stamps = read_back(tmp_path / "bag")
    assert stamps == [int(round(t * 1e9)) for t in rgb_t]
    np.testing.assert_allclose(gt.intrinsics, [[517.3, 0, 318.6], [0, 516.5, 255.3], [0, 0, 1]])
    for i, (stamp, t) in enumerate(zip(stamps, rgb_t)):
        np.testing.assert_allclose(gt.depth[stamp], i + 1, rtol=1e-6)
        nearest = min(truth, key=lambda row: abs(row[0] - t))[1]
        np.testing.assert_allclose(gt.poses[stamp], nearest, atol=1e-6)


def _euroc(root: Path, rng, distortion=(0.0, 0.0, 0.0, 0.0)):
    cam = root / "mav0" / "cam0"
    (cam / "data").mkdir(parents=True)
    stamps = [1403715273262142976 + 50_000_000 * i for i in range(4)]
    body_from_camera = random_pose(rng)
    (cam / "sensor.yaml").write_text(
        "%YAML:1.0\nsensor_type: camera\nT_BS:\n  cols: 4\n  rows: 4\n  data: ["
        + ", ".join(f"{v:.12f}" for v in body_from_camera.ravel()) + "]\nrate_hz: 20\nresolution: [64, 48]\n"
        "camera_model: pinhole\nintrinsics: [40.0, 41.0, 31.5, 23.5]\ndistortion_model: radial-tangential\n"
        f"distortion_coefficients: [{', '.join(map(str, distortion))}]\n")
    lines = ["#timestamp [ns],filename"]
    for s in stamps:
        cv2.imwrite(str(cam / "data" / f"{s}.png"), cv2.cvtColor(textured(rng), cv2.COLOR_BGR2GRAY))
        lines.append(f"{s},{s}.png")
    (cam / "data.csv").write_text("\n".join(lines) + "\n")
    world_from_body = [random_pose(rng) for _ in stamps]
    gt = root / "mav0" / "state_groundtruth_estimate0"
    gt.mkdir(parents=True)
    rows = ["#timestamp,p_x,p_y,p_z,q_w,q_x,q_y,q_z,v_x,v_y,v_z"]
    for s, pose in zip(stamps, world_from_body):
        x, y, z, w = Rotation.from_matrix(pose[:3, :3]).as_quat()
        rows.append(",".join(str(v) for v in (s, *pose[:3, 3], w, x, y, z, 0, 0, 0)))
    (gt / "data.csv").write_text("\n".join(rows) + "\n")
    return stamps, body_from_camera, world_from_body


def test_euroc_layout_applies_the_body_to_camera_extrinsic(tmp_path):
    rng = np.random.default_rng(2)
    stamps, body_from_camera, world_from_body = _euroc(tmp_path / "V1", rng)
    summary = convert(tmp_path / "V1", tmp_path / "bag")
    assert summary["layout"] == "euroc" and not summary["undistorted"]
    _, frames, gt, got_stamps = read_back(tmp_path / "bag")
    assert got_stamps == stamps and {f.encoding for f in frames} == {"mono8"}
    np.testing.assert_allclose(gt.intrinsics, [[40, 0, 31.5], [0, 41, 23.5], [0, 0, 1]])
    for s, pose in zip(stamps, world_from_body):
        np.testing.assert_allclose(gt.poses[s], pose @ body_from_camera, atol=1e-9)


def test_a_distorted_camera_is_undistorted_to_a_pinhole_or_passed_on(tmp_path):
    rng = np.random.default_rng(3)
    _euroc(tmp_path / "V1", rng, distortion=(-0.28, 0.07, 0.0002, 0.00002))
    assert convert(tmp_path / "V1", tmp_path / "rectified")["undistorted"]
    assert not convert(tmp_path / "V1", tmp_path / "raw", undistort=False)["undistorted"]
    from rosbags.highlevel import AnyReader

    from fourds_ros.bags.topics import typestore
    infos = {}
    for name in ("rectified", "raw"):
        with AnyReader([tmp_path / name], default_typestore=typestore()) as reader:
            conn = next(c for c in reader.connections if c.topic == "/camera/camera_info")
            _, _, raw = next(reader.messages(connections=[conn]))
            infos[name] = reader.deserialize(raw, conn.msgtype)
    assert not np.any(infos["rectified"].d) and np.allclose(infos["raw"].d[:4], [-0.28, 0.07, 0.0002, 0.00002])
    assert np.allclose(infos["raw"].k.reshape(3, 3), [[40, 0, 31.5], [0, 41, 23.5], [0, 0, 1]])
    assert not np.allclose(infos["rectified"].k, infos["raw"].k)  # the new pinhole keeps only valid pixels


def test_kitti_layout_reads_calibration_times_and_poses(tmp_path):
    rng = np.random.default_rng(4)
    seq = tmp_path / "dataset" / "sequences" / "00"
    (seq / "image_0").mkdir(parents=True)
    (tmp_path / "dataset" / "poses").mkdir(parents=True)
    p0 = np.array([[45.0, 0, 32.0, 0], [0, 45.0, 24.0, 0], [0, 0, 1, 0]])
    (seq / "calib.txt").write_text("".join(f"P{i}: " + " ".join(map(str, p0.ravel())) + "\n" for i in range(4)))
    (seq / "times.txt").write_text("\n".join(f"{0.1 * i:e}" for i in range(3)) + "\n")
    poses = [random_pose(rng) for _ in range(3)]
    (tmp_path / "dataset" / "poses" / "00.txt").write_text(
        "\n".join(" ".join(f"{v:.12e}" for v in p[:3].ravel()) for p in poses) + "\n")
    for i in range(3):
        cv2.imwrite(str(seq / "image_0" / f"{i:06d}.png"), cv2.cvtColor(textured(rng), cv2.COLOR_BGR2GRAY))
    convert(seq, tmp_path / "bag")
    _, frames, gt, stamps = read_back(tmp_path / "bag")
    assert stamps == [0, 100_000_000, 200_000_000]
    np.testing.assert_allclose(gt.intrinsics, p0[:, :3])
    for s, pose in zip(stamps, poses):
        np.testing.assert_allclose(gt.poses[s], pose, atol=1e-9)


def test_a_video_converts_with_a_focal_length_and_no_ground_truth(tmp_path):
    rng = np.random.default_rng(5)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (64, 48))
    for _ in range(6):
        writer.write(textured(rng))
    writer.release()
    summary = convert(video, tmp_path / "bag", fx=60.0)
    assert summary["layout"] == "video" and summary["frames"] == 6 and not summary["poses"]
    _, frames, gt, stamps = read_back(tmp_path / "bag")
    assert len(frames) == 6 and np.allclose(np.diff(stamps), 1e9 / 15.0, atol=1)
    np.testing.assert_allclose(gt.intrinsics, [[60, 0, 31.5], [0, 60, 23.5], [0, 0, 1]])
    with pytest.raises(ConvertError, match="give the focal length"):
        convert(video, tmp_path / "bag2")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(ConvertError, match="cannot open video .*broken.mp4"):
        convert(broken, tmp_path / "bag3", fx=60.0)


# Bad sources -------------------------------------------------------------------------
def _folder(src: Path, rng, frames: int = 4) -> None:
    (src / "images").mkdir(parents=True)
    np.savetxt(src / "K.txt", [[50, 0, 31.5], [0, 50, 23.5], [0, 0, 1]])
    for i in range(frames):
        cv2.imwrite(str(src / "images" / f"{i:05d}.png"), textured(rng))


def test_bad_sources_name_the_file_and_line(tmp_path):
    rng = np.random.default_rng(6)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ConvertError, match="unknown layout"):
        convert(tmp_path / "nothing", tmp_path / "out")
    tum = tmp_path / "tum"
    tum.mkdir()
    (tum / "rgb.txt").write_text("1.0 rgb/a.png\n0.5 rgb/b.png\n")
    with pytest.raises(ConvertError, match=r"rgb.txt:2: timestamp out of order"):
        convert(tum, tmp_path / "out", fx=50.0)
    (tum / "rgb.txt").write_text("1.0 rgb/a.png\n1.0 rgb/b.png\n")
    with pytest.raises(ConvertError, match=r"rgb.txt:2: timestamp duplicated"):
        convert(tum, tmp_path / "out", fx=50.0)
    (tum / "rgb").mkdir()
    cv2.imwrite(str(tum / "rgb" / "a.png"), textured(rng))
    (tum / "rgb.txt").write_text("# header\n1.0 rgb/a.png\n2.0 rgb/missing.png\n")
    with pytest.raises(ConvertError, match=r"rgb.txt:3: .*missing.png does not exist"):
        convert(tum, tmp_path / "out", k=np.eye(3) * 50 + np.diag([0, 0, -49]))
    folder = tmp_path / "folder"
    _folder(folder, rng)
    np.savetxt(folder / "poses.txt", np.tile(np.eye(4).ravel(), (3, 1)))
    with pytest.raises(ConvertError, match="3 poses for 4 frames"):
        convert(folder, tmp_path / "out")
    bent = np.tile(np.eye(4).ravel(), (4, 1))
    bent[2, 0] = 2.0  # a scaled axis: not a rotation
    np.savetxt(folder / "poses.txt", bent)
    with pytest.raises(ConvertError, match=r"poses.txt:3: not a rigid transform"):
        convert(folder, tmp_path / "out")
    (tmp_path / "gt.txt").write_text("1.0 0 0 0 0 0 0 1\n2.0 0 0 0 0 0 0\n")
    with pytest.raises(TrajectoryFileError, match=r"gt.txt:2: a TUM row has 8 values"):
        read_tum(tmp_path / "gt.txt")
    (tmp_path / "gt.txt").write_text("1.0 0 0 0 0 0 0 1\n2.0 0 0 0 0.5 0 0 1\n")
    with pytest.raises(TrajectoryFileError, match=r"gt.txt:2: quaternion of norm 1.118"):
        read_trajectory(tmp_path / "gt.txt")


def test_a_corrupt_image_in_the_middle_is_skipped_and_counted(tmp_path):
    rng = np.random.default_rng(7)
    folder = tmp_path / "folder"
    _folder(folder, rng, frames=5)
    (folder / "images" / "00002.png").write_bytes(b"\x89PNG truncated")
    summary = convert(folder, tmp_path / "bag")
    assert summary["frames"] == 4 and summary["frames_skipped"] == 1 and "00002.png" in summary["skipped"][0]
    on_disk = json.loads((tmp_path / "bag" / "conversion.json").read_text())
    assert on_disk["frames_skipped"] == 1
    _, frames, _, stamps = read_back(tmp_path / "bag")
    assert stamps == [0, 100_000_000, 300_000_000, 400_000_000]  # the gap is where the bad frame was


# Bags of other kinds through eval ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from fourds_ros.model import FourDS, save_model_dir
    model = FourDS(tiny_config(frames=16, size=32))
    model.reset_parameters(0)
    with torch.no_grad():
        model.heads["depth"].readout.out.bias += 2.0
    return save_model_dir(model, tmp_path_factory.mktemp("real") / "model")


def _camera_messages():
    """The sample bag's frames and ground-truth poses as numpy."""
    _, frames, gt = read_bag(REPO / "data" / "sample_bag")
    return frames[:20], gt


def test_a_compressed_image_bag_goes_through_eval(tmp_path, tiny_model):
    from fourds_ros.bags.writer import GroundTruthBagWriter
    frames, gt = _camera_messages()
    with GroundTruthBagWriter(tmp_path / "compressed") as bag:
        for i, f in enumerate(frames):
            ok, png = cv2.imencode(".png", cv2.cvtColor(f.rgb(), cv2.COLOR_RGB2BGR))
            data = b"garbage" if i == 7 else png.tobytes()  # one frame that does not decode
            bag.frame(f.stamp_ns, compressed=(data, "png"), k=gt.intrinsics, size=(f.height, f.width),
                      pose=gt.poses[f.stamp_ns])
    topic, read, gt_read = read_bag(tmp_path / "compressed")
    assert topic == "/camera/image_raw/compressed" and len(read) == 19
    np.testing.assert_array_equal(read[0].rgb(), frames[0].rgb())  # png is lossless
    assert any("did not decode" in n for n in gt_read.notes)
    result = cli("eval", tmp_path / "compressed", "--model", tiny_model, "--out", tmp_path / "r")
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert report["frames"] == 19 and "egomotion" in report["model_metrics"], result.stdout
    assert any("did not decode" in n for n in report["input_notes"])


@pytest.mark.parametrize("storage, keep_metadata", [("mcap", True), ("sqlite3", True), ("sqlite3", False)])
def test_a_recording_cut_short_is_scored_up_to_the_damage(tmp_path, tiny_model, storage, keep_metadata):
    bag = tmp_path / "bag"
    if storage == "mcap":
        shutil.copytree(REPO / "data" / "sample_bag", bag)
    else:
        sqlite3_copy(REPO / "data" / "sample_bag", bag)
    cut_short(bag, 0.6, keep_metadata)
    cli("eval", bag, "--model", tiny_model, "--out", tmp_path / "r")
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert 16 <= report["frames"] < 48, report["frames"]
    assert any("damaged" in n or "truncated" in n for n in report["input_notes"]), report["input_notes"]
    assert {"depth", "egomotion", "point_tracks", "box_tracks"} <= set(report["model_metrics"])


@pytest.mark.slow
def test_a_recording_cut_short_replays_through_the_node_up_to_the_damage(tmp_path, tiny_model):
    from fourds_ros.ros.replay import replay
    bag = tmp_path / "bag"
    shutil.copytree(REPO / "data" / "sample_bag", bag)
    cut_short(bag, 0.6, keep_metadata=False)
    report = replay(bag, tiny_model, tmp_path / "r", domain=78)
    assert 16 <= report["frames"] < 48 and report["runtime"]["end_to_end_latency_ms"]["frames"] > 0
    assert any("damaged" in n for n in report["input_notes"])


def test_a_ros1_bag_goes_through_eval_with_poses_from_a_tum_file(tmp_path, tiny_model):
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore
    frames, gt = _camera_messages()
    store = get_typestore(Stores.ROS1_NOETIC)
    Header, Time, Image = (store.types[n] for n in ("std_msgs/msg/Header", "builtin_interfaces/msg/Time",
                                                     "sensor_msgs/msg/Image"))
    with Writer(tmp_path / "camera.bag") as writer:
        conn = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=store)
        for seq, f in enumerate(frames):
            sec, nsec = divmod(f.stamp_ns, 10**9)
            msg = Image(header=Header(seq=seq, stamp=Time(sec=sec, nanosec=nsec), frame_id="cam"), height=f.height,
                        width=f.width, encoding=f.encoding, is_bigendian=0, step=f.step,
                        data=np.frombuffer(f.data, np.uint8))
            writer.write(conn, f.stamp_ns, store.serialize_ros1(msg, "sensor_msgs/msg/Image"))
    tum = tmp_path / "groundtruth.txt"
    tum.write_text("".join(f"{s / 1e9:.9f} " + " ".join(f"{v:.12f}" for v in (
        *p[:3, 3], *Rotation.from_matrix(p[:3, :3]).as_quat())) + "\n" for s, p in sorted(gt.poses.items())))
    topic, read, gt_read = read_bag(tmp_path / "camera.bag", gt=tum)
    assert topic == "/cam/image" and len(read) == 20 and read[3].data == frames[3].data
    np.testing.assert_allclose(gt_read.poses[frames[5].stamp_ns], gt.poses[frames[5].stamp_ns], atol=1e-9)
    cli("eval", tmp_path / "camera.bag", "--model", tiny_model, "--gt", tum, "--out", tmp_path / "r")
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert report["model_metrics"]["egomotion"]["frames"] == 20 and "orb_essential_vo" not in report["baselines"]
    assert any("groundtruth.txt" in n for n in report["input_notes"])


# The real sequence -------------------------------------------------------------------
def test_the_real_holo_sequence_converts_end_to_end(tmp_path):
    if not (SHARED_REAL / "holo_office_b" / "K.txt").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the real sequences are missing at {SHARED_REAL}")
        pytest.skip(f"no real sequences at {SHARED_REAL}")
    src = SHARED_REAL / "holo_office_b"
    summary = convert(src, tmp_path / "holo", fps=10)
    assert summary["frames"] == 134 and summary["depth_frames"] == 134 and summary["derived_point_tracks"] == 64
    _, frames, gt, stamps = read_back(tmp_path / "holo")
    assert (frames[0].width, frames[0].height) == (540, 360) and stamps[1] == 100_000_000
    np.testing.assert_array_equal(gt.intrinsics, np.loadtxt(src / "K.txt"))
    # The file gives rotations to 6 decimals (not exactly orthonormal); a quaternion keeps their rotation.
    np.testing.assert_allclose(gt.poses[stamps[-1]], np.loadtxt(src / "poses.txt")[-1].reshape(4, 4), atol=1e-5)
    raw = cv2.imread(str(src / "depth" / "00150.png"), cv2.IMREAD_UNCHANGED)
    depth = gt.depth[stamps[150 - 103]]
    assert np.array_equal(np.isnan(depth), raw == 0)
    np.testing.assert_allclose(depth[raw > 0], raw[raw > 0] / 1000.0, rtol=1e-6)
    assert len(gt.points) == 134


def test_derived_tracks_land_where_the_geometry_puts_them_and_hide_behind_occluders():
    """A textured wall 3 m ahead, the camera sliding 0.1 m right per frame; on frame 2 a box 1 m ahead covers
    the left half of the image. Every derived point must move 50 * 0.1 / 3 px left per frame, and be hidden
    exactly where it falls inside the image behind the box."""
    from fourds_ros.bags.derived_tracks import derive_point_tracks
    rng = np.random.default_rng(8)
    frames, h, w = 5, 48, 64
    k = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    grey = cv2.cvtColor(textured(rng, h, w), cv2.COLOR_BGR2GRAY)
    poses = np.repeat(np.eye(4)[None], frames, 0)
    poses[:, 0, 3] = 0.1 * np.arange(frames)
    depths = [np.full((h, w), 3.0, np.float32) for _ in range(frames)]
    depths[2][:, : w // 2] = 1.0
    tracks, visible = derive_point_tracks(frames, lambda f: (grey, depths[f]), k, poses, count=16, seed_frames=1)
    assert len(tracks) >= 8
    shift = 50 * 0.1 / 3
    for f in range(frames):
        np.testing.assert_allclose(tracks[:, f, 0], tracks[:, 0, 0] - shift * f, atol=1e-4)
        np.testing.assert_allclose(tracks[:, f, 1], tracks[:, 0, 1], atol=1e-4)
        u = tracks[:, f, 0]
        inside = (u >= -0.5) & (u <= w - 0.5)
        behind_box = (f == 2) & (np.round(u) < w // 2 - 2)
        in_box_edge = (f == 2) & (np.abs(np.round(u) - w // 2) <= 2)  # the 5x5 window straddles the edge
        expected = inside & ~behind_box
        assert np.array_equal(visible[~in_box_edge, f], expected[~in_box_edge]), f


@pytest.mark.slow
def test_a_compressed_image_stream_goes_through_the_real_node(tmp_path, tiny_model):
    """`replay` of a CompressedImage bag: the node subscribes with image_transport compressed and answers every
    frame that decodes."""
    from fourds_ros.bags.writer import GroundTruthBagWriter
    from fourds_ros.ros.replay import replay
    frames, gt = _camera_messages()
    with GroundTruthBagWriter(tmp_path / "compressed") as bag:
        for f in frames:
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(f.rgb(), cv2.COLOR_RGB2BGR))
            bag.frame(f.stamp_ns, compressed=(jpeg.tobytes(), "jpeg"), k=gt.intrinsics, size=(f.height, f.width),
                      pose=gt.poses[f.stamp_ns])
    report = replay(tmp_path / "compressed", tiny_model, tmp_path / "r", domain=77)
    diag = report["runtime"]["node_diagnostics"]
    assert int(diag["frames_accepted"]) == 20 and int(diag["frames_rejected"]) == 0, diag
    assert report["model_metrics"]["egomotion"]["frames"] == 20


@pytest.mark.slow
def test_the_real_holo_sequence_is_scored_next_to_every_baseline(tmp_path):
    """What scripts/evaluate_real.sh does for one sequence: convert, then `eval` with the shipped model."""
    if not (SHARED_REAL / "holo_office_b" / "K.txt").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the real sequences are missing at {SHARED_REAL}")
        pytest.skip(f"no real sequences at {SHARED_REAL}")
    cli("convert", SHARED_REAL / "holo_office_b", "--out", tmp_path / "holo", "--fps", "10")
    cli("eval", tmp_path / "holo", "--out", tmp_path / "report")
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    m, b = report["model_metrics"], report["baselines"]
    assert report["frames"] == 134 and report["egomotion"] == "geometric" and report["model"].endswith("models/default")
    assert set(b) == {"constant_depth", "orb_essential_vo", "lucas_kanade"}
    assert {"depth", "egomotion", "point_tracks"} <= set(m) and not m["egomotion"]["static"]
    assert any("derived" in n for n in report["input_notes"])
    # Floors far below today's scores (ATE 0.30 m, AJ 0.12): they catch a broken pipeline, not a weaker model.
    assert m["egomotion"]["ate_rmse_m"] < 0.8 and m["point_tracks"]["average_jaccard"] > 0.03


def test_kitti_raw_poses_come_from_oxts_as_the_devkit_makes_them(tmp_path):
    """The public KITTI raw drive (its timestamps list the full drive's 154 frames, 91 images are here): the poses
    `convert` derives from the OXTS records match the pykitti conversion shipped beside it, the camera matrix is
    `P_rect_02`'s, and a drive without its OXTS record is named."""
    from fourds_ros.bags.convert import read_source
    root = SHARED_REAL / "kitti_raw_2011_09_26_0005_first91"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    source = read_source(root)
    assert source.layout == "kitti_raw" and len(source.images) == 91
    reference = np.loadtxt(root / "2011_09_26_drive_0005_sync" / "poses_cam2_from_oxts.txt").reshape(-1, 3, 4)
    np.testing.assert_allclose(source.poses[:, :3], reference, atol=1e-6)
    assert np.all(np.diff(source.stamps_ns) > 0) and 0.09e9 < np.median(np.diff(source.stamps_ns)) < 0.11e9
    assert source.k[0, 0] == pytest.approx(721.5377)
    broken = tmp_path / "2011_09_26"
    shutil.copytree(root, broken)
    (broken / "2011_09_26_drive_0005_sync" / "oxts" / "data" / "0000000042.txt").unlink()
    with pytest.raises(ConvertError, match="0000000042.txt"):
        read_source(broken)
