"""video_publisher: a video file or an image folder -> sensor_msgs/Image + CameraInfo at a given rate.

Feeds perception_node without a camera. Intrinsics come from `fov_deg` (a
pinhole with the principal point at the centre) unless fx/fy/cx/cy are set.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from . import messages
from ..streaming.settings import Setting
from .parameters import ParameterError, declare_all
from .entry_point import run_node
from .qos import RELIABILITY, qos

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PARAMETERS = [
    Setting("source", "", "video file, or a folder of images played in name order"),
    Setting("rate", 30.0, "frames per second", range=(0.1, 1000.0)),
    Setting("loop", False, "start again at the end"),
    Setting("max_frames", 0, "stop after this many frames (0: the whole source)", range=(0, 10**9)),
    Setting("frame_id", "camera_optical_frame", "frame_id of the images (an optical frame, REP 103)"),
    Setting("encoding", "rgb8", "published encoding", choices=("rgb8", "bgr8", "mono8")),
    Setting("fov_deg", 60.0, "horizontal field of view for camera_info", range=(1.0, 179.0)),
    Setting("fx", 0.0, "focal length x in pixels (0: from fov_deg)", range=(0.0, 1e6)),
    Setting("fy", 0.0, "focal length y in pixels (0: fx)", range=(0.0, 1e6)),
    Setting("reliability", "reliable", "QoS reliability", choices=RELIABILITY),
    Setting("wait_for_subscribers", 0, "hold the first frame until this many image subscribers exist", range=(0, 1000)),
    Setting("depth", 5, "QoS history depth", range=(1, 1000)),
]


class FrameSource:
    """Frames as RGB uint8 from a video file (OpenCV) or a folder of images."""

    def __init__(self, source: str):
        path = Path(source)
        self.capture = None
        if path.is_dir():
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise ParameterError(f"parameter 'source': folder {path} has no images ({', '.join(IMAGE_SUFFIXES)})")
        elif path.is_file():
            self.files = None
            self.capture = cv2.VideoCapture(str(path))
            if not self.capture.isOpened():
                raise ParameterError(f"parameter 'source': OpenCV cannot open {path} as a video")
        else:
            raise ParameterError(f"parameter 'source': {source!r} is neither a video file nor a folder")
        self.index = 0

    def read(self) -> np.ndarray | None:
        if self.files is not None:
            if self.index >= len(self.files):
                return None
            bgr = cv2.imread(str(self.files[self.index]), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"cannot read image {self.files[self.index]}")
        else:
            ok, bgr = self.capture.read()
            if not ok:
                return None
        self.index += 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def rewind(self) -> None:
        self.index = 0
        if self.capture is not None:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)


class VideoPublisher(Node):
    def __init__(self):
        super().__init__("video_publisher")
        self.params = declare_all(self, PARAMETERS)
        if not self.params["source"]:
            raise ParameterError("parameter 'source': a video file or image folder is required")
        self.source = FrameSource(self.params["source"])
        profile = qos(self.params["reliability"], self.params["depth"])
        self.pub_image = self.create_publisher(Image, "image", profile)
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", profile)
        self.published = 0
        self.timer = self.create_timer(1.0 / self.params["rate"], self._tick)

    def _camera_info(self, header, height: int, width: int) -> CameraInfo:
        p = self.params
        fx = p["fx"] or (width / 2) / np.tan(np.radians(p["fov_deg"]) / 2)
        fy = p["fy"] or fx
        cx, cy = (width - 1) / 2, (height - 1) / 2
        return CameraInfo(header=header, height=height, width=width, distortion_model="plumb_bob", d=[0.0] * 5,
                          k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                          p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])

    def _tick(self) -> None:
        if self.published == 0 and self.pub_image.get_subscription_count() < self.params["wait_for_subscribers"]:
            return
        limit = self.params["max_frames"]
        frame = self.source.read() if not limit or self.published < limit else None
        if frame is None and self.params["loop"] and (not limit or self.published < limit):
            self.source.rewind()
            frame = self.source.read()
        if frame is None:
            self.get_logger().info(f"done: published {self.published} frames")
            self.timer.cancel()
            raise SystemExit(0)
        encoding = self.params["encoding"]
        if encoding == "bgr8":
            frame = frame[..., ::-1]
        elif encoding == "mono8":
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[..., None]
        h, w = frame.shape[:2]
        header = messages.header_at(self.get_clock().now().nanoseconds, self.params["frame_id"])
        self.pub_image.publish(Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                                     step=w * frame.shape[2], data=np.ascontiguousarray(frame).tobytes()))
        self.pub_info.publish(self._camera_info(header, h, w))
        self.published += 1


def main(args: list[str] | None = None) -> int:
    return run_node(VideoPublisher, "video_publisher", (ParameterError,), args)


if __name__ == "__main__":
    sys.exit(main())
