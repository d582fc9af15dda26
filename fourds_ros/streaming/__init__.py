"""The ROS-free streaming core: frames in, per-frame depth, trajectory and tracks out."""
from .camera import PixelMap
from .frames import ENCODINGS, ImageError
from .pipeline import FrameOutput, StreamConfig, StreamingPipeline, StreamStats

__all__ = ["ENCODINGS", "ImageError", "FrameOutput", "PixelMap", "StreamConfig", "StreamingPipeline", "StreamStats"]
