"""A camera rig in one pipeline: batched inference, each camera's outputs as a single-camera run gives them."""
from __future__ import annotations

import re

import numpy as np
import pytest

from fourds_ros.runtime import BatchedBackend, batch_sizes, create_backend, create_rig_backend, \
    default_model_dir, pad_queries
from fourds_ros.ros.rig_file import read_rig, rig_remappings
from fourds_ros.streaming import ImageError, StreamConfig, StreamingPipeline
from fourds_ros.synthetic.pattern_clip import moving_pattern_clip

PERIOD_NS = 33_000_000
# No flush after a pause: on a loaded machine a pause between two pushes would run a window the reference has not.
CONFIG = dict(window_hop=4, point_tracks=4, flush_after_s=0.0)
FRAMES = 29  # the last frame ends a window (windows at frames 1, 5, ... 29): nothing is left to flush


@pytest.fixture(scope="module")
def rig_model():
    """The shipped default model: the rig's cameras run what users run."""
    return default_model_dir()


def test_batch_sizes_cover_every_rig_without_padding():
    assert batch_sizes(1) == (1,)
    assert batch_sizes(2) == (1, 2)
    assert batch_sizes(3) == (1, 2, 3)
    assert batch_sizes(6) == (1, 2, 4, 6)


def test_a_batch_gives_each_window_what_it_gives_alone(rig_model):
    rig = create_rig_backend("onnxruntime", rig_model, 3)
    assert sorted(rig.backends) == [1, 2, 3] and "batches of 1, 2, 3" in rig.description
    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 256, rig.spec.video_shape, np.uint8) for _ in range(5)]
    queries = [pad_queries(rig.spec, rng.uniform(0, 16, (2, 3)), np.hstack([np.zeros((1, 1)), [[4, 4, 20, 20]]]))
               for _ in videos]
    alone = [rig.backends[1].run(v, q) for v, q in zip(videos, queries)]
    together = rig.run(videos, queries)  # 5 windows: a batch of 3, then one of 2
    rig.close()
    for a, b in zip(alone, together):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-5, err_msg=name)


def clips() -> dict[str, np.ndarray]:
    """Two cameras seeing different scenes at different sizes."""
    return {"front": moving_pattern_clip(FRAMES, 96, 128, seed=1),
            "rear": moving_pattern_clip(FRAMES, 80, 80, seed=2, shift_px=1.0)}


def push(camera, frame, i: int) -> None:
    camera.push("rgb8", frame.shape[0], frame.shape[1], frame.shape[1] * 3, frame.tobytes(), i * PERIOD_NS,
                "camera_optical")


def single_camera_run(model_dir, clip) -> list:
    """The reference: one camera, its own pipeline, every window processed before the next frame."""
    outputs = []
    pipeline = StreamingPipeline(create_backend("onnxruntime", model_dir), StreamConfig(**CONFIG), outputs.append)
    for i, frame in enumerate(clip):
        pipeline.push("rgb8", frame.shape[0], frame.shape[1], frame.shape[1] * 3, frame.tobytes(), i * PERIOD_NS,
                      "camera_optical")
        pipeline.wait_idle()
    pipeline.flush()
    pipeline.wait_idle()
    pipeline.close()
    return outputs


def assert_same_outputs(got: list, expected: list, camera: str) -> None:
    assert [o.info.stamp_ns for o in got] == [o.info.stamp_ns for o in expected]
    for a, b in zip(got, expected):
        assert a.camera == camera and a.source_size == b.source_size
        np.testing.assert_allclose(a.depth, b.depth, rtol=0, atol=1e-5 * np.abs(b.depth).max())
        np.testing.assert_allclose(a.depth_confidence, b.depth_confidence, atol=1e-5)
        np.testing.assert_allclose(a.world_from_camera, b.world_from_camera, atol=1e-5)
        np.testing.assert_allclose(a.points.source_values, b.points.source_values, atol=1e-4)
        assert a.egomotion_source == b.egomotion_source


def test_each_camera_of_a_rig_gets_what_a_single_camera_run_gives(rig_model):
    """Both cameras' windows wait together and run as one batch of two: nothing changes but the cost."""
    scenes = clips()
    outputs = []
    pipeline = StreamingPipeline(create_rig_backend("onnxruntime", rig_model, 2), StreamConfig(**CONFIG),
                                 outputs.append, cameras=list(scenes))
    for i in range(len(scenes["front"])):
        with pipeline.worker.lock:  # the worker cannot take one camera's window before the other's is in
            for name, clip in scenes.items():
                push(pipeline.camera(name), clip[i], i)
        pipeline.wait_idle()
    pipeline.flush()
    pipeline.wait_idle()
    pipeline.close()
    for name, clip in scenes.items():
        stats = pipeline.camera(name).stats
        assert stats.windows_processed == 8 and stats.windows_dropped == 0 and stats.frames_dropped == 0
        assert_same_outputs([o for o in outputs if o.camera == name], single_camera_run(rig_model, clip), name)


def test_one_cameras_bad_frames_and_restarts_never_touch_another(rig_model):
    scenes = clips()
    outputs = []
    pipeline = StreamingPipeline(create_rig_backend("onnxruntime", rig_model, 2), StreamConfig(**CONFIG),
                                 outputs.append, cameras=list(scenes))
    front, rear = pipeline.camera("front"), pipeline.camera("rear")
    for i in range(len(scenes["front"])):
        push(rear, scenes["rear"][i], i)
        if i % 5 == 2:
            with pytest.raises(ImageError, match="truncated"):
                front.push("rgb8", 96, 128, 384, bytes(100), i * PERIOD_NS, "camera_optical")
        elif i < 20:
            push(front, scenes["front"][i], i)
        elif i == 20:  # the front camera's bag loops: its stream restarts, the rear camera's goes on
            push(front, scenes["front"][0], 0)
        pipeline.wait_idle()
    pipeline.flush()
    pipeline.wait_idle()
    pipeline.close()
    assert front.stats.resets == 1 and front.stats.frames_rejected == 6
    assert rear.stats.resets == 0 and rear.stats.frames_rejected == 0
    assert_same_outputs([o for o in outputs if o.camera == "rear"], single_camera_run(rig_model, scenes["rear"]),
                        "rear")


@pytest.mark.parametrize("cameras, message", [
    (["front", "front"], "camera 'front' is named twice"),
    (["front", ""], "an unnamed camera"),
    ([], "at least one camera"),
])
def test_bad_camera_lists_are_named(rig_model, cameras, message):
    backend = BatchedBackend({1: create_backend("onnxruntime", rig_model)})
    with pytest.raises(ValueError, match=message):
        StreamingPipeline(backend, StreamConfig(**CONFIG), lambda o: None, cameras=cameras)
    backend.close()


def test_a_single_camera_pipeline_needs_no_camera_name(rig_model):
    pipeline = StreamingPipeline(create_rig_backend("onnxruntime", rig_model, 2), StreamConfig(**CONFIG),
                                 lambda o: None, cameras=["a", "b"])
    with pytest.raises(ValueError, match="2 cameras: name one"):
        pipeline.push("rgb8", 4, 4, 12, bytes(48), 0, "x")
    pipeline.close()


# The rig file and its launch ---------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("cameras: []", "needs a list 'cameras'"),
    ("cameras:\n  - {name: front, image: /a}", "camera 'front' has no camera_info topic"),
    ("cameras:\n  - {name: a/b, image: /a, camera_info: /b}", "camera 1 needs a name"),
    ("cameras:\n  - {name: f, image: /a, camera_info: /b}\n  - {name: f, image: /c, camera_info: /d}",
     "camera 'f' is named twice"),
    ("cameras:\n  - {name: f, image: /a, camera_info: /b, rate: 30}", "camera 'f' has unknown keys rate"),
    ("cameras: [", "rig file"),
])
def test_a_bad_rig_file_is_named_with_its_camera(tmp_path, text, message):
    path = tmp_path / "rig.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_rig(path)


def test_the_rig_launch_file_runs_one_node_for_the_shipped_rig():
    pytest.importorskip("launch_ros", reason="launch_ros is only on a full ROS 2 install")
    import importlib.util

    from launch import LaunchContext
    from ros_helpers import REPO
    spec = importlib.util.spec_from_file_location("rig_launch", REPO / "launch" / "rig.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    context = LaunchContext()
    context.launch_configurations.update(rig_file=str(REPO / "config" / "rig.yaml"), namespace="",
                                         params_file=str(REPO / "config" / "perception.yaml"), model_dir="",
                                         backend="onnxruntime", publish_tf="false")
    nodes = module.rig_node(context)
    assert len(nodes) == 1 and nodes[0].node_executable == "perception_node"


# The node ------------------------------------------------------------------------
@pytest.mark.slow
def test_two_cameras_through_one_node_give_what_single_camera_runs_give(tmp_path):
    """perception_node in its own process with the cameras of config/rig.yaml, remapped as rig.launch.py does;
    this process publishes both cameras' frames on their drivers' topics and, at each window, waits for both
    cameras' outputs, so no window is replaced by a newer one."""
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from fourds_ros.ros import messages
    from fourds_ros.ros.processes import NodeProcess, TopicRecorder
    from ros_helpers import REPO, next_domain
    from scripted_publisher import image

    scenes = clips()
    rig = read_rig(REPO / "config" / "rig.yaml")
    assert [c.name for c in rig] == list(scenes)
    remaps = [arg for node_name, driver in rig_remappings(rig) for arg in ("-r", f"{node_name}:={driver}")]
    domain = next_domain()
    node = NodeProcess("perception_node", ["--ros-args", "--params-file", REPO / "config" / "perception.yaml", *remaps,
                                           "-p", "cameras:=[front, rear]", "-p", "window_hop:=4", "-p", "live:=false",
                                           "-p", "point_tracks:=4", "-p", "flush_after_s:=0.0",
                                           "-p", "input_reliability:=reliable",
                                           "-p", "input_depth:=100", "-p", "output_depth:=100",
                                           "-p", "diagnostics_period:=0.2"], domain, tmp_path)
    topics = {f"{name}/{topic}": kind for name in scenes
              for topic, kind in (("depth/image", Image), ("odometry", Odometry))}
    listener = TopicRecorder(domain, {**topics, "/diagnostics": DiagnosticArray})
    try:
        node.wait_for_log("ready:")
        assert "cameras front, rear" in node.log()
        qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=100)
        publishers = {c.name: listener.node.create_publisher(Image, c.image, qos) for c in rig}
        listener.wait_until_matched(60, list(topics))
        listener.wait_until(lambda: all(p.get_subscription_count() for p in publishers.values()), 60,
                            "the node's image subscriptions")
        count = len(scenes["front"])
        for i in range(count):
            for name, clip in scenes.items():
                publishers[name].publish(image("good", clip[i], i * PERIOD_NS))
            if i % CONFIG["window_hop"] == 0:  # a window ends here: both cameras' outputs before more frames
                listener.wait_until(lambda: all(len(listener.messages(f"{name}/depth/image")) > i for name in scenes),
                                    120, f"both cameras' output of frame {i}")
        listener.wait_until(lambda: all(len(listener.messages(t)) == count for t in topics), 120,
                            "every frame's outputs")
        listener.wait_until(lambda: all(listener.last_diagnostics(name).get("frames_emitted") == str(count)
                                        for name in scenes), 60, "diagnostics of both cameras")
        diagnostics = {name: listener.last_diagnostics(name) for name in scenes}
        log = node.log()
    finally:
        listener.close()
        node.stop()
    # Cameras of different sizes work, each resized on its own; the log says so, naming the cameras.
    assert re.search(r"camera (front|rear): \d+x\d+ images, unlike (front|rear) \(\d+x\d+\)", log)
    for name, clip in scenes.items():
        assert diagnostics[name]["windows_dropped"] == "0" and diagnostics[name]["frames_dropped"] == "0"
        assert diagnostics[name]["camera_info"] == "none"  # never sent: the camera runs without intrinsics
        expected = single_camera_run(default_model_dir(), clip)
        depth = listener.messages(f"{name}/depth/image")
        odometry = listener.messages(f"{name}/odometry")
        assert [messages.stamp_ns(m.header) for m in depth] == [o.info.stamp_ns for o in expected]
        assert odometry[0].header.frame_id == f"{name}_fourds_odom"
        for d, m, o in zip(depth, odometry, expected):
            got = np.frombuffer(bytes(d.data), "<f4").reshape(d.height, d.width)
            np.testing.assert_allclose(got, o.depth, rtol=0, atol=1e-5 * np.abs(o.depth).max())
            position = m.pose.pose.position
            np.testing.assert_allclose([position.x, position.y, position.z], o.world_from_camera[:3, 3], atol=1e-5)
