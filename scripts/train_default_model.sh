#!/usr/bin/env bash
# The exact commands that trained models/default (CPU, 2 cores). Held-out seeds start at 1000.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export MUJOCO_GL=egl OMP_NUM_THREADS=2
py=${PYTHON:-.venv/bin/python}
cfg=config/training/default.yaml
# 1. Training data: 48 synthetic sequences (seeds 0-47), 96 frames at 96x128.
mkdir -p data/synthetic/train
for seed in $(seq 0 47); do
  [[ -f data/synthetic/train/$seed.npz ]] || $py -m fourds_ros.cli synth --seed "$seed" --frames 96 --size 96x128 \
      --shard data/synthetic/train/$seed.npz > /dev/null
done
# 2. MAE pretraining of a ViT-S teacher (95% masking in the paper; 90% at this tiny token count), FSDP2.
$py -m offline_training pretrain --config $cfg --no-progress --set out_dir=runs/default/teacher \
    --set model.size=S --set steps=1500
# 3. Distillation of the teacher's readout features into the ViT-Ti student.
$py -m offline_training distill --config $cfg --no-progress --set out_dir=runs/default/student \
    --set distill.teacher=runs/default/teacher/model --set steps=1500 --set distill.student_mask_ratio=0.5
# 4. Readouts (depth, pose, points, boxes) on the synthetic ground truth, encoder fine-tuned.
$py -m offline_training readouts --config $cfg --no-progress --set out_dir=runs/default/readouts \
    --set model.init_from=runs/default/student/model --set steps=4000 --set optim.lr=3.0e-4
rm -rf models/default && mkdir -p models && cp -r runs/default/readouts/model models/default
for stage in teacher student readouts; do cp runs/default/$stage/train_log.jsonl models/default/train_log_$stage.jsonl; done
