"""Dot precision shared by the references."""

import jax
import jax.numpy as jnp


def dot_precision(dtype) -> jax.lax.Precision:
    """Full precision for float32 operands (no TF32 on GPUs), the default otherwise."""
    if jnp.dtype(dtype) == jnp.float32:
        return jax.lax.Precision.HIGHEST
    return jax.lax.Precision.DEFAULT
