"""The project's model directory: `config.json` + `model.safetensors` (+ `metadata.json`).

Directories are written to a temporary sibling and renamed into place, so a
failed or interrupted write never leaves a directory that looks complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .config import ConfigError, ModelConfig

# torch and safetensors load inside the functions that need them: reading a config or a checksum does not.
if TYPE_CHECKING:
    import torch

    from .fourds import FourDS

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"


class ModelDirError(RuntimeError):
    """A model directory is missing, incomplete or does not match its config."""


@contextmanager
def atomic_directory(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes `out` only if the block succeeds."""
    out = Path(out)
    if out.exists() and not overwrite and any(out.iterdir()):
        raise ModelDirError(f"{out} already exists and is not empty (pass overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def save_model_dir(model: FourDS, out: Path, metadata: dict[str, Any] | None = None,
                   overwrite: bool = False) -> Path:
    from safetensors.torch import save_file
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_directory(out, overwrite) as tmp:
        model.config.save(tmp / CONFIG_FILE)
        save_file(state, str(tmp / WEIGHTS_FILE))
        if metadata:
            (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return Path(out)


def load_model_config(model_dir: Path) -> ModelConfig:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(not_a_model_dir(model_dir))
    run = next((p for p in (model_dir, model_dir.parent.parent) if (p / "checkpoints").is_dir()), None)
    if not (model_dir / CONFIG_FILE).is_file() and run is not None:
        raise ModelDirError(f"{model_dir} is a training run's folder, not a model directory: the run writes its model "
                            f"to {run / 'model'} when it finishes (checkpoints are for resuming)")
    try:
        return ModelConfig.load(model_dir / CONFIG_FILE)
    except ConfigError as exc:
        raise ModelDirError(f"{model_dir}: {exc}") from None


def untrained_heads(model_dir: Path) -> tuple[str, ...]:
    """The heads of a model directory that were never trained (fresh weights): `metadata.json`'s
    `untrained_heads`, written by the import, `init-model` and training; for directories made before it was
    written, an import's `added_heads`, and every head of a pretrained or distilled encoder."""
    model_dir = Path(model_dir)
    heads = tuple(load_model_config(model_dir).heads)
    path = model_dir / METADATA_FILE
    try:
        metadata = json.loads(path.read_text()) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{path} is not valid JSON: {exc}") from None
    if "untrained_heads" in metadata:
        named = metadata["untrained_heads"]
    elif "added_heads" in metadata:
        named = metadata["added_heads"]
    elif str(metadata.get("source", "")).startswith(("offline_training pretrain", "offline_training distill")):
        named = heads
    else:
        named = ()
    return tuple(h for h in heads if h in named)


def not_a_model_dir(path: Path) -> str:
    """Why `path`, which is not a folder, cannot be a model directory, and what to do instead."""
    if not path.exists():
        return f"model directory {path} does not exist"
    if path.suffix == ".npz":
        return (f"{path} is a file (an official 4DS checkpoint?); a model is a directory: make one with "
                f"`fourds-ros import-official {path} --out DIR` and give DIR")
    if path.suffix == ".onnx":
        return f"{path} is an ONNX graph; give the model directory it was exported from (the graph is found in it)"
    return f"{path} is a file; a model is a directory holding {CONFIG_FILE} and {WEIGHTS_FILE}"


def load_model_dir(model_dir: Path, map_location: str | torch.device = "cpu") -> FourDS:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .fourds import FourDS
    model_dir = Path(model_dir)
    config = load_model_config(model_dir)
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelDirError(f"model directory {model_dir} has no {WEIGHTS_FILE}")
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelDirError(f"{weights} is not a readable safetensors file: {exc}") from None
    model = FourDS(config)
    check_state_dict(model, state, str(weights))
    model.load_state_dict(state)
    return model.eval()


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    problems = describe_mismatch(expected, got)
    if problems:
        raise ModelDirError(f"{source} does not match its config: {problems}")


def describe_mismatch(expected: dict[str, tuple[int, ...]], got: dict[str, tuple[int, ...]]) -> str:
    """One message listing missing, unexpected and mis-shaped keys ('' if they agree)."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    misshaped = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    parts = []
    if missing:
        parts.append(f"missing keys {missing}")
    if unexpected:
        parts.append(f"unexpected keys {unexpected}")
    if misshaped:
        parts.append("wrong shapes " + ", ".join(f"{k}: expected {expected[k]}, got {got[k]}" for k in misshaped))
    return "; ".join(parts)


def sha256_file(path: Path) -> str:
    """The digest that ties exported graphs, engines and imported checkpoints to the files they came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
