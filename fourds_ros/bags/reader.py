"""Reading recorded bags without ROS: camera frames and whatever ground truth they hold.

rosbag2 (mcap, sqlite3) and ROS 1 `.bag` files, through `rosbags`; camera topics of `sensor_msgs/Image` or
`sensor_msgs/CompressedImage` (jpeg, png: decoded here, a frame that does not decode is skipped and counted);
ground-truth poses from the bag or from a trajectory file (TUM, KITTI, EuRoC csv) given as `gt`.
A bag cut short (a recording that died) gives the frames read before the damage, with a note saying where.
"""
from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..contract import BOX_DTYPE, POINT_DTYPE, compressed, unpack
from ..images import SUPPORTED, converted_encoding, decode_compressed, image_view, to_rgb
from .salvage import storage_file
from .topics import TOPICS, TYPES, camera_info_for, typestore

log = logging.getLogger("fourds_ros.bags")
IMAGE_TYPES = (TYPES["image"], TYPES["compressed_image"])


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
        view = image_view(self.encoding, self.height, self.width, self.step, self.data)
        return to_rgb(view, converted_encoding(self.encoding))


@dataclass
class GroundTruth:
    """Ground truth keyed by stamp (ns); each part may be missing."""

    depth: dict[int, np.ndarray] = field(default_factory=dict)
    poses: dict[int, np.ndarray] = field(default_factory=dict)
    points: dict[int, np.ndarray] = field(default_factory=dict)  # POINT_DTYPE records
    boxes: dict[int, np.ndarray] = field(default_factory=dict)  # BOX_DTYPE records
    intrinsics: np.ndarray | None = None
    distortion: tuple[str, np.ndarray] | None = None  # camera_info's model and coefficients, when not zero
    notes: list[str] = field(default_factory=list)  # frames skipped, where a damaged bag stopped, ...

    def present(self) -> list[str]:
        return [name for name in ("depth", "poses", "points", "boxes") if getattr(self, name)]


def open_reader(path: Path):
    """A `rosbags` AnyReader over a rosbag2 directory or a ROS 1 `.bag` file, opened."""
    from rosbags.highlevel import AnyReader
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    if path.is_dir() and storage_file(path) is None and not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is a folder but not a rosbag2 (no metadata.yaml, .mcap or .db3 in it)")
    try:
        reader = AnyReader([rosbag2_path(path)], default_typestore=typestore())
        reader.open()
        reader.salvage_note = ""
    except Exception as exc:  # rosbags raises several types for broken metadata or storage
        from .salvage import salvage
        salvaged = salvage(path)  # a recording that died mid-write: its complete messages
        if salvaged is None:
            raise BagError(f"cannot open bag {path}: {exc}") from None
        log.warning(salvaged[1])
        reader = AnyReader([rosbag2_path(salvaged[0])], default_typestore=typestore())
        reader.open()
        reader.salvage_note = salvaged[1]
    return reader


def _span(stamps_ns: np.ndarray) -> str:
    return f"{stamps_ns[0] * 1e-9:.3f} s to {stamps_ns[-1] * 1e-9:.3f} s"


def rosbag2_path(path: Path) -> Path:
    """`path`, or for a rosbag2 folder named `*.bag` (a common name) a link to it that `rosbags` will not take
    for a ROS 1 bag file (it decides by the suffix alone)."""
    if not (path.is_dir() and path.suffix == ".bag"):
        return path
    link = Path(tempfile.mkdtemp(prefix="fourds_ros-bag-")) / path.stem
    atexit.register(shutil.rmtree, link.parent, True)
    link.symlink_to(path.resolve(), target_is_directory=True)
    return link


def pick_image_topic(reader, requested: str | None) -> str:
    topics = sorted({c.topic for c in reader.connections})
    images = [c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES]
    if requested:
        if requested not in topics:
            raise BagError(f"the bag has no topic {requested!r} (topics: {topics})")
        if requested not in images:
            raise BagError(f"topic {requested!r} is not an image topic ({' or '.join(IMAGE_TYPES)})")
        return requested
    candidates = [t for t in images if not t.startswith("/ground_truth")]
    if not candidates:
        raise BagError(f"the bag has no image topic ({' or '.join(IMAGE_TYPES)}; topics: {topics})")
    raw = [t for t in candidates if not t.endswith("/compressed")]
    for preferred in (TOPICS["image"], compressed(TOPICS["image"])):
        if preferred in candidates:
            return preferred
    return sorted(raw or candidates)[0]


def twist_of(odometry) -> tuple[np.ndarray, np.ndarray]:
    """A nav_msgs/Odometry's twist (linear, then angular) and its 6x6 covariance (rclpy or rosbags)."""
    t = odometry.twist.twist
    velocity = np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z], np.float64)
    return velocity, np.asarray(odometry.twist.covariance, np.float64).reshape(6, 6)


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


def _decoded_frame(msg, stamp: int) -> Frame:
    """A CompressedImage (jpeg/png) as a raw frame, decoded as the node decodes it; ValueError when it does not."""
    image, encoding = decode_compressed(bytes(msg.data))
    h, w = image.shape[:2]
    return Frame(stamp, msg.header.frame_id, encoding, h, w, image.strides[0], image.tobytes())


def _drop_frames_past_the_truth(frames: list[Frame], gt: GroundTruth) -> None:
    """A recording cut short ends with frames whose ground truth (written after them) was lost: they go, so
    the frames kept are scored on every part the rest of the recording has."""
    tables = [getattr(gt, name) for name in gt.present()]
    dropped = 0
    while frames and tables and any(frames[-1].stamp_ns not in table for table in tables):
        frames.pop()
        dropped += 1
    if dropped:
        gt.notes.append(f"the last {dropped} frames read had lost their ground truth to the damage and were left out")


def read_bag(path: Path, image_topic: str | None = None, gt: Path | None = None) -> tuple[str, list[Frame], GroundTruth]:
    """Camera frames of `image_topic` (or the bag's camera topic) and whatever ground truth the bag holds.

    `gt`: a trajectory file whose poses replace the bag's (associated to the frames by stamp, or by index).
    """
    reader = open_reader(path)
    try:
        topic = pick_image_topic(reader, image_topic)
        wanted = {topic, TOPICS["depth"], TOPICS["pose"], TOPICS["points"], TOPICS["boxes"], TOPICS["camera_info"],
                  camera_info_for(topic)}
        connections = [c for c in reader.connections if c.topic in wanted]
        frames, gt_data = [], GroundTruth()
        if reader.salvage_note:
            gt_data.notes.append(reader.salvage_note)
        undecodable = 0
        try:
            for conn, _, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, conn.msgtype)
                if conn.topic == topic:
                    stamp = _stamp(msg.header)
                    if conn.msgtype == TYPES["compressed_image"]:
                        try:
                            frames.append(_decoded_frame(msg, stamp))
                        except ValueError as exc:
                            undecodable += 1
                            log.warning(f"skipping the frame stamped {stamp} ns of {topic}: {exc}")
                        continue
                    frames.append(Frame(stamp, msg.header.frame_id, msg.encoding, msg.height, msg.width,
                                        msg.step, bytes(msg.data)))
                elif conn.topic == TOPICS["depth"]:
                    depth = np.frombuffer(bytes(msg.data), "<f4").reshape(msg.height, msg.width)
                    gt_data.depth[_stamp(msg.header)] = depth
                elif conn.topic == TOPICS["pose"]:
                    gt_data.poses[_stamp(msg.header)] = pose_matrix(msg.pose)
                elif conn.msgtype == TYPES["camera_info"]:
                    if gt_data.intrinsics is None and np.any(msg.k):
                        gt_data.intrinsics = np.asarray(msg.k, np.float64).reshape(3, 3)
                        if np.any(msg.d):
                            gt_data.distortion = (msg.distortion_model, np.asarray(msg.d, np.float64))
                else:
                    fields = [(f.name, f.offset, f.datatype) for f in msg.fields]
                    layout = POINT_DTYPE if conn.topic == TOPICS["points"] else BOX_DTYPE
                    target = gt_data.points if conn.topic == TOPICS["points"] else gt_data.boxes
                    target[_stamp(msg.header)] = unpack(fields, msg.point_step, bytes(msg.data), layout)
        except BagError:
            raise
        except Exception as exc:
            if not frames:
                raise BagError(f"bag {path} is truncated or corrupt before any frame of {topic}: "
                               f"{type(exc).__name__}: {exc}") from None
            note = (f"bag {path} is truncated or corrupt after {len(frames)} frames of {topic} "
                    f"({type(exc).__name__}: {exc}); scored the frames read")
            log.warning(note)
            gt_data.notes.append(note)
        if reader.salvage_note or len(gt_data.notes) > bool(reader.salvage_note):
            _drop_frames_past_the_truth(frames, gt_data)
    finally:
        reader.close()
    if undecodable:
        gt_data.notes.append(f"{undecodable} compressed frames of {topic} did not decode and were skipped")
    if not frames:
        raise BagError(f"topic {topic} of bag {path} has no messages")
    unknown = {f.encoding for f in frames} - set(SUPPORTED)
    if unknown:
        raise BagError(f"topic {topic} has images in unsupported encodings {sorted(unknown)}")
    if gt is not None:
        from .trajectory_files import MATCH_WINDOW_S, TrajectoryFileError, associate, read_trajectory
        stamps = np.array([f.stamp_ns for f in frames], np.int64)
        try:
            table = read_trajectory(gt)
            poses = associate(stamps, table)
        except TrajectoryFileError as exc:
            raise BagError(str(exc)) from None
        gt_data.poses = {int(s): p for s, p in zip(stamps, poses) if np.isfinite(p).all()}
        if len(gt_data.poses) < 3 and table.stamps_ns is not None:  # scoring egomotion needs three
            raise BagError(f"ground truth {gt} does not overlap the bag's frames: {len(gt_data.poses)} of "
                           f"{len(frames)} frames have a pose within {MATCH_WINDOW_S} s (the file covers "
                           f"{_span(table.stamps_ns)}, the frames {_span(stamps)}; a file timed from its own start "
                           f"needs the bag's clock)")
        gt_data.notes.append(f"ground-truth poses from {Path(gt).name} ({len(gt_data.poses)} of {len(frames)} "
                             f"frames matched)")
    return topic, frames, gt_data
