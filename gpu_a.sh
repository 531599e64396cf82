#!/bin/bash
# session 6, call 1: attention sweep + GPU tests of the changed kernels
export PYTHONPATH=$PWD SAMP_COMMIT=23aa379
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 200 python bench/kernels.py --sections attention --sweep --out $OUT 2>&1 | grep -v "^  attention-sweep" | tail -60
python - <<'PY'
import json, os
recs = json.load(open(os.environ["OUT"] + "/kernels.json"))
for r in sorted(recs, key=lambda r: (r["implementation"], r["median_ms"])):
    print(r["kernel"], r["implementation"], r["median_ms"], r.get("equal", r.get("rel_err")), r.get("config"))
PY
timeout 300 python -m pytest -q -m gpu -x pallas_kernels/attention pallas_kernels/embedding pallas_kernels/quantized_attention 2>&1 | tail -8
