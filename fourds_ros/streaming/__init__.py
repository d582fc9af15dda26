"""The ROS-free streaming core: frames in, per-frame depth, trajectory and tracks out (`pipeline.py`)."""
from ..images import ImageError
from .camera import PixelMap
from .output import FrameOutput, StreamStats
from .pipeline import StreamingPipeline
from .settings import StreamConfig

__all__ = ["ImageError", "FrameOutput", "PixelMap", "StreamConfig", "StreamingPipeline", "StreamStats"]
