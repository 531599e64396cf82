#!/usr/bin/env bash
# One device call of host-path and kernel-family measurements, from the repository root:
#   1. bench/embed_profile.py: offline embed() split into tokenizing, layout, device and overlap, all-MiniLM-L6-v2
#      (real weights) and all-mpnet-base-v2 (its configs with random weights: speed only), fp16 and full_int8,
#      beside sentence-transformers fp16 (issue 25);
#   2. bench/latency.py at 1/32/128 x 128: fp16 against full_int8 per tensor and with outlier migration
#      (`full_int8,smooth:0.9`), single and queued, after each plan's check against its XLA path (issue 28);
#   3. bench/packing.py --breakdown: uniform 128 x 128 device time by kernel family, padded against packed (issue 27);
#   4. bench/serve_lone.py: a lone short request through the executable, embed(), the engine and HTTP (issue 25);
#   5. command buffers (issue 26): fp16 / full_int8 single-call latency at 1x32, 1x128 and 8x128 with XLA's
#      defaults, then with Pallas's Triton calls named command-buffer capturable (jax-ml/jax#27988's flag;
#      XLA versions without the flag refuse to start, which the log shows) and a graph of any size;
#   6. attention tiles for packed rows (issue 27): bench/kernels.py's attention sweep with segment ids, full-length
#      rows (one sequence a row, where the 8-bit kernel lost 44% to segments at 128 x 128) and four a row.
# Carry [".carry_serve"] (bench/serve_gpu.sh says how it is made: minilm/, mpnet/ configs, data/sst2, wheels/).
# Usage (device tool): SAMP_COMMIT=$(git rev-parse --short HEAD) bash bench/profile_gpu.sh; PARTS="1 3" picks parts.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
CARRY=${CARRY:-.carry_serve}
OUT=${OUT:-$(mktemp -d)}
PARTS=${PARTS:-"1 2 3 4"}
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -m pip install -q --no-index --find-links "$CARRY/wheels" --no-compile --no-cache-dir \
    starlette uvicorn orjson httptools httpx prometheus-client sentence-transformers 2>&1 | tail -2

for part in $PARTS; do
  case $part in
  1)
    echo "== 1. embed profile"
    rm -rf /tmp/mpnet-random && cp -r "$CARRY/mpnet" /tmp/mpnet-random && python3 -m bench._models --random /tmp/mpnet-random >/dev/null
    for m in "$CARRY/minilm" /tmp/mpnet-random; do
      timeout -k 10 ${EMBED_TIMEOUT:-150} python3 -m bench.embed_profile --model "$m" --data-dir "$CARRY/data" \
          --out "$OUT/embed_$(basename "$m")" 2>&1 | grep -v "it/s\]$\|batch/s\]" | tail -5
    done ;;
  2)
    echo "== 2. smoothed full_int8 latency"
    timeout -k 10 ${LAT_TIMEOUT:-200} python3 bench/latency.py --batches 1,32,128 --seqs 128 \
        --plans "fp16;full_int8;full_int8,smooth:0.9" --pipelined --no-torch --out "$OUT/latency" 2>&1 | tee "$OUT/latency.log" |
        grep -E "check|FAILED|x 128|latency ms|Error|error" ;;
  3)
    echo "== 3. packing breakdown"
    timeout -k 10 ${PACK_TIMEOUT:-150} python3 -m bench.packing --breakdown --sets uniform --out "$OUT/packing" 2>&1 | tee "$OUT/packing_breakdown.log" |
        grep -v "it/s\]$" | tail -40 ;;
  4)
    echo "== 4. lone request"
    timeout -k 10 ${LONE_TIMEOUT:-120} python3 -m bench.serve_lone --model "$CARRY/minilm" --data-dir "$CARRY/data" \
        --out "$OUT/lone" 2>&1 | grep -v "^   |" | tail -28 ;;
  5)
    echo "== 5. command buffers"
    for v in default triton; do
      flags=""
      [ $v = triton ] && flags='--legacy_command_buffer_custom_call_targets=__gpu$xla.gpu.triton --xla_gpu_graph_min_graph_size=1'
      XLA_FLAGS="${XLA_FLAGS:-} $flags" timeout -k 10 ${CB_TIMEOUT:-120} python3 bench/latency.py --batches 1,8 \
          --seqs 32,128 --plans fp16,full_int8 --no-torch --no-check --out "$OUT/cb_$v" --run "cb_$v" 2>&1 |
          grep -E "FAILED|x 32|x 128|latency ms|Error|error|nknown" | sed "s/^/  $v: /"
    done ;;
  6)
    echo "== 6. attention tiles with segments"
    for k in 1 4; do
      timeout -k 10 ${ATTN_TIMEOUT:-150} python3 bench/kernels.py --sections attention --sweep --attention-segments $k \
          --out "$OUT/attention_seg$k" 2>&1 | grep -E "^attention|^best sweep|FAILED" | sed "s/^/  segments $k: /"
    done ;;
  esac
  echo "part $part done at ${SECONDS} s"
done
