"""Where offline `embed()` spends its time: tokenizing, laying out, the device, and how much of it overlaps.

    python -m bench.embed_profile --model DIR [--plans fp16,full_int8] [--n 16384] [--batch-size 256]

On real SST-2 sentences (as bench/serve.py's offline run: dev and train, sampled with seed 0, truncated at 128
tokens), per plan, each the best of `--passes`:
  - tokenize: the tokenizer front end's `encode` of every text as `embed()` calls it (no offsets);
  - layout: `_layouts`, which tokenizes, sorts by length and pads (or packs) every batch, with nothing run;
  - device: every batch's executable called on device-resident inputs back to back, one wait at the end (what
    the GPU needs when the host never makes it wait);
  - embed, serial: `embed()` reading each batch back before the next is dispatched (`IN_FLIGHT = 0`);
  - embed: `embed()` as shipped (`samp_jax.model.IN_FLIGHT` batches dispatched ahead).
and, where sentence-transformers is installed, its fp16 `encode` at the same batch size, on the GPU.
Throughputs are texts per second; records go to OUT/embed_profile.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead


from bench._timing import commit, device_name, today, write_records
from bench.serve import _sample, read_texts


def best_s(fn, passes: int) -> float:
    times = []
    for _ in range(passes):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def profile_plan(folder: Path, plan: str, texts: list[str], batch_size: int, passes: int) -> dict:
    import jax

    import samp_jax
    from samp_jax import model as model_module
    from samp_jax.model import SampModel
    from samp_jax.packing import PackedBatch
    from samp_jax.plan import Plan

    model = samp_jax.load(folder, plan="fp32")
    if model.plan != Plan.parse(plan, model.config.num_layers):  # 8-bit plans: max ranges on 512 of the texts
        from samp_jax.calibration import calibrate

        scales = calibrate(model, texts[:512], "max", max_length=128)
        model = SampModel(dataclasses.replace(model.checkpoint, scales=scales), plan)
    kw = dict(batch_size=batch_size, truncation=True, max_length=128, progress=False)
    model.embed(texts, **kw)  # compiles every shape these texts need
    tok = model._tokenizer()
    layouts = list(model._layouts(texts, None, **kw, offsets=False))
    on_device = []
    for _, _, b in layouts:
        if isinstance(b, PackedBatch):
            arrays = (b.input_ids, b.segment_ids, b.token_type_ids)
            fn = model.executable("embed", *b.input_ids.shape, packed=True)
        else:
            arrays = (b.input_ids, b.attention_mask, b.token_type_ids)
            fn = model.executable("embed", *b.input_ids.shape)
        on_device.append((fn, jax.device_put(arrays)))

    def device() -> None:
        outs = [fn(model._params, *a) for fn, a in on_device]
        jax.block_until_ready(outs)

    def serial() -> None:
        saved = model_module.IN_FLIGHT
        model_module.IN_FLIGHT = 0
        try:
            model.embed(texts, **kw)
        finally:
            model_module.IN_FLIGHT = saved

    n = len(texts)
    rec = dict(implementation="samp-jax", plan=plan, texts=n, batch_size=batch_size, batches=len(layouts),
               packed_batches=sum(isinstance(b, PackedBatch) for _, _, b in layouts),
               in_flight=model_module.IN_FLIGHT)
    for name, fn in [("tokenize", lambda: tok.encode(texts, truncation=True, max_length=128, offsets=False)),
                     ("layout", lambda: list(model._layouts(texts, None, **kw, offsets=False))), ("device", device),
                     ("embed_serial", serial), ("embed", lambda: model.embed(texts, **kw))]:
        s = best_s(fn, passes)
        rec[f"{name}_s"] = round(s, 4)
        rec[f"{name}_texts_per_s"] = round(n / s)
    return rec


def profile_st(folder: Path, texts: list[str], batch_size: int, passes: int) -> dict | None:
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    st = SentenceTransformer(str(folder), device="cuda")
    st.half()
    st.max_seq_length = 128

    def encode() -> None:
        st.encode(texts, batch_size=batch_size, convert_to_numpy=True)
        torch.cuda.synchronize()

    encode()
    s = best_s(encode, passes)
    return dict(implementation="sentence-transformers fp16", plan="fp16", texts=len(texts), batch_size=batch_size,
                embed_s=round(s, 4), embed_texts_per_s=round(len(texts) / s))


def main() -> None:
    from samp_jax.default_model import default_data_dir, default_model_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="a Hugging Face folder (default: the embedded MiniLM)")
    ap.add_argument("--plans", default="fp16,full_int8")
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=None, help="datasets (default: $SAMP_DATA, then ../shared/data)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    folder = args.model or default_model_dir()
    texts = _sample(read_texts(args.data_dir or default_data_dir()), args.n)
    records = []
    meta = dict(model=folder.name, device=device_name(), commit=commit(), date=today())
    for plan in args.plans.split(","):
        records.append({**meta, **profile_plan(folder, plan, texts, args.batch_size, args.passes)})
        print(records[-1], flush=True)
        write_records(records, args.out / "embed_profile.json")  # each plan's as it ends: a cut run keeps them
    st = profile_st(folder, texts, args.batch_size, args.passes)
    if st is not None:
        records.append({**meta, **st})
        print(records[-1], flush=True)
    write_records(records, args.out / "embed_profile.json")
    print(f"\n{'texts/s':<28}" + "".join(f"{k:>14}" for k in ("tokenize", "layout", "device", "embed_serial", "embed")))
    for r in records:
        print(f"{r['implementation'] + ' ' + r['plan']:<28}" + "".join(
            f"{r.get(k + '_texts_per_s', '-'):>14}" for k in ("tokenize", "layout", "device", "embed_serial", "embed")))


if __name__ == "__main__":
    main()
