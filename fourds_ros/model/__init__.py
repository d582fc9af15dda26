"""The 4DS model in PyTorch: ROS-free, importable without rclpy."""
from .config import ClipConfig, ConfigError, EncoderConfig, ModelConfig, ReadoutConfig, VIT_SIZES, default_heads
from .fourds import FourDS
from .model_dir import ModelDirError, load_model_dir, save_model_dir
from .official_import import CheckpointError, import_official

__all__ = ["ClipConfig", "ConfigError", "EncoderConfig", "ModelConfig", "ReadoutConfig", "VIT_SIZES", "default_heads",
           "FourDS", "ModelDirError", "load_model_dir", "save_model_dir", "CheckpointError", "import_official"]
