"""The ROS-free streaming core: frames in, per-frame depth, trajectory and tracks out."""
from .image_decode import ENCODINGS, ImageError
from .pipeline import FrameOutput, StreamConfig, StreamingPipeline, StreamStats

__all__ = ["ENCODINGS", "ImageError", "FrameOutput", "StreamConfig", "StreamingPipeline", "StreamStats"]
