"""Offline training on CPU: FSDP2 on 2 gloo ranks (torchrun) against an unsharded process, exact resume,
atomic checkpoints, distillation and readout training."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from fourds_ros.model import load_model_dir

pytestmark = pytest.mark.slow  # real processes / training runs: `-m "not slow"` leaves them out

TINY = REPO / "config" / "training" / "tiny.yaml"
BIN = Path(sys.executable).parent


def run_training(task: str, out: Path, *overrides: str, ranks: int = 1, check: bool = True) -> subprocess.CompletedProcess:
    args = ["-m", "offline_training", task, "--config", str(TINY), "--no-progress", "--set", f"out_dir={out}",
            *[a for o in overrides for a in ("--set", o)]]
    if ranks > 1:
        command = [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={ranks}", *args]
    else:
        command = [sys.executable, *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0 or not check, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines())}


def test_fsdp2_step_on_two_ranks_equals_an_unsharded_step(tmp_path):
    """Same global batch and masks: 2 sharded ranks and 1 unsharded process end a step with the same weights."""
    run_training("pretrain", tmp_path / "sharded", "steps=1", ranks=2)
    run_training("pretrain", tmp_path / "single", "steps=1", "shard=false")
    assert losses(tmp_path / "sharded")[1] == pytest.approx(losses(tmp_path / "single")[1], rel=1e-6)
    from offline_training.config import load_train_config
    from offline_training.trainer import build_model
    initial = build_model(load_train_config(TINY, [f"out_dir={tmp_path}"])).encoder.state_dict()  # same seed, same init
    sharded = load_model_dir(tmp_path / "sharded" / "model").encoder.state_dict()
    single = load_model_dir(tmp_path / "single" / "model").encoder.state_dict()
    # Compare the updates as a whole: Adam's first step is ~lr * sign(g), so elements whose gradient is near
    # zero magnify rounding-order differences; the update vectors agree to 1e-3 relative (stated tolerance).
    diff = sum(float(((sharded[k] - initial[k]) - (single[k] - initial[k])).pow(2).sum()) for k in single)
    norm = sum(float((single[k] - initial[k]).pow(2).sum()) for k in single)
    assert norm > 0 and (diff / norm) ** 0.5 < 1e-3, (diff / norm) ** 0.5


def test_the_two_rank_smoke_run_passes_beside_a_cpu_hog(tmp_path):
    """The issue's smoke command on a machine kept busy: two processes spinning on every core for the whole run."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        result = run_training("pretrain", tmp_path / "run", ranks=2)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert result.stdout.count("wrote ") == 1 and max(losses(tmp_path / "run")) == 8


def test_a_second_run_into_a_busy_folder_stops_and_touches_nothing(tmp_path):
    from offline_training.checkpoint import lock_run_folder
    out = tmp_path / "run"
    held = lock_run_folder(out)  # this process stands for a run still writing there
    try:
        result = run_training("pretrain", out, check=False)
    finally:
        held.close()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"{out} is being written by another training run (pid {os.getpid()})" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [".lock"]
    run_training("pretrain", out, "steps=1")  # free again once that run has ended


def test_loss_falls_and_an_interrupted_run_resumes_exactly(tmp_path):
    straight = tmp_path / "straight"
    run_training("pretrain", straight)
    reference = losses(straight)
    assert reference[8] < 0.9 * reference[1], reference
    resumed = tmp_path / "resumed"
    run_training("pretrain", resumed, "stop_after=4")
    assert max(losses(resumed)) == 4 and not (resumed / "model").exists()
    # A save that crashed half-way (no COMPLETE marker) and a leftover temporary directory are never resumed from.
    (resumed / "checkpoints" / "step_00000006").mkdir()
    (resumed / "checkpoints" / "step_00000007.tmp").mkdir()
    result = run_training("pretrain", resumed)
    assert "resuming from" in result.stdout and "step_00000004" in result.stdout
    again = losses(resumed)
    for step in range(5, 9):
        assert again[step] == pytest.approx(reference[step], rel=1e-6, abs=1e-7), step
    checkpoints = sorted(p.name for p in (resumed / "checkpoints").iterdir() if (p / "COMPLETE").exists())
    assert checkpoints == ["step_00000004", "step_00000008"]  # keep_checkpoints: 2


@pytest.mark.parametrize("recipe", ["small.yaml", "b.yaml", "large.yaml"])
def test_the_4ds_recipe_configs_build_a_linear_pixel_decoder(recipe):
    """95% masking; the encoder runs over the visible tubelets and learned mask tokens, one linear layer decodes."""
    from fourds_ros.model import EncoderConfig
    from fourds_ros.model.encoder import VideoEncoder
    from offline_training.config import load_train_config
    from offline_training.objectives import MaskedAutoencoder
    config = load_train_config(REPO / "config" / "training" / recipe, [])
    assert config.mae.mask_ratio == 0.95 and config.mae.decoder == "linear"
    # The objective's structure follows the mae section alone: a mu encoder stands in for ViT-B/L here.
    encoder = VideoEncoder(EncoderConfig.from_size("mu"), (2, 2, 2))
    mae = MaskedAutoencoder(encoder, config.mae)
    assert not hasattr(mae, "decoder_blocks") and isinstance(mae.to_pixels, torch.nn.Linear)
    assert mae.to_pixels.in_features == encoder.config.hidden_size == mae.mask_token.shape[0]
    assert mae.transformer_blocks() == list(encoder.blocks)


@pytest.mark.parametrize("decoder", ["linear", "transformer"])
def test_mae_objective_runs_under_bf16_autocast(decoder):
    """The GPU configs train in bf16 autocast; CPU autocast takes the same dtype paths (a mask-token scatter once
    mixed float32 and bfloat16 there and failed only on the GPU)."""
    from fourds_ros.model import EncoderConfig
    from fourds_ros.model.encoder import VideoEncoder
    from offline_training.config import MaeSection
    from offline_training.objectives import MaskedAutoencoder
    encoder = VideoEncoder(EncoderConfig.from_size("mu"), (2, 2, 2))
    mae = MaskedAutoencoder(encoder, MaeSection(mask_ratio=0.75, decoder=decoder, decoder_width=32, decoder_layers=1,
                                                decoder_heads=2))
    batch = {"video": torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8),
             "keep_index": torch.tensor([[0, 5], [3, 6]])}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = mae(batch)
    loss.backward()
    assert torch.isfinite(loss) and mae.mask_token.grad is not None


def test_linear_decoder_pretraining_lowers_the_loss(tmp_path):
    run_training("pretrain", tmp_path / "linear", "mae.decoder=linear")
    curve = losses(tmp_path / "linear")
    assert curve[8] < 0.9 * curve[1], curve


def test_distillation_student_learns_and_exports(tmp_path):
    run_training("pretrain", tmp_path / "teacher", "model.size=Ti", "steps=2", "mae.decoder_width=32")
    student = tmp_path / "student"
    run_training("distill", student, f"distill.teacher={tmp_path / 'teacher' / 'model'}", "steps=12",
                 "distill.student_mask_ratio=0.5", "optim.lr=3e-3")
    curve = losses(student)
    assert np.mean([curve[s] for s in (10, 11, 12)]) < 0.8 * np.mean([curve[s] for s in (1, 2, 3)]), curve
    model = load_model_dir(student / "model")
    assert model.config.encoder.hidden_size == 32  # the mu student, not the Ti teacher
    from fourds_ros.runtime import create_backend
    backend = create_backend("onnxruntime", student / "model")
    window = np.zeros(backend.spec.video_shape, np.uint8)
    assert np.isfinite(backend.run(window)["depth"]).all()


def test_readout_training_on_synthetic_shards(tmp_path):
    from fourds_ros.synthetic.generator import generate
    from fourds_ros.synthetic.writers import write_shard
    for seed in (1, 2):
        write_shard(generate(seed, frames=12, height=48, width=64, num_points=24), tmp_path / "shards" / f"{seed}.npz")
    out = tmp_path / "readouts"
    run_training("readouts", out, f"data.sources=[{tmp_path / 'shards'}]", "steps=16", "optim.lr=2e-3",
                 "readouts.finetune_encoder=true")
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert {"loss_depth", "loss_pose", "loss_points", "loss_boxes"} <= set(records[0])
    first = np.mean([r["loss"] for r in records[:3]])
    last = np.mean([r["loss"] for r in records[-3:]])
    assert last < 0.8 * first, (first, last)
    assert torch.isfinite(next(iter(load_model_dir(out / "model").state_dict().values()))).all()


def test_readout_training_with_the_encoder_fine_tuned_resumes_exactly(tmp_path):
    """The readouts read the feature list at 0.95 of its depth, so the last blocks get no gradient and AdamW
    keeps no state for them: resuming must not ask the checkpoint for state it never had."""
    from fourds_ros.synthetic.generator import generate
    from fourds_ros.synthetic.writers import write_shard
    write_shard(generate(1, frames=12, height=48, width=64, num_points=24), tmp_path / "shards" / "1.npz")
    common = [f"data.sources=[{tmp_path / 'shards'}]", "optim.lr=2e-3", "readouts.finetune_encoder=true"]
    run_training("readouts", tmp_path / "straight", *common)
    run_training("readouts", tmp_path / "resumed", *common, "stop_after=4")
    result = run_training("readouts", tmp_path / "resumed", *common)
    assert "resuming from" in result.stdout and "step_00000004" in result.stdout
    reference, again = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    for step in range(5, 9):
        assert again[step] == pytest.approx(reference[step], rel=1e-6, abs=1e-7), step
    straight = load_model_dir(tmp_path / "straight" / "model").state_dict()
    resumed = load_model_dir(tmp_path / "resumed" / "model").state_dict()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


@pytest.mark.parametrize("source", [(48, 64), (36, 64), (64, 64)])  # 4:3, 16:9 and square cameras
def test_training_crops_keep_the_clips_aspect_ratio_whatever_the_camera(source):
    from offline_training.data import ClipDataset, Sequence
    frames = np.zeros((4, *source, 3), np.uint8)
    dataset = ClipDataset([Sequence("camera", frames)], frames=2, size=(24, 32), crop_scale=(0.6, 1.0))
    for position in range(20):
        x0, y0, cw, ch = dataset._crop(np.random.default_rng(position), *source)
        assert 0 <= x0 and x0 + cw <= source[1] and 0 <= y0 and y0 + ch <= source[0]
        assert abs(cw / ch - 32 / 24) < 0.06, (cw, ch)


def test_sources_too_small_or_too_short_for_the_clip_are_named(caplog):
    from offline_training.data import ClipDataset, DataError, Sequence
    tiny = Sequence("phone.mp4", np.zeros((8, 10, 14, 3), np.uint8))
    with pytest.raises(DataError, match=r"smaller than half the 24x32 clip: phone.mp4 \(10x14\)"):
        ClipDataset([tiny, Sequence("ok", np.zeros((8, 24, 32, 3), np.uint8))], frames=2, size=(24, 32))
    with caplog.at_level("WARNING", logger="offline_training.data"):
        dataset = ClipDataset([Sequence("long", np.zeros((8, 24, 32, 3), np.uint8)),
                               Sequence("blip", np.zeros((1, 24, 32, 3), np.uint8))], frames=2, size=(24, 32))
    assert len(dataset) == 7 and "blip" in caplog.text


def test_a_larger_clip_starts_from_a_smaller_models_weights(tmp_path):
    """model.init_from at another clip size: the position and query tables are resampled, every other weight kept."""
    from offline_training.config import load_train_config
    from offline_training.trainer import build_model
    from fourds_ros.model import save_model_dir
    small = build_model(load_train_config(TINY, [f"out_dir={tmp_path}"]))
    save_model_dir(small, tmp_path / "small")
    large = build_model(load_train_config(TINY, [f"out_dir={tmp_path}", "model.clip=[4,32,48]",
                                                 f"model.init_from={tmp_path / 'small'}"]))
    assert tuple(large.encoder.pos_embed.shape[:3]) == (2, 2, 3)
    theirs, ours = small.state_dict(), large.state_dict()
    kept = [k for k in ours if theirs[k].shape == ours[k].shape]
    assert all(torch.equal(ours[k], theirs[k]) for k in kept) and "encoder.blocks.0.attn.qkv.weight" in kept
    from fourds_ros.model.fourds import resize_tables
    resized = resize_tables(theirs, small.config, large.config)
    assert torch.equal(ours["encoder.pos_embed"], resized["encoder.pos_embed"])  # carried over, not re-drawn


def test_self_supervision_on_unlabelled_video_mixed_with_synthetic_shards(tmp_path):
    """`selfsup`: a video with no labels and no intrinsics (said by name until a field of view is assumed), and a
    synthetic shard whose ground truth keeps the scale; photometric and supervised terms both train."""
    import cv2
    from fourds_ros.synthetic.generator import generate
    from fourds_ros.synthetic.writers import write_shard
    write_shard(generate(1, frames=12, height=48, width=64, num_points=24), tmp_path / "data" / "shard.npz")
    unlabelled = generate(2, frames=12, height=48, width=64, num_points=4).rgb
    writer = cv2.VideoWriter(str(tmp_path / "data" / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for rgb in unlabelled:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    common = ["-m", "offline_training", "selfsup", "--config", str(TINY), "--no-progress",
              "--set", f"data.sources=[{tmp_path / 'data'}]", "--set", f"out_dir={tmp_path / 'selfsup'}"]
    result = subprocess.run([sys.executable, *common], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2 and "walk.avi: no camera intrinsics" in result.stderr, result.stderr[-2000:]
    out = tmp_path / "selfsup"
    run_training("selfsup", out, f"data.sources=[{tmp_path / 'data'}]", "data.horizontal_fov_deg=60", "steps=16",
                 "optim.lr=2e-3", "readouts.finetune_encoder=true")
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert {"loss_photometric", "loss_depth", "photometric_kept"} <= set().union(*records)
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["loss_photometric"]) for r in records)
    first = np.mean([r["loss"] for r in records[:3]])
    last = np.mean([r["loss"] for r in records[-3:]])
    assert last < first, (first, last)
    assert torch.isfinite(next(iter(load_model_dir(out / "model").state_dict().values()))).all()


def test_bad_configs_fail_clearly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "offline_training", "distill", "--config", str(TINY)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2 and "distill.teacher" in result.stderr
    result = subprocess.run([sys.executable, "-m", "offline_training", "pretrain", "--config", str(TINY),
                             "--set", "optim.lr=fast"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2 and "optim.lr: expected a number" in result.stderr
    result = subprocess.run([sys.executable, "-m", "offline_training", "pretrain", "--config", str(TINY),
                             "--set", f"data.sources=[{tmp_path / 'nothing'}]"], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 2 and "does not exist" in result.stderr
    result = subprocess.run([sys.executable, "-m", "offline_training", "pretrain", "--config", str(TINY),
                             "--set", "mae.decoder=conv"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2 and "mae.decoder must be one of linear, transformer" in result.stderr
    # A diverging run stops at the step that failed, names the checkpoint to go back to, saves nothing after it.
    out = tmp_path / "diverging"
    result = subprocess.run([sys.executable, "-m", "offline_training", "pretrain", "--config", str(TINY), "--no-progress",
                             "--set", f"out_dir={out}", "--set", "optim.lr=1e12", "--set", "optim.grad_clip=1e30",
                             "--set", "checkpoint_every=1"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2 and "the loss is not finite at step" in result.stderr, result.stderr[-2000:]
    step = int(result.stderr.split("not finite at step ")[1].split()[0])
    saved = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert saved[-1] == f"step_{step - 1:08d}" and f"saved before it: {out / 'checkpoints' / saved[-1]}" in result.stderr
    assert not (out / "model").exists() and "Traceback" not in result.stderr
