#!/usr/bin/env bash
# One device call for two GPU benchmarks, from the repository root:
#   1. issue 30: bench/mesh.py, the one-device mesh path against the plain path (random BERT-base, fp16 and
#      full_int8, 1x128 / 32x128 / 128x128; about 2 minutes, stopped at MESH_TIMEOUT);
#   2. issue 25: bench/serve.py, `samp-jax serve` on all-MiniLM-L6-v2 fp16 and full_int8 under open-loop load
#      against sentence-transformers fp16, in the time left of TOTAL seconds (its --time-budget).
# The GPU machine has no network and no samp-jax install: what it lacks travels in .carry_serve (ignored; the
# call's carry names it), made on the CPU machine once:
#   .carry_serve/wheels/   cp312 manylinux wheels: starlette, uvicorn, orjson, httptools, and what they need
#                          (httpx, httpcore, h11, anyio, idna, certifi, click, typing_extensions,
#                          prometheus-client; each installed only where the machine's is missing or too
#                          old) and sentence-transformers (only where the machine has none)
#   .carry_serve/minilm/   the model folder with fp16 weights (python -m bench._models minilm .carry_serve/minilm)
#   .carry_serve/data/sst2/  dev.tsv and 8,000 sentences of train.tsv (the load's and calibration's texts)
#   .carry_serve/mpnet/    optional: all-mpnet-base-v2's configs and tokenizer only (python -m bench._models mpnet
#                          .carry_serve/mpnet --configs); its 219 MB of fp16 weights do not fit a call, so the
#                          machine draws random ones (bench._models --random): speed is real, accuracy is not
# MODELS: which of them to serve (default minilm; e.g. MODELS=mpnet); MESH=0 skips the mesh part.
# Usage (device tool, carry [".carry_serve"]): SAMP_COMMIT=$(git rev-parse --short HEAD) bash bench/serve_gpu.sh
# Records and logs go to $OUT (mesh/mesh.json, serve/*.json, serve/serve.png, mesh.log, serve.log); the two
# tables come last. On the CPU: SMOKE=1 (bench.mesh --tiny, bench.serve --smoke), with WHEELS and PYTHON set
# to wheels and an interpreter of this machine's Python.
set -u
export PYTHONUNBUFFERED=1
CARRY=${CARRY:-.carry_serve}
WHEELS=${WHEELS:-$CARRY/wheels}
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
TOTAL=${TOTAL:-540}           # seconds for the whole script (the device call's limit is 600)
MESH_TIMEOUT=${MESH_TIMEOUT:-170}
DEPS=${DEPS:-/tmp/pydeps}
mkdir -p "$OUT/mesh" "$OUT/serve"

echo "== setup"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
# What the machine lacks (Starlette, uvicorn, orjson, httptools), resolved against what it has: a package it
# has in a version that fits (httpx, anyio, h11, click, prometheus-client, ...) stays as it is, since its
# other packages (huggingface_hub) were installed against it. sentence-transformers only where it is missing.
# Where site-packages cannot be written, every carried wheel goes first on the path instead.
export PYTHONPATH=$PWD
$PY -m pip install --no-index --find-links "$WHEELS" --no-compile --no-cache-dir \
    starlette uvicorn orjson httptools httpx prometheus-client 2>&1 | grep -v "^Looking in\|^Processing" | cut -c1-160
if ! $PY -c "import starlette, uvicorn, httpx, prometheus_client" 2>/dev/null; then
  echo "  installing every carried wheel into $DEPS instead"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$DEPS" \
      $(ls "$WHEELS"/*.whl | grep -v sentence_transformers) || exit 1
  export PYTHONPATH=$PWD:$DEPS
fi
if ! $PY -c "import sentence_transformers" 2>/dev/null; then
  $PY -m pip install -q --no-index --find-links "$WHEELS" --no-compile --no-cache-dir sentence-transformers ||
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$DEPS" "$WHEELS"/sentence_transformers-*.whl
  case ":$PYTHONPATH:" in *":$DEPS:"*) ;; *) export PYTHONPATH=$PYTHONPATH:$DEPS ;; esac
fi
DEPS=$DEPS $PY - <<'PY' || exit 1
import importlib, os, jax
for name in ("starlette", "uvicorn", "httpx", "anyio", "prometheus_client", "orjson", "httptools", "uvloop",
             "sentence_transformers", "transformers", "torch", "flax", "orbax.checkpoint", "samp_jax.serving.server"):
    try:
        m = importlib.import_module(name)
        print(f"  {name} {getattr(m, '__version__', '')} {'(carried)' if (m.__file__ or '').startswith(os.environ['DEPS']) else ''}")
    except ImportError as e:
        print(f"  {name}: MISSING ({e})")
print("  jax", jax.__version__, jax.devices())
PY
echo "setup done at ${SECONDS} s"

echo "== 1. mesh (devices=1) against plain"
if [ "${MESH:-1}" = 0 ]; then MESH_TIMEOUT=0; echo "  skipped"; fi
if [ -n "${SMOKE:-}" ]; then MESH_ARGS="--tiny"; else MESH_ARGS=""; fi
[ "$MESH_TIMEOUT" -gt 0 ] && timeout -k 10 "$MESH_TIMEOUT" $PY -m bench.mesh $MESH_ARGS --out "$OUT/mesh" >"$OUT/mesh.log" 2>&1
echo "mesh exit $? at ${SECONDS} s"
grep -E "^device|converted|FAILED|Error" "$OUT/mesh.log" | head -20

echo "== 2. serve under load"
SPECS=""
for m in ${MODELS:-minilm}; do
  if [ "$m" = mpnet ]; then
    rm -rf /tmp/mpnet-random && cp -r "$CARRY/mpnet" /tmp/mpnet-random && $PY -m bench._models --random /tmp/mpnet-random || exit 1
    SPECS="$SPECS,mpnet-random-weights=/tmp/mpnet-random"
  else
    SPECS="$SPECS,$m=$CARRY/$m"
  fi
done
BUDGET=$((TOTAL - SECONDS - 45))   # bench.serve's share; what is left covers the offline runs' overrun and the tables
if [ -n "${SMOKE:-}" ]; then
  SERVE_ARGS="--smoke"
else
  SERVE_ARGS="--plans fp16,full_int8 --start-rate 100 --max-rate 6400 --duration 4 --load-procs 8 --lone 300 --offline-n 16384"
fi
timeout -k 20 $((BUDGET + 25)) $PY -m bench.serve --models "${SPECS#,}" --data-dir "$CARRY/data" \
    $SERVE_ARGS --time-budget "$BUDGET" --out "$OUT/serve" >"$OUT/serve.log" 2>&1
rc=$?
echo "serve exit $rc at ${SECONDS} s"
grep -E "^== |lone request|req/s offered|time budget|record:|start-up compile|Error|error:" "$OUT/serve.log" | cut -c1-200 | tail -60

echo "== tables"
sed -n '/^mesh (devices=1) against plain/,$p' "$OUT/mesh.log"
$PY -m bench.serve --plot "$OUT/serve" 2>&1 | tail -8
echo "done at ${SECONDS} s"
