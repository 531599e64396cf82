#!/usr/bin/env bash
# One device call that checks the kernel layer on the GPU: fp16 / full_int8 latency at 1x128 and 128x128,
# alternating a baseline tree and this one (PAIRS="base1 new1 new2 base2"), then the GPU tests (SUITE, -v so
# each test's result is in the log as it runs, even if the call's time runs out).
# The baseline tree travels as an ignored folder named in the call's carry, e.g.
#   mkdir -p .carry/base && git archive REV pallas_kernels samp_jax convert bench tests pyproject.toml | tar -x -C .carry/base
# Usage (device tool, carry [".carry"]): SUITE="tests/test_gpu_parity.py pallas_kernels" PAIRS="base1 new1" bash bench/gpu_suite.sh
# LAT_ARGS replaces the latency shapes and plans (default "--batches 1,128 --seqs 128 --plans fp16,full_int8").
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
for run in $PAIRS; do
  t=${run%%[0-9]*}; d=.; [ $t = base ] && d=${BASE_TREE:-.carry/base}
  echo "== $run"
  (cd $d && PYTHONPATH=$PWD timeout ${LAT_TIMEOUT:-150} python3 bench/latency.py ${LAT_ARGS:---batches 1,128 --seqs 128 --plans fp16,full_int8} --no-torch --no-check \
     --pipelined --out $OUT/$run --run $run 2>&1 | grep -E "FAILED|x 128|latency ms|Error" )
done
if [ -n "$SUITE" ]; then
  timeout ${TEST_TIMEOUT:-300} python3 -m pytest -v --tb=short -m gpu -p no:cacheprovider --maxfail=5 $SUITE 2>&1 | tee $OUT/gpu_tests.log | grep -E 'FAILED|ERROR| passed| failed|^E  ' | tail -60
fi
python3 - <<'PY'
import json, os, glob
out = os.environ["OUT"]; rows = {}
for f in sorted(glob.glob(f"{out}/*/latency.json")):
    for r in json.load(open(f)):
        if "median_ms" in r:
            run = r.get("run", "?")
            rows.setdefault((r["implementation"], r["mode"], r["batch"], r["seq"]), {}).setdefault(run.rstrip("0123456789"), []).append(r["median_ms"])
print(f"{'impl':<36}{'plan':<11}{'shape':<9}{'base':>18}{'new':>18}")
for k, v in sorted(rows.items()):
    print(f"{k[0]:<36}{k[1]:<11}{k[2]}x{k[3]:<6}" + "".join(f"{' / '.join(f'{x:.3f}' for x in v.get(t, [])):>18}" for t in ("base", "new")))
PY
