"""Training configuration: one YAML file per run (config/training/*.yaml), validated on load."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from fourds_ros.model.config import close_names, dataclass_from_dict


TASKS = ("pretrain", "distill", "readouts", "selfsup")


class TrainConfigError(ValueError):
    """A training config value is missing, unknown or out of range."""


@dataclasses.dataclass
class ModelSection:
    size: str = "Ti"  # ViT size of the encoder (student for distillation)
    clip: tuple[int, int, int] = (16, 64, 64)
    readout_params: int = 128
    readout_heads: int = 4
    heads: tuple[str, ...] = ("depth", "pose", "points", "boxes")
    init_from: str = ""  # a model directory to start from (encoder, and heads when present)


@dataclasses.dataclass
class DataSection:
    sources: tuple[str, ...] = ()  # folders of videos, rosbag2 directories, or folders of .npz shards
    frame_stride: int = 1
    crop_scale: tuple[float, float] = (0.6, 1.0)
    flip: bool = True
    workers: int = 0
    image_topic: str = ""
    # Self-supervision needs each source's intrinsics: bags give camera_info, shards their own; for videos (or
    # bags without camera_info) a pinhole with this horizontal field of view is assumed (0: none assumed).
    horizontal_fov_deg: float = 0.0


@dataclasses.dataclass
class OptimSection:
    lr: float = 1.5e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    grad_clip: float = 1.0


MAE_DECODERS = ("linear", "transformer")


@dataclasses.dataclass
class MaeSection:
    mask_ratio: float = 0.95
    decoder_width: int = 384
    decoder_layers: int = 4
    decoder_heads: int = 6
    norm_pixel_loss: bool = True
    # "linear": the 4DS recipe, the encoder runs over the visible tubelets and a learned mask token at every
    # masked position, and one linear layer maps each output token to its tubelet's pixels. "transformer": the
    # VideoMAE decoder (the encoder sees the visible tubelets only; decoder_* size it).
    decoder: str = "transformer"


@dataclasses.dataclass
class DistillSection:
    teacher: str = ""  # model directory of the frozen teacher
    student_mask_ratio: float = 0.0


@dataclasses.dataclass
class ReadoutSection:
    finetune_encoder: bool = False
    depth_weight: float = 1.0
    pose_weight: float = 1.0
    points_weight: float = 1.0
    boxes_weight: float = 1.0
    points_per_clip: int = 32
    depth_init: float = 2.0  # metres: a fresh depth head starts here (a zero start sits in the log loss's clamp)


@dataclasses.dataclass
class SelfSupSection:
    photometric_weight: float = 1.0  # Monodepth2's reprojection + smoothness on every clip (photometric.py)
    supervised_weight: float = 1.0  # the readout losses on clips with ground truth (synthetic shards): metric scale


@dataclasses.dataclass
class TrainConfig:
    task: str = "pretrain"  # pretrain | distill | readouts | selfsup
    out_dir: str = "runs/default"
    seed: int = 0
    steps: int = 1000
    stop_after: int = 0  # stop (with a checkpoint) once this step is done, as a preemption would; 0: never
    batch_size: int = 8  # global, split across ranks
    bf16: bool = True  # autocast on CUDA (loss and softmax stay float32)
    activation_checkpointing: bool = False
    shard: bool = True  # FSDP2; False trains an unsharded replica (single process)
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    log_every: int = 10
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    optim: OptimSection = dataclasses.field(default_factory=OptimSection)
    mae: MaeSection = dataclasses.field(default_factory=MaeSection)
    distill: DistillSection = dataclasses.field(default_factory=DistillSection)
    readouts: ReadoutSection = dataclasses.field(default_factory=ReadoutSection)
    selfsup: SelfSupSection = dataclasses.field(default_factory=SelfSupSection)

    def validate(self) -> None:
        if self.task not in TASKS:
            raise TrainConfigError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task == "selfsup" and not {"depth", "pose"} <= set(self.model.heads):
            raise TrainConfigError(f"model.heads: self-supervision trains the depth and pose heads, got "
                                   f"{list(self.model.heads)}")
        if self.data.horizontal_fov_deg < 0 or self.data.horizontal_fov_deg >= 180:
            raise TrainConfigError(f"data.horizontal_fov_deg must be in [0, 180), got {self.data.horizontal_fov_deg}")
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise TrainConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.mae.mask_ratio < 1:
            raise TrainConfigError(f"mae.mask_ratio must be in [0, 1), got {self.mae.mask_ratio}")
        if self.mae.decoder not in MAE_DECODERS:
            raise TrainConfigError(f"mae.decoder must be one of {', '.join(MAE_DECODERS)}, got {self.mae.decoder!r}")
        if self.task == "distill" and not self.distill.teacher:
            raise TrainConfigError("distill.teacher: a teacher model directory is required for distillation")
        if not self.data.sources:
            raise TrainConfigError("data.sources: at least one video folder, bag or shard folder is required")


def setting_names(kind: type = None, prefix: str = "") -> list[str]:
    """Every dotted name a config can set (`steps`, `optim.lr`, ...)."""
    names = []
    for field in dataclasses.fields(kind or TrainConfig):
        nested = field.default_factory() if field.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(nested):
            names += setting_names(type(nested), f"{prefix}{field.name}.")
        else:
            names.append(prefix + field.name)
    return names


def _check_setting(key: str) -> None:
    names = setting_names()
    if key not in names:
        raise TrainConfigError(f"--set {key}: no such setting{close_names([key], names)}")


def load_train_config(path: Path, overrides: list[str] = ()) -> TrainConfig:
    """Load a YAML config; `overrides` are `section.key=value` strings (YAML values)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise TrainConfigError(f"config {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise TrainConfigError(f"config {path} is not valid YAML: {exc}") from None
    for item in overrides:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise TrainConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optim.lr=1e-3")
        _check_setting(key)
        target = data
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = yaml.safe_load(value)
    config = dataclass_from_dict(TrainConfig, data, Path(path).name, TrainConfigError)
    config.validate()
    return config
