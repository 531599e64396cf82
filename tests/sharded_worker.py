"""Run in a fresh process with `XLA_FLAGS=--xla_force_host_platform_device_count=4` (tests/test_sharding.py):
every plan of a tiny classifier and a bare encoder on 4 devices against the same plan on one, printed as
one JSON object of largest differences and agreements. Not collected by pytest (no test_ prefix)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from convert import convert_hf_checkpoint
from samp_jax.calibration import calibrate
from samp_jax.model import SampModel
from samp_jax.serving.forwards import Forwards
from samp_jax.serving.jobs import POOLED
from tests.conftest import FALLBACK_SENTENCES, make_hf_model, random_batch

PLANS = ("fp32", "bf16", "fp16", "ffn_int8", "full_int8", "full_int8,probs:int8", "ffn_fp8", "full_fp8",
         "ffn_int8:0,full_fp8:1")


def _checkpoint(arch: str, tokenizer: Path, folder: Path):
    make_hf_model(folder, arch, tokenizer_from=tokenizer, seed=7)
    ckpt = convert_hf_checkpoint(folder)
    ckpt.scales = calibrate(SampModel(ckpt, "fp32"), FALLBACK_SENTENCES, "max", progress=False)
    return ckpt


def _diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def main() -> None:
    tokenizer = Path(sys.argv[1])
    out: dict = {"devices": jax.device_count()}
    tmp = Path(tempfile.mkdtemp())
    clf = _checkpoint("BertForSequenceClassification", tokenizer, tmp / "clf")
    enc = _checkpoint("BertModel", tokenizer, tmp / "enc")
    texts = FALLBACK_SENTENCES[:7]  # 7 texts in batches of 3: the last batch has one row for four devices
    for plan in PLANS:
        one, four = SampModel(clf, plan), SampModel(clf, plan, devices=4)
        row: dict = {}
        for batch in (5, 13):  # uneven: padded to 8 and 16 rows
            ids, mask, types = random_batch(clf.config.vocab_size, [12, 7, 3, 12, 9] * 3, 12, 0, seed=batch)
            ids, mask, types = ids[:batch], mask[:batch], types[:batch]
            row[f"head_{batch}"] = _diff(one(ids, mask, types), four(ids, mask, types))
            row[f"hidden_{batch}"] = _diff(one.hidden_states(ids, mask, types), four.hidden_states(ids, mask, types))
        p1, p4 = one.predict(texts, batch_size=3), four.predict(texts, batch_size=3)
        row["labels_equal"] = [a["label"] for a in p1] == [b["label"] for b in p4]
        row["scores"] = max(abs(a["score"] - b["score"]) for a, b in zip(p1, p4))
        served = Forwards({"m": four}).get("m", "head", 2, 16)  # 2 rows on 4 devices: padded to 4
        ids, mask, types = random_batch(clf.config.vocab_size, [16, 5], 16, 0, seed=3)
        row["served_head"] = _diff(one(ids, mask, types), np.asarray(served(ids, mask, types))[:2])
        e1, e4 = SampModel(enc, plan), SampModel(enc, plan, devices=4)
        row["embed"] = _diff(e1.embed(texts, batch_size=3), e4.embed(texts, batch_size=3))
        pooled = Forwards({"e": e4}).get("e", POOLED, 4, 16)
        want = Forwards({"e": e1}).get("e", POOLED, 4, 16)
        ids, mask, types = random_batch(enc.config.vocab_size, [16, 5, 9, 1], 16, 0, seed=4)
        row["served_pooled"] = _diff(want(ids, mask, types), pooled(ids, mask, types))
        out[plan] = row
    print(json.dumps(out))


if __name__ == "__main__":
    main()
