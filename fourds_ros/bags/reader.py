"""Reading recorded bags (rosbag2 mcap or sqlite3) without ROS: camera frames and optional ground truth."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..streaming.frames import ENCODINGS, image_view, to_rgb
from .topics import TOPICS, TYPES, typestore
from .track_layout import BOX_DTYPE, POINT_DTYPE, unpack

IMAGE_TYPE = TYPES["image"]


class BagError(ValueError):
    """The bag cannot be read or lacks what was asked for."""


@dataclass
class Frame:
    stamp_ns: int
    frame_id: str
    encoding: str
    height: int
    width: int
    step: int
    data: bytes

    def rgb(self) -> np.ndarray:
        return to_rgb(image_view(self.encoding, self.height, self.width, self.step, self.data), self.encoding)


@dataclass
class GroundTruth:
    """Ground truth keyed by stamp (ns); each part may be missing."""

    depth: dict[int, np.ndarray] = field(default_factory=dict)
    poses: dict[int, np.ndarray] = field(default_factory=dict)
    points: dict[int, np.ndarray] = field(default_factory=dict)  # POINT_DTYPE records
    boxes: dict[int, np.ndarray] = field(default_factory=dict)  # BOX_DTYPE records
    intrinsics: np.ndarray | None = None

    def present(self) -> list[str]:
        return [name for name in ("depth", "poses", "points", "boxes") if getattr(self, name)]


def open_reader(path: Path):
    from rosbags.rosbag2 import Reader
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises several types for broken metadata or storage
        raise BagError(f"cannot open bag {path}: {exc}") from None
    return reader


def pick_image_topic(reader, requested: str | None) -> str:
    images = [c.topic for c in reader.connections if c.msgtype == IMAGE_TYPE]
    if requested:
        if requested not in {c.topic for c in reader.connections}:
            raise BagError(f"the bag has no topic {requested!r} (topics: {sorted({c.topic for c in reader.connections})})")
        if requested not in images:
            raise BagError(f"topic {requested!r} is not a {IMAGE_TYPE} topic")
        return requested
    candidates = [t for t in images if not t.startswith("/ground_truth")]
    if not candidates:
        raise BagError(f"the bag has no {IMAGE_TYPE} topic (topics: {sorted({c.topic for c in reader.connections})})")
    return TOPICS["image"] if TOPICS["image"] in candidates else sorted(candidates)[0]


def pose_matrix(pose) -> np.ndarray:
    """A geometry_msgs/Pose (rclpy or rosbags) as a 4x4 matrix."""
    from scipy.spatial.transform import Rotation
    out = np.eye(4)
    q = pose.orientation
    out[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    out[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    return out


def _stamp(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def read_bag(path: Path, image_topic: str | None = None) -> tuple[str, list[Frame], GroundTruth]:
    """Camera frames of `image_topic` (or the bag's camera topic) and whatever ground truth the bag holds."""
    store = typestore()
    reader = open_reader(path)
    try:
        topic = pick_image_topic(reader, image_topic)
        wanted = {topic, TOPICS["depth"], TOPICS["pose"], TOPICS["points"], TOPICS["boxes"], TOPICS["camera_info"]}
        connections = [c for c in reader.connections if c.topic in wanted]
        frames, gt = [], GroundTruth()
        try:
            for conn, _, raw in reader.messages(connections=connections):
                msg = store.deserialize_cdr(raw, conn.msgtype)
                if conn.topic == topic:
                    frames.append(Frame(_stamp(msg.header), msg.header.frame_id, msg.encoding, msg.height, msg.width,
                                        msg.step, bytes(msg.data)))
                elif conn.topic == TOPICS["depth"]:
                    depth = np.frombuffer(bytes(msg.data), "<f4").reshape(msg.height, msg.width)
                    gt.depth[_stamp(msg.header)] = depth
                elif conn.topic == TOPICS["pose"]:
                    gt.poses[_stamp(msg.header)] = pose_matrix(msg.pose)
                elif conn.topic == TOPICS["camera_info"]:
                    if gt.intrinsics is None:
                        gt.intrinsics = np.asarray(msg.k, np.float64).reshape(3, 3)
                else:
                    fields = [(f.name, f.offset, f.datatype) for f in msg.fields]
                    layout = POINT_DTYPE if conn.topic == TOPICS["points"] else BOX_DTYPE
                    target = gt.points if conn.topic == TOPICS["points"] else gt.boxes
                    target[_stamp(msg.header)] = unpack(fields, msg.point_step, bytes(msg.data), layout)
        except BagError:
            raise
        except Exception as exc:
            raise BagError(f"bag {path} is truncated or corrupt after {len(frames)} frames of {topic}: "
                           f"{type(exc).__name__}: {exc}") from None
    finally:
        reader.close()
    if not frames:
        raise BagError(f"topic {topic} of bag {path} has no messages")
    unknown = {f.encoding for f in frames} - set(ENCODINGS)
    if unknown:
        raise BagError(f"topic {topic} has images in unsupported encodings {sorted(unknown)}")
    return topic, frames, gt
