"""Parameter-holding Flax building blocks that compute through `pallas_kernels` ops.

They declare parameters and call ops; they never pick a kernel. Float
parameters are used in the dtype they arrive in (the runtime casts them once
per plan); quantized GEMMs take weights packed by `samp_jax.quant.build`
(8-bit codes K-major with their epilogue vectors), never initialized here.
A module whose parameters a fused op reads (`pallas_kernels.fused`) exposes
them as attributes (`Dense(...).kernel`, `LayerNorm(...).scale`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import pallas_kernels as ops

_init = nn.initializers.normal(stddev=0.02)


def built_param(module: nn.Module, name: str):
    """A parameter that `samp_jax.quant.build` made (quantized kernels, scales); never initialized."""
    value: Any = module.get_variable("params", name)
    if value is None:
        raise ValueError(
            f"missing parameter {'/'.join(module.path)}/{name}: quantized parameters are built from a float "
            "checkpoint by samp_jax.quant.build, not initialized"
        )
    return value


class Dense(nn.Module):
    """`act(x @ kernel + bias)`: parameters `kernel` `[in_features, features]` and `bias` `[features]`."""

    in_features: int
    features: int
    activation: str | None = None

    def setup(self) -> None:
        self.kernel = self.param("kernel", _init, (self.in_features, self.features), jnp.float32)
        self.bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)

    def __call__(self, x: jax.Array, *, out_dtype=None) -> jax.Array:
        return ops.matmul(x, self.kernel, self.bias, activation=self.activation, out_dtype=out_dtype)


class QuantDense(nn.Module):
    """8-bit GEMM on a packed weight: `act((x_q @ w_q) * x_scale * w_scale + bias)` [-> requantized].

    `samp_jax.quant.build` packs the weight (parameter `packed`) with the scale of the activation it
    multiplies and, where the next consumer reads 8-bit data, the output scale. `x_q` arrives as codes,
    quantized by its producer with that same scale.
    """

    qtype: str
    activation: str | None = None

    def setup(self) -> None:
        self.packed = built_param(self, "packed")

    def __call__(self, x_q: jax.Array, *, out_dtype=jnp.float32) -> jax.Array:
        return ops.quantized_matmul_packed(x_q, self.packed, activation=self.activation, out_dtype=out_dtype)


class LayerNorm(nn.Module):
    """LayerNorm parameters `scale` and `bias` `[hidden_size]`, read by the fused ops that normalize."""

    hidden_size: int
    eps: float

    def setup(self) -> None:
        self.scale = self.param("scale", nn.initializers.ones_init(), (self.hidden_size,), jnp.float32)
        self.bias = self.param("bias", nn.initializers.zeros_init(), (self.hidden_size,), jnp.float32)
