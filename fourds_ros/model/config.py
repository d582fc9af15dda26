"""Model configuration: one table of ViT sizes and a config that fixes every shape.

Every shape in the model (token grid, query counts, position tables) derives
from `ModelConfig`; nothing is tied to the release's 16x224x224.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

# name: (hidden_size, num_layers, mlp_size, num_heads), as kauldron's VIT_SIZES
# (Table 2 of Zhai et al., "Scaling Vision Transformers").
VIT_SIZES: dict[str, tuple[int, int, int, int]] = {
    "mu": (32, 1, 128, 2),
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "M": (512, 12, 2048, 8),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "H": (1280, 32, 5120, 16),
    "g": (1408, 40, 6144, 16),
    "G": (1664, 48, 8192, 16),
    "e": (1792, 56, 15360, 16),
}

HEAD_NAMES = ("depth", "pose", "points", "boxes")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


@dataclasses.dataclass
class EncoderConfig:
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_size: int
    patch_size: tuple[int, int, int] = (2, 16, 16)
    # Fraction of the depth of the feature list the readouts read (4DS: 0.95).
    readout_depth: float = 0.95

    @classmethod
    def from_size(cls, size: str, **overrides: Any) -> "EncoderConfig":
        if size not in VIT_SIZES:
            raise ConfigError(f"unknown ViT size {size!r}; known: {', '.join(VIT_SIZES)}")
        hidden, layers, mlp, heads = VIT_SIZES[size]
        return cls(hidden_size=hidden, num_layers=layers, num_heads=heads, mlp_size=mlp, **overrides)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_features(self) -> int:
        """Length of the encoder's feature list: the tokens, then every block's input."""
        return self.num_layers + 1

    @property
    def readout_index(self) -> int:
        return int(self.num_features * self.readout_depth) - 1


@dataclasses.dataclass
class ClipConfig:
    frames: int = 16
    height: int = 224
    width: int = 224


@dataclasses.dataclass
class ReadoutConfig:
    """One cross-attention readout. `num_params` is the width of its queries."""

    num_params: int = 1024
    num_heads: int = 16
    # depth: the output patch each query decodes (t, h, w).
    decoding_patch: tuple[int, int, int] = (2, 8, 8)
    # points / boxes: the most tracks one call can query (fixed for exported graphs).
    max_queries: int = 64
    # points / boxes: Fourier frequencies of the query coordinates.
    num_frequencies: int = 8


@dataclasses.dataclass
class ModelConfig:
    encoder: EncoderConfig
    clip: ClipConfig = dataclasses.field(default_factory=ClipConfig)
    heads: dict[str, ReadoutConfig] = dataclasses.field(default_factory=dict)
    name: str = "fourds"

    def __post_init__(self) -> None:
        self.validate()

    # Shapes -----------------------------------------------------------------
    @property
    def token_grid(self) -> tuple[int, int, int]:
        pt, ph, pw = self.encoder.patch_size
        return self.clip.frames // pt, self.clip.height // ph, self.clip.width // pw

    @property
    def num_tokens(self) -> int:
        t, h, w = self.token_grid
        return t * h * w

    def depth_query_grid(self) -> tuple[int, int, int]:
        pt, ph, pw = self.heads["depth"].decoding_patch
        return self.clip.frames // pt, self.clip.height // ph, self.clip.width // pw

    def validate(self) -> None:
        enc, clip = self.encoder, self.clip
        for name, value in (("hidden_size", enc.hidden_size), ("num_layers", enc.num_layers),
                            ("num_heads", enc.num_heads), ("mlp_size", enc.mlp_size)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"encoder.{name} must be a positive integer, got {value!r}")
        if enc.hidden_size % enc.num_heads:
            raise ConfigError(f"encoder.hidden_size {enc.hidden_size} is not divisible by num_heads {enc.num_heads}")
        if not 0.0 < enc.readout_depth <= 1.0:
            raise ConfigError(f"encoder.readout_depth must be in (0, 1], got {enc.readout_depth}")
        if enc.readout_index < 0:
            raise ConfigError(f"encoder.readout_depth {enc.readout_depth} selects no feature of {enc.num_features}")
        for axis, size, patch in zip(("frames", "height", "width"), (clip.frames, clip.height, clip.width),
                                     enc.patch_size):
            if size <= 0 or size % patch:
                raise ConfigError(f"clip.{axis} = {size} must be a positive multiple of the patch size {patch}")
        for head, cfg in self.heads.items():
            if head not in HEAD_NAMES:
                raise ConfigError(f"unknown head {head!r}; known: {', '.join(HEAD_NAMES)}")
            if cfg.num_params % cfg.num_heads:
                raise ConfigError(f"heads.{head}.num_params {cfg.num_params} is not divisible by num_heads {cfg.num_heads}")
            if head == "depth":
                for axis, size, patch in zip(("frames", "height", "width"), (clip.frames, clip.height, clip.width),
                                             cfg.decoding_patch):
                    if size % patch:
                        raise ConfigError(f"clip.{axis} = {size} is not a multiple of heads.depth.decoding_patch {patch}")
            if head in ("points", "boxes") and cfg.max_queries <= 0:
                raise ConfigError(f"heads.{head}.max_queries must be positive, got {cfg.max_queries}")

    # Serialisation ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        try:
            encoder = dataclass_from_dict(EncoderConfig, data["encoder"], "encoder")
            clip = dataclass_from_dict(ClipConfig, data.get("clip", {}), "clip")
            heads = {name: dataclass_from_dict(ReadoutConfig, cfg or {}, f"heads.{name}")
                     for name, cfg in (data.get("heads") or {}).items()}
        except KeyError as exc:
            raise ConfigError(f"model config is missing {exc}") from None
        unknown = set(data) - {"encoder", "clip", "heads", "name"}
        if unknown:
            raise ConfigError(f"model config has unknown keys: {sorted(unknown)}")
        return cls(encoder=encoder, clip=clip, heads=heads, name=data.get("name", "fourds"))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "ModelConfig":
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"model config {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"model config {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def close_names(unknown, known) -> str:
    """' (did you mean ...?)' for known names that look like a typo of an unknown one, closest first, else ''.

    Dotted names are compared by their last part when the unknown name has the candidate's group (a shared
    prefix would make every name of the group look close) or none at all (`lr` finds `optim.lr`); whole
    names otherwise.
    """
    from difflib import SequenceMatcher

    def closeness(name: str, candidate: str) -> float:
        group, _, leaf = name.rpartition(".")
        other_group, _, other_leaf = candidate.rpartition(".")
        pair = (leaf, other_leaf) if group in (other_group, "") else (name, candidate)
        return SequenceMatcher(None, *pair).ratio()

    scored = sorted(((closeness(str(name), k), k) for name in unknown for k in map(str, known)), reverse=True)
    close = list(dict.fromkeys(k for score, k in scored if score >= 0.75))[:3]
    return f" (did you mean {', '.join(close)}?)" if close else ""


def dataclass_from_dict(kind: type, values: dict[str, Any] | None, where: str, error: type[Exception] = None):
    """`kind(**values)` for JSON/YAML data, checked: unknown keys and wrong types raise `error` naming `where`.

    Lists become tuples (so configs compare equal after a round trip), nested dataclass fields are built
    recursively, and numbers written as strings (YAML 1.1 reads 3e-3 as one) are converted.
    """
    error = error or ConfigError
    values = values or {}
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = set(values) - set(fields)
    if unknown:
        raise error(f"{where} has unknown keys: {sorted(unknown)}{close_names(unknown, fields)}")
    out = {}
    for key, value in values.items():
        field = fields[key]
        default = field.default if field.default is not dataclasses.MISSING else None
        nested = field.default_factory() if field.default_factory is not dataclasses.MISSING else None
        if isinstance(value, list):
            value = tuple(value)
        if dataclasses.is_dataclass(nested):
            value = dataclass_from_dict(type(nested), value, f"{where}.{key}", error)
        elif isinstance(default, (int, float)) and not isinstance(default, bool) and not isinstance(value, (int, float)):
            try:
                value = float(value) if isinstance(default, float) else int(value)
            except (TypeError, ValueError):
                raise error(f"{where}.{key}: expected a number, got {value!r}") from None
        out[key] = value
    try:
        return kind(**out)
    except TypeError as exc:
        raise error(f"{where}: {exc}") from None


def default_heads(num_params: int = 1024, num_heads: int = 16) -> dict[str, ReadoutConfig]:
    return {name: ReadoutConfig(num_params=num_params, num_heads=num_heads) for name in HEAD_NAMES}
