"""`fourds-ros replay`: play a bag over ROS 2 into the real perception_node, record its outputs, score them.

The bag's stored CDR bytes are published as they are (no re-encoding), with the
original timing scaled by `rate`, plus /clock for `use_sim_time`. The node runs
in its own process; its outputs are recorded to a new bag and scored exactly as
`eval` scores its offline run, with end-to-end latency (image published ->
depth received) and drops added.
"""
from __future__ import annotations

import importlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..bags.reader import BagError, open_reader, pose_matrix, read_bag, twist_of
from ..bags.topics import CLOCK, camera_info_for, typestore
from ..contract import BOX_DTYPE, NODE_OUTPUTS, PER_FRAME_OUTPUTS, POINT_DTYPE, RECORDED_OUTPUTS, compressed, node_topic, \
    pack_boxes, pack_points, unpack
from ..evaluation.report import report_header, write_report
from ..evaluation.scoring import BOX_FIELDS, POINT_FIELDS, Predictions, align_truth, records_to_tracks, \
    score_baselines, score_with_queries
from ..evaluation.offline import changed_settings
from ..runtime import default_model_dir
from ..streaming import StreamConfig, StreamStats
from ..streaming.settings import SCORING_FIXED

log = logging.getLogger("fourds_ros.replay")
# The node's topics replay records, by the names it publishes them under.
OUTPUT_TOPICS = {node_topic(name): NODE_OUTPUTS[name] for name in RECORDED_OUTPUTS}
PER_FRAME_TOPICS = [node_topic(name) for name in PER_FRAME_OUTPUTS]  # track clouds come only once seeded
DIAGNOSTICS = node_topic("diagnostics")


def parameter_arguments(values: dict[str, Any]) -> list[str]:
    """`-p name:=value` for each setting, written so that ROS reads each value back with its type."""
    out = []
    for name, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = repr(value) if "." in repr(value) else f"{value:.17e}"  # 1e-05 would not read back as a float
        else:
            text = str(value)
        out += ["-p", f"{name}:={text}"]
    return out


def message_class(msgtype: str):
    """The rclpy class of a type name like 'sensor_msgs/msg/Image' (None if its package is not installed)."""
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        return None


def replay(bag: Path, model_dir: Path | None, out_dir: Path, backend: str = "onnxruntime",
           image_topic: str | None = None, rate: float = 1.0, settings: dict[str, Any] | None = None,
           domain: int = 42, video: bool = False, settle_s: float = 30.0, precision: str | None = None,
           gt: Path | None = None, node_executable: Path | None = None, node_env: dict[str, str] | None = None
           ) -> dict:
    """Replay `bag` over ROS 2 into a perception_node process, record its outputs and score them.

    `settings`: the streaming core's settings by table name, given to the node as parameters (the rest keep
    the node's defaults; the tracks' seeding and lifetime are fixed for scoring, as in `eval`).

    `node_executable` (with `node_env`) runs another installation's node (a colcon workspace, a clean
    environment); with no `model_dir` that node then runs the default model it was installed with.
    """
    from rclpy.serialization import serialize_message

    from ..model.model_dir import load_model_config
    from .processes import NodeProcess, TopicRecorder, default_params_file, diagnostics_values
    from ..runtime.graph_lookup import find_or_export

    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    node_picks_model = model_dir is None and node_executable is not None
    model_dir = model_dir or default_model_dir()
    topic, frames, gt_data = read_bag(bag, image_topic, gt)
    truth = align_truth(frames, gt_data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = find_or_export(model_dir, precision="int8" if precision == "int8" else "fp32") \
        if backend != "torch" and not node_picks_model else None
    model_config = load_model_config(model_dir)
    max_points = model_config.heads["points"].max_queries if "points" in model_config.heads else 0
    max_boxes = model_config.heads["boxes"].max_queries if "boxes" in model_config.heads else 0
    point_query = truth.queries("points", max_points)
    box_query = truth.queries("boxes", max_boxes)
    info_topic = camera_info_for(topic)
    transport = "compressed" if topic.endswith("/compressed") else "raw"
    image_input = compressed(node_topic("image")) if transport == "compressed" else node_topic("image")
    config = StreamConfig.from_values({**(settings or {}), "window_len": model_config.clip.frames, "point_seeding": "none",
                                       "point_tracks": max(max_points, 1), "max_invisible_frames": 100000})
    args = ["--ros-args", "--params-file", default_params_file(),
            "-p", f"backend:={backend}", "-p", "use_sim_time:=true", "-p", f"image_transport:={transport}",
            *parameter_arguments(config.values()), "-p", "input_reliability:=reliable", "-p", "input_depth:=100",
            # A deep output history: a recorder lagging behind a window's burst of frames must not lose one.
            "-p", "output_depth:=200",
            "-p", "diagnostics_period:=0.5", "-p", "live:=false", "-r", f"{image_input}:={topic}", "-r", f"{node_topic('camera_info')}:={info_topic}"]
    if not node_picks_model:
        args += ["-p", f"model_dir:={model_dir}"]
    if onnx_path is not None:
        args += ["-p", f"onnx_path:={onnx_path}"]
    if precision:
        args += ["-p", f"precision:={precision}"]
    node = NodeProcess("perception_node", args, domain, out_dir, node_executable, node_env)
    recorder = None
    try:
        node.wait_for_log("ready:", timeout=300)
        types = {t: message_class(m) for t, m in OUTPUT_TOPICS.items()}
        recorder = TopicRecorder(domain, types)
        # Play only once every output of the node is matched to the recorder and its diagnostics arrive:
        # discovery can take seconds on a loaded machine, and outputs sent before it are lost.
        try:
            recorder.wait_until_matched(60)
            recorder.wait_until(lambda: recorder.messages(DIAGNOSTICS), 60, "perception_node's diagnostics")
        except AssertionError:
            raise RuntimeError(f"the replay graph did not connect: perception_node's outputs not matched on ROS "
                               f"domain {domain} within 60 s (node log: {node.log_path})") from None
        published_at = _play(bag, topic, rate, domain, point_query, box_query, frames)
        try:
            recorder.wait_for_node_outputs(PER_FRAME_TOPICS, settle_s, min_received=len(frames))
        except TimeoutError as exc:
            log.warning(f"scoring what arrived: {exc}")
        recorded = {t: recorder.timed(t) for t in OUTPUT_TOPICS}
    finally:
        if recorder is not None:
            recorder.close()
        node.stop()
    output_bag = out_dir / "outputs_bag"
    _write_bag(output_bag, recorded, serialize_message)
    pred, latency = _predictions(frames, recorded, published_at, point_query, box_query)
    diag = diagnostics_values(recorded[DIAGNOSTICS][-1][1]) if recorded[DIAGNOSTICS] else {}
    scores, notes = score_with_queries(pred, truth, frames, point_query, box_query)
    report = report_header(bag, topic, frames, model_dir, gt_data.notes)
    report.update(backend=diag.get("backend", backend), mode=f"replay over ROS 2 at rate {rate}",
                  egomotion=config.egomotion, window={"len": model_config.clip.frames, "hop": config.window_hop},
                  settings=changed_settings(config, SCORING_FIXED),
                  model_metrics=scores,
                  runtime={"end_to_end_latency_ms": latency, "node_diagnostics": diag}, notes=notes,
                  outputs_bag=output_bag.name)
    report["baselines"], baseline_predictions = score_baselines(frames, truth, point_query)
    write_report(report, out_dir, frames, truth, pred, point_query, baseline_predictions, video)
    return report


def _play(bag: Path, image_topic: str, rate: float, domain: int, point_query, box_query,
          frames) -> dict[int, float]:
    """Publish the bag's messages with their original spacing (divided by `rate`); returns publish time per image stamp."""
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import PointCloud2

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("fourds_bag_player", context=context)
    qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=100)
    reader = open_reader(bag)
    published_at: dict[int, float] = {}
    try:
        publishers = {}
        for conn in reader.connections:
            cls = message_class(conn.msgtype)
            if cls is None:
                log.warning(f"not replaying {conn.topic}: its type {conn.msgtype} is not installed")
                continue
            publishers[conn.topic] = node.create_publisher(cls, conn.topic, qos)
        clock = node.create_publisher(Clock, CLOCK[0], 10)
        seeds_points = node.create_publisher(PointCloud2, node_topic("tracks/point_seeds"), 100)
        seeds_boxes = node.create_publisher(PointCloud2, node_topic("tracks/box_seeds"), 100)
        # Every topic the node subscribes to must be matched before the first message: the image, its
        # camera_info, the seeds and /clock (the node runs on sim time).
        inputs = {image_topic: publishers[image_topic], CLOCK[0]: clock, node_topic("tracks/point_seeds"): seeds_points,
                  node_topic("tracks/box_seeds"): seeds_boxes}
        info_topic = camera_info_for(image_topic)
        if info_topic in publishers:
            inputs[info_topic] = publishers[info_topic]
        deadline = time.monotonic() + 60
        while unmatched := [t for t, pub in inputs.items() if pub.get_subscription_count() < 1]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"perception_node did not subscribe to {unmatched} within 60 s")
            time.sleep(0.05)
        seeds = _seed_messages(frames, point_query, box_query)
        wall_start, bag_start = None, None
        store = typestore()
        ros1 = not getattr(reader, "is2", True)
        messages = reader.messages()
        while True:
            try:
                conn, stamp, raw = next(messages)
            except StopIteration:
                break
            except Exception as exc:  # a bag cut short: what was played is scored
                log.warning(f"{bag} is truncated or corrupt after {len(published_at)} frames of {image_topic} "
                            f"({type(exc).__name__}: {exc}); scoring the frames played")
                break
            if conn.topic not in publishers:
                continue
            if ros1:  # ROS 1 serialisation -> CDR, field by field through the ROS 2 definitions
                raw = store.serialize_cdr(reader.deserialize(raw, conn.msgtype), conn.msgtype)
            if wall_start is None:
                wall_start, bag_start = time.monotonic(), stamp
            delay = wall_start + (stamp - bag_start) / 1e9 / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            clock_msg = Clock()
            clock_msg.clock.sec, clock_msg.clock.nanosec = divmod(int(stamp), 1_000_000_000)
            clock.publish(clock_msg)
            if conn.topic == image_topic:
                for kind, cloud in seeds.get(int(stamp), []):
                    (seeds_points if kind == "points" else seeds_boxes).publish(cloud)
                published_at[int(stamp)] = time.time()
            publishers[conn.topic].publish(bytes(raw))
        # Reliable delivery ends when every subscriber has acknowledged every sample: a player torn down before
        # that loses the last messages.
        for publisher in (*publishers.values(), seeds_points, seeds_boxes, clock):
            if not publisher.wait_for_all_acked(Duration(seconds=30)):
                log.warning(f"{publisher.topic_name}: not every sample was acknowledged within 30 s")
    except RuntimeError:
        raise
    except Exception as exc:
        raise BagError(f"replaying {bag} failed: {type(exc).__name__}: {exc}") from None
    finally:
        reader.close()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return published_at


def _seed_messages(frames, point_query, box_query) -> dict[int, list]:
    """GT queries as the node's seed clouds, keyed by the stamp of the frame they belong to."""
    from . import messages
    out: dict[int, list] = {}
    stamps = [f.stamp_ns for f in frames]
    for kind, query in (("points", point_query), ("boxes", box_query)):
        if query is None:
            continue
        values, first, _ = query
        for f in np.unique(first):
            ids = np.flatnonzero(first == f).astype(np.uint32)
            ones = np.ones(len(ids))
            records = pack_points(ids, values[ids], ones, ones) if kind == "points" else \
                pack_boxes(ids, values[ids], ones, ones)
            header = messages.header_at(stamps[int(f)], frames[int(f)].frame_id)
            out.setdefault(stamps[int(f)], []).append((kind, messages.track_cloud(records, header)))
    return out


def _write_bag(path: Path, recorded: dict, serialize) -> None:
    """The node's outputs as a rosbag2 (mcap), stamped with their receive time."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    if path.exists():
        shutil.rmtree(path)
    store = typestore()
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, msgtype in OUTPUT_TOPICS.items():
            if not recorded[topic]:
                continue
            conn = writer.add_connection(topic if topic.startswith("/") else f"/{topic}", msgtype, typestore=store)
            for received, msg in recorded[topic]:
                writer.write(conn, int(received * 1e9), serialize(msg))


def _predictions(frames, recorded: dict, published_at: dict[int, float], point_query, box_query):
    from .messages import cloud_fields, stamp_ns
    stamps = [f.stamp_ns for f in frames]
    index = {s: i for i, s in enumerate(stamps)}
    poses = None
    latency = []

    def image_stack(topic: str, on_frame=None) -> np.ndarray | None:
        out = None
        for received, msg in recorded[topic]:
            i = index.get(stamp_ns(msg.header))
            if i is None:
                continue
            if out is None:
                out = np.full((len(frames), msg.height, msg.width), np.nan, np.float32)
            out[i] = np.frombuffer(bytes(msg.data), "<f4").reshape(msg.height, msg.width)
            if on_frame is not None:
                on_frame(received, stamps[i])
        return out

    def arrived(received: float, stamp: int) -> None:
        if stamp in published_at:
            latency.append((received - published_at[stamp]) * 1e3)
    depth = image_stack(node_topic("depth/image"), arrived)
    confidence = image_stack(node_topic("depth/confidence"))
    twist = twist_covariance = None
    if recorded[node_topic("odometry")]:
        poses = np.full((len(frames), 4, 4), np.nan)
        twist, twist_covariance = np.full((len(frames), 6), np.nan), np.full((len(frames), 6, 6), np.nan)
        for _, msg in recorded[node_topic("odometry")]:
            i = index.get(stamp_ns(msg.header))
            if i is not None:
                poses[i] = pose_matrix(msg.pose.pose)
                if msg.twist.covariance[0] >= 0:  # -1: no twist (a stream's first frame)
                    twist[i], twist_covariance[i] = twist_of(msg)

    def tracks(topic: str, query, layout, fields):
        if query is None:
            return None, None
        table = {stamp_ns(m.header): unpack(cloud_fields(m), m.point_step, bytes(m.data), layout)
                 for _, m in recorded[topic]}
        return records_to_tracks(table, stamps, fields, count=len(query[0]))

    point_tracks, point_visible = tracks(node_topic("tracks/points"), point_query, POINT_DTYPE, POINT_FIELDS)
    boxes, box_visible = tracks(node_topic("tracks/boxes"), box_query, BOX_DTYPE, BOX_FIELDS)
    latency_summary = {"p50": round(float(np.percentile(latency, 50)), 1), "p99": round(float(np.percentile(latency, 99)), 1),
                       "frames": len(latency)} if latency else None
    pred = Predictions(np.array(stamps, np.int64), depth, poses, point_tracks, point_visible, boxes, box_visible,
                       StreamStats(), depth_confidence=confidence, twist=twist, twist_covariance=twist_covariance)
    return pred, latency_summary
