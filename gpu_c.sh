#!/bin/bash
# session 6, call 3: LayerNorm tile sweep, GPU tests of LayerNorm and the whole-encoder parity (codes between layers)
export PYTHONPATH=$PWD SAMP_COMMIT=5b7b819
timeout 150 python bench/kernels.py --sections copy,layer_norm --sweep --out $OUT 2>&1 | grep -v "^  layer_norm-sweep" | tail -14
python - <<'PY'
import json, os
recs = json.load(open(os.environ["OUT"] + "/kernels.json"))
for r in sorted(recs, key=lambda r: (r["implementation"], r["median_ms"]))[:60]:
    print(r["kernel"], r["implementation"], r["median_ms"], r.get("gbps"), r.get("equal", r.get("rel_err")), r.get("config"))
PY
timeout 400 python -m pytest -q -m gpu pallas_kernels/layer_norm tests/test_gpu_parity.py 2>&1 | tail -8
