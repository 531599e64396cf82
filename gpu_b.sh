#!/bin/bash
# session 6, call 2: where the time goes at 128x128, then wall time, compiled once through the cache
export PYTHONPATH=$PWD SAMP_COMMIT=79cb86d
mkdir -p $OUT/bd $OUT/lat
timeout 330 python bench/latency.py --breakdown 128x128 --no-check --plans fp16,ffn_int8,full_int8,full_fp8 \
  --cache build/jax_cache --out $OUT/bd 2>&1 | grep -v Warning | tail -45
timeout 240 python bench/latency.py --batches 128 --seqs 128 --compile-shapes 128x128 --no-check \
  --plans fp16,ffn_int8,full_int8,ffn_fp8,full_fp8 --cache build/jax_cache --out $OUT/lat 2>&1 | grep -v Warning | tail -14
