"""Offline training: sharded MAE pretraining, distillation into a small student, readout training."""
