"""The 4DS model in PyTorch: ROS-free, importable without rclpy.

Names resolve on first use, so `fourds_ros.model.config` and `fourds_ros.model.model_dir` (reading a model
directory's config and checksums) work without importing torch: a node on onnxruntime never loads it.
"""
import importlib

_SOURCES = {
    "config": ("ClipConfig", "ConfigError", "EncoderConfig", "ModelConfig", "ReadoutConfig", "VIT_SIZES",
               "default_heads"),
    "fourds": ("FourDS",),
    "model_dir": ("ModelDirError", "load_model_dir", "save_model_dir", "untrained_heads"),
    "official_import": ("CheckpointError", "import_official"),
}
_WHERE = {name: module for module, names in _SOURCES.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
