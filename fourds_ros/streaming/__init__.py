"""The ROS-free streaming core: frames in, per-frame depth, trajectory and tracks out."""
from .camera import PixelMap
from .frames import ENCODINGS, SUPPORTED, ImageError
from .pipeline import FrameOutput, StreamConfig, StreamingPipeline, StreamStats

__all__ = ["ENCODINGS", "SUPPORTED", "ImageError", "FrameOutput", "PixelMap", "StreamConfig", "StreamingPipeline", "StreamStats"]
