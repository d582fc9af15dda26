"""Named model configurations: the embedded default and the release's shapes."""
from __future__ import annotations

from .config import ClipConfig, EncoderConfig, ModelConfig, ReadoutConfig

# The embedded default (the shape of models/default): real time on a 2-core CPU with onnxruntime at the node's
# default window settings. embedded-ti-128 is the same model at twice the resolution (~4x the compute).
DEFAULT_PRESET = "embedded-ti-64"
PRESETS = ("embedded-ti-64", "embedded-ti-128", "release-b-224")


def preset(name: str) -> ModelConfig:
    if name.startswith("embedded-ti-"):
        side = int(name.rsplit("-", 1)[1])
        readout = dict(num_params=128, num_heads=4)
        heads = {"depth": ReadoutConfig(**readout), "pose": ReadoutConfig(**readout),
                 "points": ReadoutConfig(**readout, max_queries=64), "boxes": ReadoutConfig(**readout, max_queries=16)}
        return ModelConfig(encoder=EncoderConfig.from_size("Ti"), clip=ClipConfig(16, side, side), heads=heads, name=name)
    if name == "release-b-224":
        heads = {"depth": ReadoutConfig(num_params=1024, num_heads=16)}
        return ModelConfig(encoder=EncoderConfig.from_size("B"), clip=ClipConfig(16, 224, 224), heads=heads, name=name)
    raise ValueError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}")
