"""`QArray`: 8-bit values plus their scale, a frozen pytree dataclass.

Values and scale are pytree data; the qtype and the channel axis are static
metadata. The scale has the value's rank (size 1 on every axis but the channel
axis), so `values * scale` dequantizes by broadcasting.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import QTYPES, dequantize_values, qmax, quantize_values


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QArray:
    """Quantized tensor: `dequantize() == values * scale`.

    Attributes:
      values: int8/uint8 or float8_e4m3fn array.
      scale: float32, same rank as `values`; per-tensor when every dim is 1,
        else per channel along `channel_axis`.
      qtype: "int8", "uint8" or "fp8" (static).
      channel_axis: the axis the scale varies along, or None (static).
    """

    values: jax.Array
    scale: jax.Array
    qtype: str = dataclasses.field(metadata=dict(static=True))
    channel_axis: int | None = dataclasses.field(default=None, metadata=dict(static=True))

    def __post_init__(self) -> None:
        if self.qtype not in QTYPES:
            raise ValueError(f"unknown qtype={self.qtype!r}; known: {sorted(QTYPES)}")
        v, s = self.values, self.scale
        if not hasattr(v, "shape") or not hasattr(s, "shape"):
            return  # abstract leaves during tree transformations
        if len(s.shape) != len(v.shape):
            raise ValueError(f"scale.shape={s.shape} must have the rank of values.shape={v.shape}")
        for axis, (dv, ds) in enumerate(zip(v.shape, s.shape)):
            if ds != 1 and (axis != self.channel_axis or ds != dv):
                raise ValueError(
                    f"scale.shape={s.shape} does not fit values.shape={v.shape} with channel_axis={self.channel_axis}"
                )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def dequantize(self, dtype=jnp.float32) -> jax.Array:
        return dequantize_values(self.values, self.scale, dtype)


def scale_from_amax(amax, qtype: str) -> jax.Array:
    """`amax / qmax` as a normal float32.

    All-zero channels get `1 / qmax` (their scale is irrelevant; it stays finite). Below `qmax` float32
    normals, `amax / qmax` would be subnormal, which XLA on the CPU flushes to zero: `x / 0` made NaN codes
    (Hypothesis found [0, 1.8e-37]). Those scales are raised to the smallest normal, so the codes stay in range.
    """
    amax = jnp.asarray(amax, jnp.float32)
    top = qmax(qtype)
    return jnp.where(amax > 0, jnp.maximum(amax / top, jnp.finfo(jnp.float32).tiny), 1.0 / top)


def quantize(x: jax.Array, qtype: str, *, amax=None, channel_axis: int | None = None) -> QArray:
    """Symmetric quantization; amax defaults to max|x| (per channel when `channel_axis` is set)."""
    x = jnp.asarray(x, jnp.float32)
    if amax is None:
        reduce = tuple(a for a in range(x.ndim) if a != channel_axis) if channel_axis is not None else None
        amax = jnp.max(jnp.abs(x), axis=reduce, keepdims=True)
    amax = jnp.asarray(amax, jnp.float32)
    shape = [1] * x.ndim
    if channel_axis is not None:
        shape[channel_axis] = x.shape[channel_axis]
    scale = scale_from_amax(amax, qtype).reshape(shape)
    return QArray(quantize_values(x, scale, qtype), scale, qtype, channel_axis)


def quantize_weight(kernel, qtype: str, amax=None) -> QArray:
    """A `[K, N]` GEMM kernel per output channel (axis 1); `amax` `[N]` if imported."""
    if amax is not None:
        amax = np.asarray(amax, np.float32).reshape(1, -1)
        if amax.shape[1] != kernel.shape[1]:
            raise ValueError(f"weight amax has {amax.shape[1]} channels, the kernel {kernel.shape} has {kernel.shape[1]}")
    return quantize(kernel, qtype, amax=amax, channel_axis=1)


def fake_quant(x: jax.Array, scale: jax.Array, qtype: str) -> jax.Array:
    """Quantize then dequantize (same dtype as `x`): what a tensor looks like after an 8-bit hop."""
    return dequantize_values(quantize_values(x, scale, qtype), scale, x.dtype)
