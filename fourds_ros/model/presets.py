"""Named model configurations: the embedded default and the release's shapes."""
from __future__ import annotations

from .config import ClipConfig, EncoderConfig, ModelConfig, ReadoutConfig

# The embedded default: small enough for real time on a 2-core CPU with onnxruntime
# at the node's default window settings (see benchmarks/results/).
DEFAULT_PRESET = "embedded-ti-128"


def preset(name: str) -> ModelConfig:
    if name == "embedded-ti-128":
        readout = dict(num_params=128, num_heads=4)
        heads = {"depth": ReadoutConfig(**readout), "pose": ReadoutConfig(**readout),
                 "points": ReadoutConfig(**readout, max_queries=64), "boxes": ReadoutConfig(**readout, max_queries=16)}
        return ModelConfig(encoder=EncoderConfig.from_size("Ti"), clip=ClipConfig(16, 128, 128), heads=heads, name=name)
    if name == "release-b-224":
        heads = {"depth": ReadoutConfig(num_params=1024, num_heads=16)}
        return ModelConfig(encoder=EncoderConfig.from_size("B"), clip=ClipConfig(16, 224, 224), heads=heads, name=name)
    raise ValueError(f"unknown model preset {name!r}; known: embedded-ti-128, release-b-224")
