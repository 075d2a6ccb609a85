"""Inference: the tiled predictor, reading model windows, blending overlapping windows, test-time
augmentation."""
