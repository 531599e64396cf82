"""Checkpoint conversion: Hugging Face folders -> samp-jax checkpoints; calibrated PyTorch amax -> `Scales`.

`convert` depends on samp_jax's core (checkpoint, config, heads, quant), never the reverse: within
samp_jax only the entry layer (`samp_jax.api`, whose `load` converts on the fly, and the command
line) imports it.
"""

from convert.hf_checkpoint import convert_hf_checkpoint, task_from_hf_config

__all__ = ["convert_hf_checkpoint", "task_from_hf_config"]
