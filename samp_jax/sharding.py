"""Data parallelism over the local devices: one `jax.sharding.Mesh` with a single `data` axis.

An encoder's rows never meet (each sequence attends only to itself, every GEMM and LayerNorm works
row by row), so a batch splits along its rows with no communication at all: the parameters are
replicated on every device, the ids, mask and token types are split into equal row blocks, and each
device runs the whole forward pass, Pallas kernels included, on its own block. The forward pass is
wrapped in `jax.shard_map`, so each device's program sees its local `[rows / n, seq]` shapes: the
kernels' tile choices and the XLA fallbacks are the ones of that local shape, and no custom call is
left to the SPMD partitioner (which would gather its operands). Outputs come back split the same way
and read as one `[rows, ...]` array.

Rows must divide evenly: `rows(batch)` rounds a batch up to a multiple of the device count, and the
model pads with masked rows that are cut off again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA = "data"

Devices = None | int | str | Sequence[Any] | Mesh


@dataclasses.dataclass(frozen=True, eq=False)
class DataParallel:
    """Rows of every batch split over the devices of `mesh` (one axis, `data`); parameters replicated."""

    mesh: Mesh

    def __post_init__(self) -> None:
        if tuple(self.mesh.axis_names) != (DATA,):
            raise ValueError(f"a data-parallel mesh has one axis named {DATA!r}; got axes {self.mesh.axis_names}")

    @classmethod
    def over(cls, devices: Devices) -> DataParallel | None:
        """The data-parallel layout for `devices`, or None for the plain single-device path.

        `devices`: None (one device, the default one: no mesh), "all" (every local device), an int n (the
        first n local devices), a sequence of `jax.Device`s, or a `Mesh` with one axis named "data".
        """
        if devices is None:
            return None
        if isinstance(devices, Mesh):
            return cls(devices)
        local = jax.local_devices()
        if isinstance(devices, str):
            if devices != "all":
                raise ValueError(f"devices={devices!r}: pass 'all', a device count, a list of devices or a Mesh")
            chosen = list(local)
        elif isinstance(devices, int) and not isinstance(devices, bool):
            if not 1 <= devices <= len(local):
                raise ValueError(f"devices={devices}: this process has {len(local)} local "
                                 f"{local[0].platform.upper()} device(s)")
            chosen = list(local[:devices])
        elif isinstance(devices, Sequence) and devices and all(isinstance(d, jax.Device) for d in devices):
            chosen = list(devices)
            if len(set(chosen)) != len(chosen):
                raise ValueError(f"devices={devices!r} names a device twice")
        else:
            raise ValueError(f"devices={devices!r}: pass 'all', a device count, a non-empty list of jax devices "
                             "or a Mesh")
        return cls(Mesh(chosen, (DATA,)))

    @property
    def size(self) -> int:
        """The number of devices the rows are split over."""
        return int(self.mesh.devices.size)

    def rows(self, batch: int) -> int:
        """`batch` rounded up to a whole number of rows on every device."""
        return -(-batch // self.size) * self.size

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    @property
    def split(self) -> NamedSharding:
        """Split along the first (row) axis."""
        return NamedSharding(self.mesh, P(DATA))

    def replicate(self, tree: Any) -> Any:
        """`tree` (the plan's parameters) copied onto every device of the mesh."""
        return jax.device_put(tree, self.replicated)

    def wrap(self, forward: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
        """`forward(params, ids, mask, types)` run per device on its block of rows, jitted with the
        parameters replicated and the inputs and output split by rows."""
        per_device = jax.shard_map(forward, mesh=self.mesh, in_specs=(P(), P(DATA), P(DATA), P(DATA)),
                                   out_specs=P(DATA), check_vma=False)
        return jax.jit(per_device, in_shardings=(self.replicated, self.split, self.split, self.split),
                       out_shardings=self.split)

    def input_spec(self, batch: int, seq: int) -> jax.ShapeDtypeStruct:
        """The abstract `[batch, seq]` int32 input, split by rows, that an executable is lowered for."""
        if batch % self.size:
            raise ValueError(f"batch={batch} does not split over {self.size} devices; use rows({batch})="
                             f"{self.rows(batch)}")
        return jax.ShapeDtypeStruct((batch, seq), jax.numpy.int32, sharding=self.split)
