"""The Mosaic GPU GEMM engine shared by the float and 8-bit GEMM ops."""
