"""Sampling experiments: scenario presets, side-by-side compare and batch runs."""
