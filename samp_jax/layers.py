"""Parameter-holding Flax building blocks that compute through `pallas_kernels` ops.

They declare parameters and call ops; they never pick a kernel. Float
parameters are used in the dtype they arrive in (the runtime casts them once
per plan); quantized GEMMs take weights packed by `samp_jax.quant.build`
(8-bit codes K-major with their epilogue vectors), never initialized here.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import pallas_kernels as ops

_init = nn.initializers.normal(stddev=0.02)


def built_param(module: nn.Module, name: str):
    """A parameter that `samp_jax.quant.build` made (quantized kernels, scales); never initialized."""
    value = module.get_variable("params", name)
    if value is None:
        raise ValueError(
            f"missing parameter {'/'.join(module.path)}/{name}: quantized parameters are built from a float "
            "checkpoint by samp_jax.quant.build, not initialized"
        )
    return value


class Dense(nn.Module):
    """`x @ kernel + bias` with an optional fused activation.

    `partial_sums=True` returns `[P, ..., features]` for the residual LayerNorm
    to sum: its sum over the first axis is `x @ kernel + bias` (a split-K
    GEMM's partial products on few rows, the bias in the first; else P = 1).
    """

    features: int
    activation: str | None = None
    implementation: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, partial_sums: bool = False, out_dtype=None):
        kernel = self.param("kernel", _init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return ops.matmul(
            x, kernel, bias, activation=self.activation, out_dtype=out_dtype, partial_sums=partial_sums,
            implementation=self.implementation,
        )


class QuantDense(nn.Module):
    """8-bit GEMM on a packed weight: `act((x_q @ w_q) * x_scale * w_scale + bias)` [-> requantized].

    `samp_jax.quant.build` packs the weight with the scale of the activation it
    multiplies and, where the next consumer reads 8-bit data, the output scale.
    `x_q` arrives as codes, quantized by its producer with that same scale.
    `partial_sums=True` returns `[P, ..., features]` partial products as
    `Dense` does, for the residual LayerNorm to sum.
    """

    features: int
    qtype: str
    activation: str | None = None
    implementation: str | None = None

    @nn.compact
    def __call__(self, x_q, *, partial_sums: bool = False, out_dtype=jnp.float32):
        packed = built_param(self, "packed")
        return ops.quantized_matmul_packed(x_q, packed, activation=self.activation, out_dtype=out_dtype,
                                           partial_sums=partial_sums, implementation=self.implementation)


class LayerNorm(nn.Module):
    """Residual LayerNorm: `LayerNorm(x + x_bias + residual)` through the fused op.

    `x` may be a GEMM's `[P, ..., H]` partial products (`partial_sums=True`)."""

    hidden_size: int
    eps: float
    implementation: str | None = None

    def setup(self) -> None:
        self.scale = self.param("scale", nn.initializers.ones_init(), (self.hidden_size,), jnp.float32)
        self.bias = self.param("bias", nn.initializers.zeros_init(), (self.hidden_size,), jnp.float32)

    def __call__(self, x, residual=None, *, x_bias=None, out_dtype=None, residual_scale=None, out_scale=None,
                 out_qtype=None, with_float: bool = False, partial_sums: bool = False):
        return ops.residual_layer_norm(
            x, residual, self.scale, self.bias, x_bias=x_bias, eps=self.eps, out_dtype=out_dtype,
            residual_scale=residual_scale, out_scale=out_scale, out_qtype=out_qtype, with_float=with_float,
            partial_sums=partial_sums, implementation=self.implementation,
        )

