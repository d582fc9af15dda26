#!/usr/bin/env bash
# The photo-real, larger-clip candidate for the default model (models/default/README.md, "Retrained at 16x96x128:
# not shipped"). Starts from the shipped 16x64x64 model and writes runs/candidate/; models/default is not touched.
# Every stage resumes from its last checkpoint when re-run; raise STEPS to train further in another sitting.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export MUJOCO_GL=egl OMP_NUM_THREADS=2
py=${PYTHON:-.venv/bin/python}
steps=${STEPS:-1500}
# 1. Photo-real shards: 64 sequences (seeds 100-163), the camera varied per seed (aspect, field of view, motion,
#    sensor effects). Needs the photographs of scripts/install_assets.sh (ASSETS.md). Existing shards are kept.
$py -m fourds_ros.cli shards --seeds 100-163 --out data/synthetic/photo --style photo --vary-camera --no-progress
# 2. The 4:3 clip 16x96x128: the shipped model's position and query tables resampled (model.init_from), then the
#    readouts on photo-real and procedural shards (seeds 0-15 of scripts/train_default_model.sh), encoder fine-tuned.
$py -m offline_training readouts --config config/training/default.yaml --no-progress \
    --set out_dir=runs/candidate/readouts --set model.init_from=models/default --set "model.clip=[16,96,128]" \
    --set "data.sources=[data/synthetic/photo,data/synthetic/train]" --set steps="$steps" --set optim.lr=3.0e-4 \
    --set optim.warmup_steps=50 --set checkpoint_every=250
# 3. Photometric self-supervision (Monodepth2) on the eight unlabelled real clips of ../shared/real/unlabelled
#    (60-degree pinhole assumed), mixed with the same shards' supervised losses.
$py -m offline_training selfsup --config config/training/selfsup.yaml --no-progress \
    --set out_dir=runs/candidate/selfsup --set model.init_from=runs/candidate/readouts/model \
    --set "model.clip=[16,96,128]" \
    --set "data.sources=[data/synthetic/photo,data/synthetic/train,../shared/real/unlabelled]" \
    --set data.horizontal_fov_deg=60 --set steps=200 --set checkpoint_every=100 --set selfsup.photometric_weight=0.5
