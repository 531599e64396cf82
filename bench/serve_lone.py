"""Where a lone small request's time goes: the executable, `embed()`, the engine, and HTTP on top.

    python -m bench.serve_lone --model DIR [--plan fp16] [--n 300]

One short text (at most 32 tokens, from SST-2), one request after another, medians over `--n`, in layers that
each add one stage to the last:
  - executable: the compiled `[1, 32]` "embed" forward on device-resident ids, called and waited for;
  - embed(): `model.embed([text])` (tokenize, pad, copy in, run, copy back);
  - engine: `Engine.submit(Embed([text])).result()` (the serving engine's threads, no HTTP), with its
    tokenization / queue / inference split;
  - HTTP: `POST /embed` to `samp-jax serve` started here on 127.0.0.1 (stdlib `http.client` over one
    keep-alive connection, and `httpx` as bench/serve.py's lone request uses), with the server's own timing
    headers (x-total-time: from the request's arrival in the route to its response).
Records go to OUT/serve_lone.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
from pathlib import Path
from urllib.parse import urlparse

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

from bench._timing import commit, device_name, today, wall_ms, write_records
from bench.serve import SERVE_FLAGS, Served, read_texts


def main() -> None:
    import jax

    import samp_jax
    from samp_jax.default_model import default_data_dir, default_model_dir
    from samp_jax.serving import Embed, Engine, EngineConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="a Hugging Face folder (default: the embedded MiniLM)")
    ap.add_argument("--plan", default="fp16", help="a float plan (8-bit plans need a calibrated checkpoint)")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    folder = args.model or default_model_dir()
    model = samp_jax.load(folder, plan=args.plan)
    tok = model._tokenizer()
    texts = [t for t in read_texts(args.data_dir or default_data_dir())[:2000] if 20 <= len(t) <= 120]
    text = next(t for t in texts if len(tok.encode([t])[0].ids) <= 32)
    rec: dict = dict(model=folder.name, plan=args.plan, text_tokens=len(tok.encode([text])[0].ids), n=args.n,
                     device=device_name(), commit=commit(), date=today())

    b = tok.pad(tok.encode([text]))
    ids = jax.device_put((b.input_ids, b.attention_mask, b.token_type_ids))
    fn = model.executable("embed", *b.input_ids.shape)
    rec["shape"] = list(b.input_ids.shape)
    rec["executable_ms"] = round(wall_ms(lambda: jax.block_until_ready(fn(model._params, *ids)), args.n), 4)
    rec["embed_ms"] = round(wall_ms(lambda: model.embed([text]), args.n), 4)

    config = EngineConfig(max_input_length=128, warmup=False)
    with Engine(model, config) as engine:
        results = []

        def submit() -> None:
            results.append(engine.submit(Embed([text])).result())

        rec["engine_ms"] = round(wall_ms(submit, args.n), 4)
        tail = results[-args.n:]
        for stage in ("tokenization", "queue", "inference", "total"):
            rec[f"engine_{stage}_ms"] = round(statistics.median(getattr(r.timings, stage) for r in tail) * 1e3, 4)

    server = Served([sys.executable, "-m", "samp_jax.cli", "serve", str(folder), "--plan", args.plan, "--host",
                     "127.0.0.1", "--port", "0", "--no-warmup", *SERVE_FLAGS])
    try:
        url = urlparse(server.url)
        conn = http.client.HTTPConnection(url.hostname, url.port)
        body = json.dumps({"inputs": text})
        headers: list[dict] = []

        def post() -> None:
            conn.request("POST", "/embed", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"POST /embed answered {r.status}")
            headers.append({k: float(r.getheader(k, "nan")) for k in
                            ("x-total-time", "x-tokenization-time", "x-queue-time", "x-inference-time")})

        rec["http_client_ms"] = round(wall_ms(post, args.n), 4)
        for k in headers[0]:
            rec[f"server_{k[2:].replace('-', '_')}_ms"] = round(statistics.median(h[k] for h in headers[-args.n:]), 4)
        import httpx

        with httpx.Client(base_url=server.url, timeout=60) as client:
            rec["httpx_ms"] = round(wall_ms(lambda: client.post("/embed", json={"inputs": text}).raise_for_status(),
                                            args.n), 4)
    finally:
        server.stop()
    write_records([rec], args.out / "serve_lone.json")
    print(json.dumps(rec, indent=1))


if __name__ == "__main__":
    main()
