"""Writing a sequence with ground truth as a rosbag2 (mcap) in the layout of `topics.TOPICS`.

Used by the synthetic generator and by the converters of real footage, so every
bag the package makes reads back the same way.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .messages import BagMessages
from ..contract import compressed as compressed_topic
from ..contract import pack_boxes, pack_points
from .topics import CAMERA_FRAME, TOPICS, TYPES, WORLD_FRAME, typestore


def prepare_output(path: Path, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} already exists (pass overwrite to replace it)")
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class GroundTruthBagWriter:
    """`with GroundTruthBagWriter(path) as w: w.frame(stamp, rgb=..., k=..., depth=..., pose=...)`.

    Connections are created on first use, so a bag holds only the topics it has data for.
    """

    def __init__(self, path: Path, overwrite: bool = False, frame_id: str = CAMERA_FRAME):
        from rosbags.rosbag2 import StoragePlugin, Writer
        self.path = prepare_output(path, overwrite)
        self.store = typestore()
        self.m = BagMessages(self.store)
        self.frame_id = frame_id
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._conns: dict[str, object] = {}
        self.frames = 0

    def __enter__(self) -> "GroundTruthBagWriter":
        self._writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()

    def put(self, key: str, stamp_ns: int, msg, topic: str | None = None) -> None:
        msgtype = TYPES[key]
        topic = topic or TOPICS[key]
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        self._writer.write(conn, int(stamp_ns), self.store.serialize_cdr(msg, msgtype))

    def static_transform(self, stamp_ns: int) -> None:
        self.put("tf_static", stamp_ns, self.m.static_optical_transform(stamp_ns))

    def frame(self, stamp_ns: int, *, image: np.ndarray | None = None, encoding: str = "rgb8",
              compressed: tuple[bytes, str] | None = None, k: np.ndarray | None = None,
              size: tuple[int, int] | None = None, distortion: tuple[str, np.ndarray] | None = None,
              depth: np.ndarray | None = None, pose: np.ndarray | None = None,
              points: tuple[np.ndarray, np.ndarray] | None = None,
              boxes: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """One camera frame and whatever ground truth it has.

        image: raw pixels in `encoding`, or `compressed` = (bytes, 'jpeg'|'png'); k: 3x3 intrinsics of an image of
        `size` (height, width); distortion: (model, coefficients) for camera_info; depth: metres (NaN invalid);
        pose: 4x4 camera-to-world; points: (uv (N, 2), visible (N,)); boxes: (xyxy (M, 4), visible (M,)).
        """
        stamp = int(stamp_ns)
        if image is not None:
            self.put("image", stamp, self.m.image(image, encoding, stamp, self.frame_id))
            size = size or image.shape[:2]
        elif compressed is not None:
            data, fmt = compressed
            self.put("compressed_image", stamp, self.m.compressed_image(data, fmt, stamp, self.frame_id),
                     topic=compressed_topic(TOPICS["image"]))
        if k is not None:
            if size is None:
                raise ValueError("camera_info needs the image size")
            model, coefficients = distortion or ("plumb_bob", None)
            self.put("camera_info", stamp, self.m.camera_info(k, *size, stamp, self.frame_id, model, coefficients))
        if depth is not None:
            self.put("depth", stamp, self.m.image(np.asarray(depth, "<f4"), "32FC1", stamp, self.frame_id))
        if pose is not None:
            self.put("pose", stamp, self.m.pose_stamped(pose, stamp, WORLD_FRAME))
        for key, value, pack in (("points", points, pack_points), ("boxes", boxes, pack_boxes)):
            if value is None:
                continue
            values, visible = value
            ids = np.arange(len(values), dtype=np.uint32)
            vis = np.asarray(visible, bool)
            self.put(key, stamp, self.m.cloud(pack(ids, values, vis.astype(np.uint8), vis.astype(np.float32)),
                                              stamp, self.frame_id))
        self.frames += 1
