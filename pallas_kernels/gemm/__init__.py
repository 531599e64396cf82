"""The Mosaic GPU GEMM engine under the float (`matmul`) and 8-bit (`quantized_matmul`) GEMM ops.

Configuration and tile choice (`config`, `tile_choice`: pure Python), the two schedules (`cooperative`,
`pingpong`), the epilogue (`epilogue`: its jnp math; `store`: in a kernel) and the launch (`launch.run_gemm`).
This package imports no op; the kernel modules import Mosaic GPU, so import them where it is available.
"""
