"""bench/scale.py on the CPU: the offline part on 4 forced host devices (a tiny random BERT, counts 1, 2, 4, every
record's efficiency and provenance); the server comparison on stub servers (one process over N devices against N
pinned servers, the environment passed on unchanged); the round-robin client on two stub HTTP servers."""

from __future__ import annotations

import argparse
import http.server
import importlib.util
import json
import threading

import pytest

from bench import scale, serve


@pytest.mark.slow
def test_tiny_offline_run_on_four_host_devices(tmp_path, capsys):
    pytest.importorskip("torch", reason="bench/scale.py builds its random BERT with transformers' PyTorch model")
    lengths = tmp_path / "lengths.json"
    lengths.write_text(json.dumps({"sst2": [5, 9, 14, 20, 25, 31, 40, 55]}))
    records = scale.main(["--tiny", "--host-devices", "4", "--no-server", "--plans", "full_int8", "--sequences", "192",
                          "--lengths", str(lengths), "--out", str(tmp_path)])
    assert records == json.loads((tmp_path / "scale.json").read_text())
    assert {(r["timing"], r["devices"]) for r in records} == {(t, k) for t in scale.TIMINGS for k in (1, 2, 4)}
    for r in records:
        assert (r["part"], r["model"], r["plan"], r["layout"], r["kind"]) == ("offline", "bert-base", "full_int8",
                                                                             "padded", "embed")
        assert r["path"] == ("plain" if r["devices"] == 1 else "mesh")
        assert (r["sequences"], r["batch_rows"], r["batches"]) == (192, 64, 3)  # 16 rows a device at 4 devices
        assert r["tokens_per_s"] == pytest.approx(r["real_tokens"] / r["seconds"])
        one = next(x for x in records if x["timing"] == r["timing"] and x["devices"] == 1)
        assert r["efficiency"] == pytest.approx(r["tokens_per_s"] / (r["devices"] * one["tokens_per_s"]))
        assert len(r["seconds_rounds"]) == len(r["efficiency_rounds"]) == 2
        assert r["device_count"] == 4 and r["host_devices"] == 4
        assert r["commit"] and r["date"] and r["device"].startswith("cpu") and r["command"].startswith(
            "python -m bench.scale --tiny")
    out = capsys.readouterr().out
    assert "efficiency = thr(k) / (k x thr(1))" in out
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "scale.png").stat().st_size > 0


def test_default_counts_double_up_to_n():
    assert scale.default_counts(1) == [1]
    assert scale.default_counts(2) == [1, 2]
    assert scale.default_counts(6) == [1, 2, 4, 6]
    assert scale.default_counts(8) == [1, 2, 4, 8]


def test_children_get_this_environment_with_only_the_devices_changed(monkeypatch):
    monkeypatch.setenv("NCCL_NVLS_ENABLE", "0")
    monkeypatch.setenv("NVSHMEM_DISABLE_NVLS", "1")
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=8")
    env = scale.child_env(4)
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=4"
    assert env["JAX_PLATFORMS"] == "cpu"
    pinned = scale.child_env(pin="3")
    assert pinned["CUDA_VISIBLE_DEVICES"] == "3"
    for e in (env, pinned):
        assert e["NCCL_NVLS_ENABLE"] == "0" and e["NVSHMEM_DISABLE_NVLS"] == "1"
        changed = {k for k in e if e.get(k) != scale.os.environ.get(k)}
        assert changed <= {"XLA_FLAGS", "JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES"}


def test_gpu_pins_follow_the_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert scale.gpu_pins(2) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    assert scale.gpu_pins(2) == ["4", "5"]
    with pytest.raises(ValueError, match="names 3 GPU"):
        scale.gpu_pins(4)


def _rates(*points):
    return [{"offered_rps": rate, "throughput_texts_per_s": thr, "p99_ms": p99} for rate, thr, p99 in points]


def test_summary_takes_the_most_answered_and_the_p99_below_saturation():
    rates = _rates((10, 100, 20.0), (20, 200, 30.0), (40, 260, 900.0))
    s = scale.summary(rates, "saturated")
    assert (s["texts_per_s"], s["p99_ms"], s["rate_rps"], s["p99_below_saturation_ms"], s["saturated"]) == \
        (260, 900.0, 40, 30.0, True)
    assert scale.summary(rates, "time budget")["p99_below_saturation_ms"] == 900.0
    assert not scale.summary(rates, "max rate")["saturated"]


def test_server_comparison_one_process_against_pinned_servers_on_stubs(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setenv("NCCL_NVLS_ENABLE", "0")
    started: list = []

    class Served:
        def __init__(self, cmd, env=None):
            self.cmd, self.env, self.startup_s = cmd, env, 1.0
            self.url = f"http://stub{len(started)}"
            self.stopped = False
            started.append(self)

        def compile_s(self):
            return 0.5

        def stop(self):
            self.stopped = True
            return 0

    swept: list = []

    def sweep(url, args, texts_file, work, deadline):
        swept.append((url, args))
        per_gpu = "," in url  # the per-GPU servers answer 1000 texts/s together, the one process 950
        return _rates((100, 500, 10.0), (200, 1000 if per_gpu else 950, 50.0)), "saturated"

    monkeypatch.setattr(serve, "Served", Served)
    monkeypatch.setattr(serve, "sweep", sweep)
    args = argparse.Namespace(start_rate=100.0, max_rate=800.0, duration=1.0, load_procs=2, max_texts=8,
                              max_p99_ms=500.0, server_batch_tokens=4096, host_devices=None)
    rec = scale.compare("m", "/ckpt", "fp16", 2, "gpu", args, tmp_path / "t.json", tmp_path, scale.Budget(None, 2))

    one, *singles = started
    assert one.cmd[one.cmd.index("--devices") + 1] == "2"
    assert one.cmd[one.cmd.index("--max-batch-tokens") + 1] == "8192"
    assert one.cmd[one.cmd.index("--tokenization-workers") + 1] == "4"
    assert one.env["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in singles] == ["2", "3"]
    for s in singles:
        assert "--devices" not in s.cmd and s.cmd[s.cmd.index("--max-batch-tokens") + 1] == "4096"
    assert all(s.env["NCCL_NVLS_ENABLE"] == "0" and s.stopped for s in started)
    assert [u for u, _ in swept] == ["http://stub0", "http://stub1,http://stub2"]
    assert swept[0][1].max_p99_ms == 500.0 and swept[0][1].load_procs == 2
    assert rec["ratio"] == pytest.approx(0.95) and rec["both_saturated"]
    assert rec["per_gpu"]["pins"] == ["2", "3"] and rec["per_gpu"]["servers"] == 2
    assert rec["one_process"]["p99_below_saturation_ms"] == 10.0
    scale.table([{**rec}])  # prints


def test_a_server_that_fails_to_start_stops_the_others(monkeypatch):
    made: list = []

    class Served:
        def __init__(self, cmd, env=None):
            if cmd == ["bad"]:
                raise RuntimeError("did not start")
            self.stopped = False
            made.append(self)

        def stop(self):
            self.stopped = True

    monkeypatch.setattr(serve, "Served", Served)
    with pytest.raises(RuntimeError, match="did not start"):
        scale.start_servers([["ok"], ["bad"], ["ok"]], [{}, {}, {}])
    assert len(made) == 2 and all(s.stopped for s in made)


def test_the_load_worker_sends_its_requests_to_several_servers_in_turn(tmp_path):
    pytest.importorskip("httpx")
    hits = [0, 0]

    def handler(i):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hits[i] += 1
                data = json.dumps([[0.0]] * len(body["inputs"])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        return Handler

    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(i)) for i in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        texts = tmp_path / "texts.json"
        texts.write_text(json.dumps(["a b c", "d e"]))
        out = tmp_path / "out.json"
        urls = ",".join(f"http://127.0.0.1:{s.server_address[1]}" for s in servers)
        serve._load_worker(urls, 40.0, 0.5, 0, str(texts), 2, str(out))
    finally:
        for s in servers:
            s.shutdown()
    records = json.loads(out.read_text())["records"]
    assert records and all(r[2] == 200 for r in records)
    assert abs(hits[0] - hits[1]) <= 1 and sum(hits) == len(records)


def test_synthetic_texts_have_the_drawn_token_counts(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "mat", "##s"])}
    tok = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                                ("[SEP]", 3)])
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    texts = scale.synthetic_texts(path, [5, 12], 50)
    counts = {len(tok.encode(t).ids) for t in texts}
    assert counts == {5, 12}
    assert all(set(t.split()) <= {"the", "cat", "sat", "mat"} for t in texts)


def test_absent_models_are_named_not_fatal(tmp_path):
    with pytest.raises(scale.Absent, match="no config.json"):
        scale.model_folder(str(tmp_path / "nowhere"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert scale.model_folder(f"x={tmp_path / 'm'}") == ("x", tmp_path / "m")
    assert scale.model_folder(str(tmp_path / "m")) == ("m", tmp_path / "m")
    assert scale.model_folder("bert-base") == ("bert-base", None)
