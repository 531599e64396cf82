"""samp-jax benchmarks. Run each from the repository root as `python -m bench.NAME` (or `python bench/NAME.py`).

The folder is a package so that its modules are imported as `bench.NAME`: none of them is ever put on
`sys.path` under a bare name, where one (`kernels`, say) would shadow an installed package.
"""
