"""Parameter-holding Flax building blocks that compute through `pallas_kernels` ops.

They declare parameters and call ops; they never pick a kernel. Parameters are
used in the dtype they arrive in (the runtime casts them once per plan), and
activations keep the compute dtype of the input.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import pallas_kernels as ops

_init = nn.initializers.normal(stddev=0.02)


class Dense(nn.Module):
    """`x @ kernel + bias` with an optional fused activation.

    `defer_bias=True` returns `(x @ kernel, bias)` so that the next fused op
    (the residual LayerNorm) adds the bias in its epilogue.
    """

    features: int
    activation: str | None = None
    implementation: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, defer_bias: bool = False, out_dtype=None):
        kernel = self.param("kernel", _init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        if defer_bias:
            y = ops.matmul(x, kernel, None, out_dtype=out_dtype, implementation=self.implementation)
            return y, bias
        return ops.matmul(
            x, kernel, bias, activation=self.activation, out_dtype=out_dtype,
            implementation=self.implementation,
        )


class LayerNorm(nn.Module):
    """Residual LayerNorm: `LayerNorm(x + x_bias + residual)` through the fused op."""

    hidden_size: int
    eps: float
    implementation: str | None = None

    def setup(self) -> None:
        self.scale = self.param("scale", nn.initializers.ones_init(), (self.hidden_size,), jnp.float32)
        self.bias = self.param("bias", nn.initializers.zeros_init(), (self.hidden_size,), jnp.float32)

    def __call__(self, x, residual=None, *, x_bias=None, out_dtype=None) -> jax.Array:
        return ops.residual_layer_norm(
            x, residual, self.scale, self.bias, x_bias=x_bias, eps=self.eps,
            out_dtype=out_dtype, implementation=self.implementation,
        )
