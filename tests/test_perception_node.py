"""perception_node in its own process, fed by real publisher processes, checked by a real subscriber."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path as PathMsg
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from conftest import tiny_config
from fourds_ros.model import FourDS, save_model_dir
from fourds_ros.ros import messages
from fourds_ros.synthetic.pattern_clip import moving_pattern_clip
from fourds_ros.contract import BOX_DTYPE, DEPTH_POINT_DTYPE, POINT_DTYPE, pack_boxes, unpack
from fourds_ros.ros.processes import NodeProcess, TopicRecorder
from ros_helpers import REPO, next_domain

pytestmark = pytest.mark.slow  # real processes / training runs: `-m "not slow"` leaves them out

PARAMS_FILE = REPO / "config" / "perception.yaml"
OUTPUTS = {"image": Image, "depth/image": Image, "depth/camera_info": CameraInfo, "depth/confidence": Image,
           "depth/points": PointCloud2, "odometry": Odometry,
           "path": PathMsg, "tracks/points": PointCloud2, "tracks/boxes": PointCloud2, "tracks/markers": MarkerArray,
           "/diagnostics": DiagnosticArray}


@pytest.fixture(scope="module")
def node_model(tmp_path_factory):
    model = FourDS(tiny_config(frames=16, size=32))
    model.reset_parameters(0)
    with torch.no_grad():
        model.heads["points"].readout.out.bias[2::3] = 3.0  # untrained heads that call their tracks visible
        model.heads["boxes"].readout.out.bias[4::5] = 3.0
        model.heads["pose"].readout.out.weight.normal_(0, 0.02, generator=torch.Generator().manual_seed(0))
    model_dir = save_model_dir(model, tmp_path_factory.mktemp("node") / "model")
    from fourds_ros.runtime.graph_lookup import find_or_export
    find_or_export(model_dir)  # export once, so every node start reuses it
    return model_dir


@pytest.fixture
def processes():
    started: list[NodeProcess] = []
    yield started
    for p in started:
        p.stop()


def start_node(processes, domain, tmp_path, model_dir, *extra: str, params_file=PARAMS_FILE) -> NodeProcess:
    # A deep output history, as replay sets it: a window can emit up to 16 frames at once, and on a loaded machine
    # the recorder may not run before a history of 10 overwrites samples it has not acknowledged.
    node = NodeProcess("perception_node", ["--ros-args", "--params-file", params_file, "-p", f"model_dir:={model_dir}",
                                       "-p", "input_reliability:=reliable", "-p", "input_depth:=100",
                                       "-p", "output_depth:=100", "-p", "diagnostics_period:=0.2", *extra],
                   domain, tmp_path)
    processes.append(node)
    return node


def image_folder(path, frames: int, height: int = 96, width: int = 128):
    path.mkdir()
    for i, frame in enumerate(moving_pattern_clip(frames, height, width)):
        cv2.imwrite(str(path / f"{i:04d}.png"), frame[..., ::-1])
    return path


def play_frames(processes, domain, tmp_path, frames: int, timeout: float, *extra: str) -> None:
    """video_publisher streams `frames` procedural frames (30 Hz unless `extra` sets the rate) once the node and
    the listener subscribe."""
    publisher = NodeProcess("video_publisher", ["--ros-args", "-p", f"source:={image_folder(tmp_path / 'f', frames)}",
                                                "-p", "wait_for_subscribers:=2", *extra], domain, tmp_path)
    processes.append(publisher)
    assert publisher.wait(timeout) == 0, publisher.log()


PER_FRAME = ["depth/image", "depth/confidence", "odometry"]


def wait_until_connected(listener: TopicRecorder) -> None:
    """The listener is matched to the node's per-frame publishers and has heard its diagnostics: outputs
    published from now on reach it."""
    listener.wait_until_matched(60, PER_FRAME)
    listener.wait_until(lambda: listener.messages("/diagnostics"), 60, "the node's first diagnostics")


PROGRESS = ("frames_received", "frames_emitted", "frames_dropped")  # counts that move while the node works


def run_plan(processes, domain, tmp_path, plan: list, done, what: str) -> TopicRecorder:
    """Play `plan` into the node with tests/scripted_publisher.py; wait until `done(diagnostics)` holds and the
    outputs of every frame the node emitted have arrived. Returns the listener (closed) with what it recorded."""
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    listener = TopicRecorder(domain, OUTPUTS)
    try:
        wait_until_connected(listener)
        publisher = NodeProcess("python", [REPO / "tests" / "scripted_publisher.py", tmp_path / "plan.json"], domain,
                                tmp_path)
        processes.append(publisher)
        assert publisher.wait(300) == 0, publisher.log()
        # A node working through a backlog (a loaded machine) is waited for while its counts move.
        listener.wait_until(lambda: done(listener.last_diagnostics()), 120, what,
                            lambda: f"last diagnostics {listener.last_diagnostics()}",
                            progress=lambda: [listener.last_diagnostics().get(k) for k in PROGRESS])
        listener.wait_for_node_outputs(PER_FRAME, 60)
    finally:
        listener.close()
    return listener


def test_stream_through_the_node(processes, node_model, tmp_path):
    domain = next_domain()
    node = start_node(processes, domain, tmp_path, node_model, "-p", "window_hop:=4", "-p", "point_tracks:=8")
    node.wait_for_log("ready:")
    listener = TopicRecorder(domain, OUTPUTS)
    try:
        listener.wait_until(lambda: listener.messages("/diagnostics"), 20, "diagnostics")
        publisher = NodeProcess("video_publisher", ["--ros-args", "-p", f"source:={image_folder(tmp_path / 'frames', 48)}",
                                                "-p", "rate:=30.0", "-p", "wait_for_subscribers:=2"], domain, tmp_path)
        processes.append(publisher)
        # A box seed on the first image the listener sees.
        listener.wait_until(lambda: listener.messages("image"), 30, "the first image")
        first = listener.messages("image")[0]
        seed_pub = listener.node.create_publisher(PointCloud2, "tracks/box_seeds", 10)
        seed = pack_boxes(np.array([0]), np.array([[40.0, 30.0, 80.0, 60.0]]), np.array([1]), np.array([1.0]))
        seed_pub.publish(messages.track_cloud(seed, first.header))
        assert publisher.wait(30) == 0
        listener.wait_for_node_outputs(PER_FRAME, 30)
    finally:
        listener.close()
    diag = listener.last_diagnostics()
    depth = listener.messages("depth/image")
    image_stamps = [messages.stamp_ns(m.header) for m in listener.messages("image")]
    depth_stamps = [messages.stamp_ns(m.header) for m in depth]
    # One depth image per accepted frame, each with its source frame's stamp, in order, none twice.
    assert len(depth) == int(diag["frames_accepted"]) == int(diag["frames_emitted"]) >= 40
    assert depth_stamps == sorted(set(depth_stamps)) and set(depth_stamps) <= set(image_stamps)
    assert all(m.encoding == "32FC1" and (m.height, m.width) == (32, 32) and m.step == 128 for m in depth)
    assert all(m.header.frame_id == "camera_optical_frame" for m in depth)
    # From the first frame on: the node's first image has its depth (a partial window, its frame repeated).
    assert depth_stamps[0] == min(image_stamps)
    info = listener.messages("depth/camera_info")[-1]
    fx_source = 64 / np.tan(np.radians(30))
    assert (info.width, info.height) == (32, 32) and info.k[0] == pytest.approx(fx_source / 4)
    assert info.k[4] == pytest.approx(fx_source / 3) and info.k[2] == pytest.approx(15.5)
    # Confidence: one per depth image, same stamp and size, 0 to 1; the first frames (partial windows) trusted less.
    confidence = listener.messages("depth/confidence")
    assert [messages.stamp_ns(m.header) for m in confidence] == depth_stamps
    values = [np.frombuffer(bytes(m.data), "<f4").reshape(m.height, m.width) for m in confidence]
    assert all(m.encoding == "32FC1" and (m.height, m.width) == (32, 32) for m in confidence)
    assert all(((0 <= v) & (v <= 1)).all() for v in values) and values[0].max() < np.median(values[-1])
    # The depth as points for a costmap: x y z confidence in the optical frame, z the depth at its pixel.
    clouds = {messages.stamp_ns(m.header): m for m in listener.messages("depth/points")}
    assert set(clouds) == set(depth_stamps)
    cloud, image = clouds[depth_stamps[-1]], depth[-1]
    points = unpack(messages.cloud_fields(cloud), cloud.point_step, bytes(cloud.data), DEPTH_POINT_DTYPE)
    z = np.frombuffer(bytes(image.data), "<f4")
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "confidence"] and cloud.header.frame_id == image.header.frame_id
    np.testing.assert_allclose(np.sort(points["z"]), np.sort(z[np.isfinite(z)]), rtol=1e-6)
    # Odometry: every frame, continuous across window boundaries (no step much larger than within windows).
    odom = listener.messages("odometry")
    assert len(odom) == len(depth) and odom[0].header.frame_id == "fourds_odom"
    assert odom[0].child_frame_id == "camera_optical_frame"
    positions = np.array([[m.pose.pose.position.x, m.pose.pose.position.y, m.pose.pose.position.z] for m in odom])
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    boundaries = [i - 1 for i in range(1, len(odom), 4)]  # windows at the 1st, 5th, 9th ... frame
    inside = np.delete(steps, boundaries)
    assert steps[boundaries].max() <= 3 * inside.max() + 1e-6, (steps[boundaries], inside.max())
    # Point tracks: named fields, ids that live across window boundaries.
    clouds = listener.messages("tracks/points")
    assert len(clouds) == len(depth)
    records = [unpack(messages.cloud_fields(c), c.point_step, bytes(c.data), POINT_DTYPE) for c in clouds]
    assert [f.name for f in clouds[0].fields] == list(POINT_DTYPE.names)
    ids = [set(r["track_id"].tolist()) for r in records]
    for boundary in range(1, len(ids), 4):
        assert ids[boundary - 1] & ids[boundary], f"no track id survives the window boundary at frame {boundary}"
    assert all((0 <= r["u"]).all() and (r["u"] < 128).all() for r in records if len(r))
    boxes = [unpack(messages.cloud_fields(c), c.point_step, bytes(c.data), BOX_DTYPE) for c in listener.messages("tracks/boxes")]
    assert any(len(b) and 0 in b["track_id"] for b in boxes), "the seeded box is tracked"
    assert listener.messages("tracks/markers") and listener.messages("path")
    assert diag["backend"].startswith("onnxruntime") and float(diag["input_rate_hz"]) > 10


def test_bad_input_is_rejected_and_the_node_keeps_publishing(processes, node_model, tmp_path):
    domain = next_domain()
    node = start_node(processes, domain, tmp_path, node_model, "-p", "window_hop:=16", "-p", "point_tracks:=0")
    node.wait_for_log("ready:")
    second = 10**9
    plan = [dict(kind="good", count=20, height=48, width=64, start_ns=1 * second),
            dict(kind="encoding", count=3, height=48, width=64, start_ns=3 * second),
            dict(kind="truncated", count=1, height=48, width=64, start_ns=4 * second),
            dict(kind="empty", count=1, height=48, width=64, start_ns=5 * second),
            dict(kind="good", count=12, height=48, width=64, start_ns=6 * second),
            dict(kind="good", count=20, height=40, width=40, start_ns=8 * second),   # size change
            dict(kind="good", count=20, height=40, width=40, start_ns=second // 5)]   # stamps go backwards
    listener = run_plan(processes, domain, tmp_path, plan, lambda d: int(d.get("stream_resets", 0)) >= 2 and
                        int(d.get("frames_emitted", 0)) >= 64, "outputs after the last reset")
    assert node.alive()
    log = node.log()
    assert log.count("unsupported encoding 'nv21'") == 1, "one log line per unknown encoding, not per frame"
    assert "truncated image data" in log and "empty image (0x0)" in log
    assert "image size changed from 64x48 to 40x40" in log and "stamps went backwards" in log
    stamps = [messages.stamp_ns(m.header) for m in listener.messages("depth/image")]
    second = 10**9
    assert sum(1 * second <= s < 3 * second for s in stamps) == 20, "frames before the bad ones"
    assert sum(6 * second <= s < 8 * second for s in stamps) == 12, "good frames after the bad ones"
    assert sum(8 * second <= s < 9 * second for s in stamps) == 20, "frames after the size change"
    assert sum(s < second for s in stamps) == 20, "frames after the stamps went back"
    diag = listener.last_diagnostics()
    assert int(diag["frames_rejected"]) == 5 and int(diag["stream_resets"]) == 2


def _rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.mark.slow
def test_a_fuzzed_stream_loses_no_good_frame_and_memory_stays_bounded(processes, node_model, tmp_path):
    """2,000 broken messages (random sizes, steps, encodings, lengths, stamps) between 40 good frames."""
    domain = next_domain()
    node = start_node(processes, domain, tmp_path, node_model, "-p", "window_hop:=8", "-p", "point_tracks:=0",
                      "-p", "input_depth:=1000", "-p", "max_image_pixels:=4000000")
    node.wait_for_log("ready:")
    count, every = 2000, 50
    plan = [dict(kind="fuzz", count=count, good_every=every, height=48, width=64, start_ns=10**9, seed=7)]
    before = _rss_mib(node.proc.pid)
    listener = run_plan(processes, domain, tmp_path, plan,
                        lambda d: int(d.get("frames_received", 0)) >= count + count // every,
                        "every message to reach the node")
    after = _rss_mib(node.proc.pid)
    assert node.alive()
    diag = listener.last_diagnostics()
    assert int(diag["frames_rejected"]) == count and int(diag["frames_accepted"]) == count // every, diag
    assert int(diag["stream_resets"]) == 0, "a rejected message must not touch the stream"
    stamps = sorted(messages.stamp_ns(m.header) for m in listener.messages("depth/image"))
    assert stamps == [10**9 + j * 33_333_333 for j in range(count // every)], "every good frame, once"
    assert after - before < 100, f"resident memory grew from {before:.0f} to {after:.0f} MiB"
    log = node.log()
    assert "over max_image_pixels (4000000)" in log and "truncated image data" in log
    assert log.count("rejecting an image") < 200, "rejections are rate-limited per kind of problem"


@pytest.mark.slow
def test_a_bag_played_twice_under_sim_time_restarts_the_stream(processes, node_model, tmp_path):
    """use_sim_time with /clock jumping back (a bag replayed, or looped): the stream restarts, nothing is lost."""
    domain = next_domain()
    node = start_node(processes, domain, tmp_path, node_model, "-p", "use_sim_time:=true", "-p", "window_hop:=8",
                      "-p", "point_tracks:=0")
    node.wait_for_log("ready:")
    second = 10**9
    plan = [dict(kind="good", count=24, height=48, width=64, start_ns=100 * second, clock=True),
            dict(kind="good", count=24, height=48, width=64, start_ns=100 * second, clock=True, seed=1)]
    listener = run_plan(processes, domain, tmp_path, plan, lambda d: int(d.get("frames_emitted", 0)) >= 48,
                        "both plays' outputs")
    assert node.alive()
    diag = listener.last_diagnostics()
    assert int(diag["stream_resets"]) == 1 and int(diag["frames_dropped"]) == 0, diag
    assert "stamps went backwards" in node.log()
    stamps = [messages.stamp_ns(m.header) for m in listener.messages("depth/image")]
    assert len(stamps) == 48 and sorted(stamps[:24]) == sorted(stamps[24:]), "each play published once"


def test_non_finite_model_outputs_are_dropped_and_counted(processes, tmp_path):
    model = FourDS(tiny_config(frames=16, size=32, heads=("depth",)))
    with torch.no_grad():
        model.heads["depth"].readout.out.bias[5] = float("nan")
    model_dir = save_model_dir(model, tmp_path / "nan-model")
    domain = next_domain()
    node = start_node(processes, domain, tmp_path, model_dir, "-p", "window_hop:=8")
    node.wait_for_log("ready:")
    listener = TopicRecorder(domain, OUTPUTS)
    try:
        play_frames(processes, domain, tmp_path, 32, timeout=30)
        listener.wait_until(lambda: int(listener.last_diagnostics().get("windows_nonfinite", 0)) >= 2, 20,
                            "non-finite windows counted")
    finally:
        listener.close()
    assert node.alive() and listener.messages("depth/image") == []
    assert "non-finite values in depth" in node.log()


def test_overload_keeps_latency_bounded_and_counts_drops(processes, tmp_path):
    """A window every frame, frames four times faster than this machine runs a window (measured here, now):
    overloaded by construction on any machine."""
    from fourds_ros.model.presets import preset
    from fourds_ros.runtime import create_backend
    from test_streaming import measured_window_s
    model = FourDS(preset("embedded-ti-128"))
    model.reset_parameters(0)
    model_dir = save_model_dir(model, tmp_path / "embedded")
    backend = create_backend("onnxruntime", model_dir)
    rate = min(4 / measured_window_s(backend), 500.0)
    backend.close()
    domain = next_domain()
    node = start_node(processes, domain, tmp_path, model_dir, "-p", "window_hop:=1", "-p", "point_tracks:=16")
    node.wait_for_log("ready:", timeout=120)
    listener = TopicRecorder(domain, OUTPUTS)
    try:
        wait_until_connected(listener)
        play_frames(processes, domain, tmp_path, 90, 120, "-p", f"rate:={rate:.1f}")
        # Every frame received, not just those heard so far: a reliable sample lost in a burst arrives late.
        diag = listener.wait_for_node_outputs(["depth/image", "depth/confidence", "odometry"], 60, min_received=90)
    finally:
        listener.close()
    # Odometry once for each frame: on arrival for those the tracking kept up with, with its window for the rest.
    tracked = sum(int(v) for k, v in diag.items() if k.startswith("egomotion_frames_"))
    odometry = [messages.stamp_ns(m.header) for m in listener.messages("odometry")]
    depth = {messages.stamp_ns(m.header) for m in listener.messages("depth/image")}
    assert 0 < tracked <= 90 and len(odometry) == len(set(odometry)) and depth <= set(odometry)
    latency = [received - messages.stamp_ns(m.header) / 1e9 for received, m in listener.timed("depth/image")]
    context = {"diagnostics": diag, "rate_hz": rate, "latency_s": [round(x, 3) for x in latency]}
    assert int(diag["windows_dropped"]) > 10, context
    window_max = float(diag["window_latency_max_ms"]) / 1e3
    # Enough frames for the comparisons below; how many of the 90 a window covers depends on the load.
    assert len(latency) == int(diag["frames_emitted"]) > 30, context
    # No queue: once the first window is full (its frames wait for the ones after them, by design), a frame
    # waits for the window running when it arrived and then its own, plus transport; the last frames wait no
    # longer than the early ones. A queue at four times overload would grow by three windows every four frames,
    # tens of windows by the end, so the slack below (a loaded machine's scheduling: a CPU hog on the node's one
    # core once stretched a frame to 6 windows) cannot hide one.
    assert max(latency[16:]) < 8 * window_max + 1.0, context
    assert np.mean(latency[-10:]) < np.mean(latency[15:25]) + 2 * window_max, context


@pytest.mark.parametrize("name, value, message", [
    ("window_hop", 0, "parameter 'window_hop'"),
    ("window_len", "abc", "parameter 'window_len'"),
    ("backend", "tensorflow", "parameter 'backend': 'tensorflow' is not one of torch, onnxruntime, tensorrt"),
    ("window_len", 8, "window_len 8 does not match the model's 16 frames"),
    ("model_dir", "/nonexistent/model", "model directory /nonexistent/model does not exist"),
    ("precision", "bf16", "parameter 'precision': 'bf16' is not a precision of the onnxruntime backend"),
    ("cameras", ["front", "front"], "parameter 'cameras': camera 'front' is named twice"),
    ("cameras", ["front", ""], "parameter 'cameras': an unnamed camera ('') in a rig of several"),
])
def test_bad_parameters_fail_at_start_naming_the_parameter(processes, node_model, tmp_path, name, value, message):
    """A user's params file (the defaults with one bad value) stops the node at start with a clear message."""
    params = yaml.safe_load(PARAMS_FILE.read_text())
    params["/**"]["ros__parameters"].update({"model_dir": str(node_model), name: value})
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    node = NodeProcess("perception_node", ["--ros-args", "--params-file", bad], next_domain(), tmp_path)
    processes.append(node)
    assert node.wait(60) == 2
    assert message in node.log(), node.log()


def test_params_file_and_cli_match_the_settings_table():
    """Each setting's default is written once (streaming/settings.py): the node declares the table, and the
    shipped params file and the `eval` / `replay` flags are made from it."""
    from fourds_ros.cli import build_parser, setting_values
    from fourds_ros.ros.parameters import params_file_text
    from fourds_ros.ros.perception_node import PARAMETERS
    from fourds_ros.streaming import StreamConfig
    from fourds_ros.streaming.settings import SCORING_FIXED, table

    def flat(tree, prefix=""):
        out = {}
        for key, value in tree.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
        return out
    values = flat(yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"])
    assert values == {p.name: p.default for p in PARAMETERS}
    defaults = {row.name: row.default for row in table()}
    assert {name: values[name] for name in defaults} == defaults == StreamConfig().values()
    for command in ("eval", "replay"):
        given = setting_values(build_parser().parse_args([command, "bag", "--out", "out"]))
        assert given == {k: v for k, v in defaults.items() if k not in SCORING_FIXED}, command
        changed = setting_values(build_parser().parse_args(
            [command, "bag", "--out", "out", "--window-hop", "2", "--no-fuse-depth", "--odometry.standing-deg", "0.5"]))
        assert StreamConfig.from_values(changed).values() == {**defaults, "window_hop": 2, "fuse_depth": False,
                                                              "odometry.standing_deg": 0.5}
    # Descriptions, choices and ranges too: the file is the generated text, comment for comment.
    assert PARAMS_FILE.read_text() == params_file_text(PARAMETERS, "perception_node defaults"), \
        "config/perception.yaml drifted: python -m fourds_ros.ros.perception_node --params-file-text > config/perception.yaml"


def test_launch_file_describes_the_node():
    pytest.importorskip("launch_ros", reason="launch_ros is only on a full ROS 2 install")
    import importlib.util
    spec = importlib.util.spec_from_file_location("perception_launch", REPO / "launch" / "perception.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    nodes = [e for e in description.entities if type(e).__name__ == "Node"]
    assert [n.node_executable for n in nodes] == ["perception_node", "rviz2"]  # RViz with rviz:=true


def test_the_rviz_view_shows_what_the_node_publishes():
    """config/perception.rviz (installed with the package) names only the node's topics, in its odometry frame."""
    from fourds_ros.contract import NODE_OUTPUTS
    view = yaml.safe_load((REPO / "config" / "perception.rviz").read_text())["Visualization Manager"]
    assert view["Global Options"]["Fixed Frame"] == "fourds_odom"
    topics = {d["Topic"]["Value"].lstrip("/"): d["Class"] for d in view["Displays"] if "Topic" in d}
    plugin = {"sensor_msgs/msg/Image": "Image", "sensor_msgs/msg/PointCloud2": "PointCloud2",
              "nav_msgs/msg/Path": "Path", "nav_msgs/msg/Odometry": "Odometry",
              "visualization_msgs/msg/MarkerArray": "MarkerArray"}
    shown = {t: c for t, c in topics.items() if t != "camera/image_raw"}  # the camera: the launch file's default
    assert set(shown) == {"depth/image", "depth/confidence", "depth/points", "path", "odometry", "tracks/markers"}
    assert all(c == f"rviz_default_plugins/{plugin[NODE_OUTPUTS[t]]}" for t, c in shown.items())
    points = next(d for d in view["Displays"] if d.get("Topic", {}).get("Value") == "/depth/points")
    assert points["Channel Name"] == "confidence"


def test_the_node_runs_with_no_parameters_on_the_default_model(processes, tmp_path):
    """What a newcomer types: `perception_node`, nothing else; the shipped model answers on the default topics."""
    domain = next_domain()
    node = NodeProcess("perception_node", [], domain, tmp_path)
    processes.append(node)
    node.wait_for_log("ready:", timeout=300)
    assert "using the default model" in node.log() and "models/default" in node.log()
    listener = TopicRecorder(domain, OUTPUTS)
    try:
        wait_until_connected(listener)
        play_frames(processes, domain, tmp_path, 24, 120)
        listener.wait_for_node_outputs(PER_FRAME, 120)
    finally:
        listener.close()
    odometry = listener.messages("odometry")
    assert odometry and all(np.isfinite(m.pose.covariance).all() for m in odometry)
    # The geometric stage publishes a covariance (the readout-only path leaves it unknown: -1).
    assert any(m.pose.covariance[0] >= 0 for m in odometry)
    # The twist: unknown (-1) on the stream's first frame only; after it a finite velocity and a covariance with
    # a positive variance on every axis (something can always be wrong).
    assert odometry[0].twist.covariance[0] == -1.0
    for m in odometry[1:]:
        t, cov = m.twist.twist, np.asarray(m.twist.covariance).reshape(6, 6)
        assert np.isfinite([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z]).all()
        assert np.isfinite(cov).all() and (np.diag(cov) > 0).all(), cov


def test_a_pose_published_late_takes_its_place_in_the_path():
    """A frame the tracking could not keep up with gets its odometry with its window, after newer frames': the
    path still lists the poses in the order of their stamps, and a full path drops its oldest."""
    from collections import deque

    from geometry_msgs.msg import PoseStamped
    from fourds_ros.ros.outputs import insert_by_stamp

    def pose(sec: int) -> PoseStamped:
        p = PoseStamped()
        p.header.stamp.sec = sec
        return p

    path: deque = deque(maxlen=4)
    for sec in (1, 2, 4, 5, 3, 6, 0):
        insert_by_stamp(path, pose(sec))
    assert [p.header.stamp.sec for p in path] == [3, 4, 5, 6]
