"""A rig file (config/rig.yaml): the cameras of one perception_node and their drivers' topics, read into the
node's `cameras` parameter and the remappings of each camera's inputs (rig.launch.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..contract import node_topic
from ..streaming.pipeline import check_camera_names


@dataclass(frozen=True)
class RigCamera:
    name: str
    image: str  # the driver's sensor_msgs/Image topic
    camera_info: str  # the driver's sensor_msgs/CameraInfo topic


def read_rig(path: str | Path) -> list[RigCamera]:
    """The cameras of a rig file; a ValueError naming the file and the camera for anything missing or wrong."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"rig file {path}: {exc}") from None
    entries = data.get("cameras") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"rig file {path}: needs a list 'cameras' of {{name, image, camera_info}}")
    cameras = []
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or "/" in name or name.strip() != name:
            raise ValueError(f"rig file {path}: camera {i + 1} needs a name (a word, no '/'), got {name!r}")
        missing = [key for key in ("image", "camera_info") if not isinstance(entry.get(key), str) or not entry[key]]
        if missing:
            raise ValueError(f"rig file {path}: camera {name!r} has no {' or '.join(missing)} topic")
        unknown = sorted(set(entry) - {"name", "image", "camera_info"})
        if unknown:
            raise ValueError(f"rig file {path}: camera {name!r} has unknown keys {', '.join(unknown)}")
        cameras.append(RigCamera(name, entry["image"], entry["camera_info"]))
    try:
        check_camera_names([c.name for c in cameras])
    except ValueError as exc:
        raise ValueError(f"rig file {path}: {exc}") from None
    return cameras


def rig_remappings(cameras: list[RigCamera]) -> list[tuple[str, str]]:
    """Each camera's node inputs onto its driver's topics."""
    return [pair for c in cameras for pair in ((node_topic("image", c.name), c.image),
                                               (node_topic("camera_info", c.name), c.camera_info))]
