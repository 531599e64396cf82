"""Checkpoint conversion: Hugging Face folders -> samp-jax checkpoints."""

from convert.hf_checkpoint import convert_hf_checkpoint, task_from_hf_config

__all__ = ["convert_hf_checkpoint", "task_from_hf_config"]
