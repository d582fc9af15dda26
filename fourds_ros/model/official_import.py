"""Import the released 4DS checkpoints (`.npz`, Flax tree flattened with '/').

Two layouts exist: encoder + readout checkpoints (`scaling4d_dist_b_depth.npz`)
hold the `nn.Sequential` tree (`params/layers_0/...` encoder,
`params/layers_2/...` depth readout); encoder-only checkpoints
(`scaling4d_dist_b.npz`, `scaling4d_e.npz`) hold the bare encoder tree
(`params/encoder/...`, `params/processor/...`). Sizes are read off the arrays,
then every key and shape is checked against what that size implies before
anything is written.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import ClipConfig, EncoderConfig, ModelConfig, ReadoutConfig
from .fourds import FourDS, resize_tables
from .model_dir import CONFIG_FILE, check_state_dict, describe_mismatch, save_model_dir, sha256_file

SEQUENTIAL_ENCODER, BARE_ENCODER, READOUT = "params/layers_0/", "params/", "params/layers_2/"
# The release decodes each depth query into a (2, 8, 8) patch; 128 outputs do not identify it uniquely.
RELEASE_DECODING_PATCH = (2, 8, 8)


class CheckpointError(ValueError):
    """The checkpoint cannot be read or does not have the layout of a 4DS release."""


def read_npz(path: Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if path.is_dir():
        what = ("a fourds_ros model directory (already imported: give it as --model)" if (path / CONFIG_FILE).is_file()
                else "a directory")
        raise CheckpointError(f"{path} is {what}; import-official takes a released 4DS checkpoint file (.npz)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a readable .npz checkpoint ({type(exc).__name__}: {exc})") from None


def _layout(arrays: dict[str, np.ndarray]) -> str:
    if any(k.startswith(SEQUENTIAL_ENCODER + "encoder/") for k in arrays):
        return SEQUENTIAL_ENCODER
    if any(k.startswith(BARE_ENCODER + "encoder/") for k in arrays):
        return BARE_ENCODER
    raise CheckpointError("no encoder found: expected keys under 'params/layers_0/encoder/' or 'params/encoder/'")


def _need(arrays: dict[str, np.ndarray], key: str, ndim: int) -> np.ndarray:
    if key not in arrays:
        raise CheckpointError(f"missing key {key!r}, needed to tell the model size")
    if arrays[key].ndim != ndim:
        raise CheckpointError(f"{key!r} has shape {arrays[key].shape}, expected {ndim} dimensions")
    return arrays[key]


def infer_config(arrays: dict[str, np.ndarray]) -> tuple[ModelConfig, str]:
    """The model config a checkpoint's arrays describe, and its encoder key prefix."""
    enc = _layout(arrays)
    kernel = _need(arrays, enc + "encoder/patch_embedding/Conv_0/kernel", 5)
    pos = _need(arrays, enc + "encoder/posenc/embeddings", 4)
    layer_ids = {int(m.group(1)) for k in arrays if (m := re.match(re.escape(enc) + r"processor/layers_(\d+)/", k))}
    if not layer_ids:
        raise CheckpointError(f"no transformer blocks under {enc}processor/")
    query = _need(arrays, enc + "processor/layers_0/attention/query/kernel", 3)
    dense_in = _need(arrays, enc + "processor/layers_0/mlp/dense_in/kernel", 2)
    patch = tuple(int(s) for s in kernel.shape[:3])
    encoder = EncoderConfig(hidden_size=int(kernel.shape[4]), num_layers=max(layer_ids) + 1,
                            num_heads=int(query.shape[1]), mlp_size=int(dense_in.shape[1]), patch_size=patch)
    clip = ClipConfig(*(int(g) * p for g, p in zip(pos.shape[:3], patch)))
    heads = {}
    if enc == SEQUENTIAL_ENCODER and READOUT + "query" in arrays:
        readout_query = _need(arrays, READOUT + "query", 3)
        heads["depth"] = ReadoutConfig(num_params=int(readout_query.shape[1] * readout_query.shape[2]),
                                       num_heads=int(readout_query.shape[1]), decoding_patch=RELEASE_DECODING_PATCH)
    return ModelConfig(encoder=encoder, clip=clip, heads=heads, name="4ds-official"), enc


Convert = Callable[..., np.ndarray]


def _dense(kernel: np.ndarray) -> np.ndarray:
    """Flax DenseGeneral kernel `(in..., out...)` with one input axis -> torch Linear weight `(out, in)`."""
    return kernel.reshape(kernel.shape[0], -1).T


def _mapping(config: ModelConfig, enc: str) -> list[tuple[str, dict[str, tuple[int, ...]], Convert]]:
    """(torch key, {official key: official shape}, converter) for every torch parameter."""
    e = config.encoder
    d, heads, hd, mlp = e.hidden_size, e.num_heads, e.head_dim, e.mlp_size
    rules: list[tuple[str, dict[str, tuple[int, ...]], Convert]] = []

    def rule(torch_key: str, shapes: dict[str, tuple[int, ...]], convert: Convert = lambda a: a) -> None:
        rules.append((torch_key, shapes, convert))

    def layer_norm(torch_prefix: str, flax_prefix: str, dim: int) -> None:
        rule(torch_prefix + ".weight", {flax_prefix + "/scale": (dim,)})
        rule(torch_prefix + ".bias", {flax_prefix + "/bias": (dim,)})

    def linear(torch_prefix: str, flax_prefix: str, kernel: tuple[int, ...], bias: tuple[int, ...]) -> None:
        rule(torch_prefix + ".weight", {flax_prefix + "/kernel": kernel}, _dense)
        rule(torch_prefix + ".bias", {flax_prefix + "/bias": bias}, lambda b: b.reshape(-1))

    rule("encoder.patch_embed.weight", {enc + "encoder/patch_embedding/Conv_0/kernel": (*e.patch_size, 3, d)},
         lambda k: k.transpose(4, 3, 0, 1, 2))
    rule("encoder.patch_embed.bias", {enc + "encoder/patch_embedding/Conv_0/bias": (d,)})
    rule("encoder.pos_embed", {enc + "encoder/posenc/embeddings": (*config.token_grid, d)})
    for i in range(e.num_layers):
        src, dst = f"{enc}processor/layers_{i}/", f"encoder.blocks.{i}."
        layer_norm(dst + "norm1", src + "attention_norm", d)
        layer_norm(dst + "norm2", src + "mlp_norm", d)
        qkv = [src + f"attention/{n}" for n in ("query", "key", "value")]
        rule(dst + "attn.qkv.weight", {p + "/kernel": (d, heads, hd) for p in qkv},
             lambda q, k, v: np.concatenate([_dense(q), _dense(k), _dense(v)], axis=0))
        rule(dst + "attn.qkv.bias", {p + "/bias": (heads, hd) for p in qkv},
             lambda q, k, v: np.concatenate([q.reshape(-1), k.reshape(-1), v.reshape(-1)]))
        rule(dst + "attn.proj.weight", {src + "attention/out/kernel": (heads, hd, d)}, lambda k: k.reshape(-1, d).T)
        rule(dst + "attn.proj.bias", {src + "attention/out/bias": (d,)})
        linear(dst + "mlp.fc1", src + "mlp/dense_in", (d, mlp), (mlp,))
        linear(dst + "mlp.fc2", src + "mlp/dense_out", (mlp, d), (d,))
    if "depth" in config.heads:
        r = config.heads["depth"]
        width, rh = r.num_params, r.num_heads
        num_queries = int(np.prod(config.depth_query_grid()))
        num_classes = int(np.prod(r.decoding_patch))
        dst = "heads.depth."
        rule(dst + "queries", {READOUT + "query": (num_queries, rh, width // rh)}, lambda q: q.reshape(q.shape[0], -1))
        layer_norm(dst + "readout.norm_in", READOUT + "LayerNorm_0", d)
        rule(dst + "readout.temporal_pos", {READOUT + "temporal_posenc/embeddings": (config.clip.frames, 1, d)})
        linear(dst + "readout.key", READOUT + "key_embedding", (d, rh, width // rh), (rh, width // rh))
        linear(dst + "readout.value", READOUT + "value_embedding", (d, rh, width // rh), (rh, width // rh))
        linear(dst + "readout.proj", READOUT + "Dense_0", (width, width), (width,))
        layer_norm(dst + "readout.norm_mlp", READOUT + "LayerNorm_1", width)
        linear(dst + "readout.mlp.fc1", READOUT + "MLP_0/Dense_0", (width, 4 * width), (4 * width,))
        linear(dst + "readout.mlp.fc2", READOUT + "MLP_0/Dense_1", (4 * width, width), (width,))
        linear(dst + "readout.out", READOUT + "Dense_1", (width, num_classes), (num_classes,))
    return rules


def convert_arrays(arrays: dict[str, np.ndarray]) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Checked conversion of a release's arrays into (config, torch state dict)."""
    config, enc = infer_config(arrays)
    rules = _mapping(config, enc)
    expected = {key: shape for _, shapes, _ in rules for key, shape in shapes.items()}
    got = {key: tuple(a.shape) for key, a in arrays.items()}
    problems = describe_mismatch(expected, got)
    if problems:
        raise CheckpointError(f"checkpoint does not have the layout of a 4DS {config.encoder.hidden_size}-wide "
                              f"model at clip {config.clip.frames}x{config.clip.height}x{config.clip.width}: {problems}")
    state = {}
    for torch_key, shapes, convert in rules:
        values = [arrays[k].astype(np.float32, copy=False) for k in shapes]
        state[torch_key] = torch.from_numpy(np.ascontiguousarray(convert(*values), dtype=np.float32))
    return config, state


def import_official(checkpoint: Path, out: Path, *, clip: ClipConfig | None = None,
                    add_heads: tuple[str, ...] = (), readout: ReadoutConfig | None = None,
                    seed: int = 0, overwrite: bool = False) -> Path:
    """Convert a released checkpoint into a model directory.

    `clip` resamples the learned tables to another clip size (see `resize_tables`);
    `add_heads` adds freshly initialised heads (for readout training) with `readout` sizes.
    """
    checkpoint = Path(checkpoint)
    config, state = convert_arrays(read_npz(checkpoint))
    source = config
    target = ModelConfig(encoder=config.encoder, clip=clip or config.clip,
                         heads={**config.heads, **{h: readout or ReadoutConfig() for h in add_heads
                                                   if h not in config.heads}}, name=config.name)
    model = FourDS(target)
    model.reset_parameters(seed)
    if target.clip != source.clip:
        state = resize_tables(state, source, target)
    fresh = {k: v for k, v in model.state_dict().items() if k.startswith(tuple(f"heads.{h}." for h in add_heads))
             and k not in state}
    state.update(fresh)
    check_state_dict(model, state, str(checkpoint))
    model.load_state_dict(state)
    metadata = {"source": checkpoint.name, "source_sha256": sha256_file(checkpoint), "imported_clip": vars(source.clip),
                "untrained_heads": sorted(set(add_heads) - set(source.heads))}
    return save_model_dir(model, out, metadata, overwrite=overwrite)
