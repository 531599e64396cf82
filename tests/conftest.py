"""Shared fixtures: the real all-MiniLM-L6-v2, real sentences, tiny random Hugging Face models."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# Property tests draw the same examples on every run, so that CI's verdict does not depend on luck;
# `pytest --hypothesis-profile=explore` draws new ones (run it when changing validation code).
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile("repeatable")

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SAMP_DATA", REPO.parent / "shared" / "data"))  # as default_data_dir()

# Used only when ../shared/data is absent: real sentences of the same kind.
# What `real_sentences` selects from SST-2 dev, for machines without the datasets: twelve, so that the
# tests that pair the first six with the last six still have pairs.
FALLBACK_SENTENCES = [
    "this movie is maddening . ",
    "for starters , the story is just too slim . ",
    "a subtle and well-crafted ( for the most part ) chiller . ",
    "it 's a scattershot affair , but when it hits its mark it 's brilliant . ",
    "it takes talent to make a lifeless movie about the most heinous man who ever lived . ",
    "the mesmerizing performances of the leads keep the film grounded and keep the audience riveted . ",
    "allows us to hope that nolan is poised to embark a major career as a commercial yet inventive filmmaker . ",
    "confirms the nagging suspicion that ethan hawke would be even worse behind the camera than he is in front of it . ",
    "it 's an offbeat treat that pokes fun at the democratic exercise while also examining its significance for those "
    "who take part . ",
    "this illuminating documentary transcends our preconceived vision of the holy land and its inhabitants , "
    "revealing the human complexities beneath . ",
    "for all its impressive craftsmanship , and despite an overbearing series of third-act crescendos , lily chou-chou "
    "never really builds up a head of emotional steam . ",
    "this is a train wreck of an action film -- a stupefying attempt by the filmmakers to force-feed james bond into "
    "the mindless xxx mold and throw 40 years of cinematic history down the toilet in favor of bright flashes and "
    "loud bangs . ",
]


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from samp_jax.default_model import default_model_dir

    try:
        return default_model_dir()
    except FileNotFoundError as e:
        pytest.skip(f"real all-MiniLM-L6-v2 weights absent: {e}")


@pytest.fixture(scope="session")
def real_sentences() -> list[str]:
    """Twelve SST-2 dev sentences of varied length (padding in every batch)."""
    path = DATA_DIR / "sst2" / "dev.tsv"
    if not path.is_file():
        return FALLBACK_SENTENCES
    with path.open(encoding="utf-8") as f:
        rows = [r["sentence"] for r in csv.DictReader(f, delimiter="\t")]
    rows = sorted(rows[:200], key=len)
    return [rows[i] for i in np.linspace(0, len(rows) - 1, 12).astype(int)]


def _perturb(model, seed: int) -> None:
    """Random init leaves biases 0 and LayerNorm at 1/0: shift every parameter so all are tested."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


# DeBERTa-v3's options (microsoft/deberta-v3-*) at a tiny size: 8 log buckets, so that a 12-token
# sequence reaches the log-spaced ones.
DEBERTA_V3 = dict(relative_attention=True, position_buckets=8, max_relative_positions=16, pos_att_type=["p2c", "c2p"],
                  share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0)


def make_hf_model(
    folder: Path,
    arch: str,
    *,
    labels: tuple[str, ...] = ("neg", "pos", "neutral"),
    problem_type: str | None = None,
    tokenizer_from: Path | None = None,
    seed: int = 0,
    safe: bool = True,
    overrides: dict | None = None,
):
    """Saves a tiny random Hugging Face model (`BertModel`, `MPNetForTokenClassification`, ...).

    `overrides`: config values that replace the tiny ones (`embedding_size=32` for an ELECTRA without
    `embeddings_project`, ModernBERT's `classifier_pooling`, say).
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    if problem_type:
        common["problem_type"] = problem_type
    common.update(overrides or {})
    if arch.startswith("MPNet"):
        cfg = transformers.MPNetConfig(vocab_size=400, max_position_embeddings=130, **common)
    elif arch.startswith(("Roberta", "XLMRoberta")):  # as the released checkpoints: one token type, pad id 1
        family = transformers.XLMRobertaConfig if arch.startswith("XLM") else transformers.RobertaConfig
        cfg = family(**dict(vocab_size=400, max_position_embeddings=130, type_vocab_size=1, pad_token_id=1,
                            layer_norm_eps=1e-5) | common | (overrides or {}))
    elif arch.startswith("Electra"):  # embedding_size < hidden_size: the embeddings_project linear
        cfg = transformers.ElectraConfig(**dict(vocab_size=400, max_position_embeddings=128, embedding_size=16)
                                         | common | (overrides or {}))
    elif arch.startswith("DistilBert"):  # DistilBERT's own key names
        names = dict(hidden_size="dim", num_hidden_layers="n_layers", num_attention_heads="n_heads",
                     intermediate_size="hidden_dim")
        cfg = transformers.DistilBertConfig(**{names.get(k, k): v for k, v in (
            dict(vocab_size=400, max_position_embeddings=128) | common | (overrides or {})).items()})
    elif arch.startswith("DebertaV2"):
        cfg = transformers.DebertaV2Config(**{"vocab_size": 400, "max_position_embeddings": 128, **DEBERTA_V3, **common})
    elif arch.startswith("ModernBert"):  # 3 layers: global, local, global; a window of 2 each side matters at seq 12
        mb = dict(num_hidden_layers=3, global_attn_every_n_layers=2, local_attention=4, pad_token_id=0)
        cfg = transformers.ModernBertConfig(**{"vocab_size": 400, "max_position_embeddings": 128, **common, **mb,
                                               **(overrides or {})})
        cfg._attn_implementation = "eager"
    else:
        cfg = transformers.BertConfig(vocab_size=30522, max_position_embeddings=128, **common)
    model = getattr(transformers, arch)(cfg).eval()
    _perturb(model, seed)
    model.save_pretrained(folder)
    if not safe:  # transformers 5 writes only safetensors: write the legacy pickle by hand
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    if tokenizer_from is not None:
        for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            if (tokenizer_from / name).is_file():
                shutil.copy(tokenizer_from / name, folder / name)
    return model


def converted_tiny(tmp_path_factory, minilm_dir: Path, arch: str, name: str, seed: int) -> Path:
    """A tiny random `arch` with MiniLM's tokenizer, converted to a samp-jax checkpoint folder (`name`_ckpt/ckpt)."""
    from convert import convert_hf_checkpoint

    hf = tmp_path_factory.mktemp(f"{name}_hf")
    make_hf_model(hf, arch, tokenizer_from=minilm_dir, seed=seed)
    out = tmp_path_factory.mktemp(f"{name}_ckpt") / "ckpt"
    convert_hf_checkpoint(hf, out)
    return out


def load_tiny_models(tmp_path_factory, minilm_dir: Path, specs, prefix: str, seed: int = 1) -> dict:
    """`{name: samp_jax.load(folder)}` for `(name, architecture, make_hf_model keywords)` specs: tiny random models
    with MiniLM's tokenizer, each its own seed from `seed` on."""
    import samp_jax

    out = {}
    for name, arch, kw in specs:
        folder = tmp_path_factory.mktemp(f"{prefix}_{name}")
        make_hf_model(folder, arch, tokenizer_from=minilm_dir, seed=seed + len(out), **kw)
        out[name] = samp_jax.load(folder)
    return out


def random_batch(vocab: int, lengths: list[int], seq: int, pad_id: int, seed: int = 0):
    """ids/mask/types with padding after each row's length; ids avoid the pad id."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(len(lengths), seq)).astype(np.int32)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        types[i, n // 2 : n] = 1
        ids[i, n:] = pad_id
    return ids, mask, types


def kernel_sized_bert(folder: Path, seed: int):
    """A random 2-layer BERT whose shapes fill every kernel's tiles (head dim 64, widths multiples of 256),
    saved to `folder` and converted, so that no op falls back to XLA on the kernel path."""
    import torch
    import transformers

    from convert import convert_hf_checkpoint

    torch.manual_seed(seed)
    cfg = transformers.BertConfig(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512)
    transformers.BertModel(cfg).eval().save_pretrained(folder)
    return convert_hf_checkpoint(folder)


def count_kernel_calls(monkeypatch) -> list[str]:
    """Records, in the returned list, each call that reached a Pallas kernel of the encoder's hot ops, the GEMMs
    that write partial sums for the LayerNorm included (a kernel that declines an input raises before it is
    counted, and dispatch falls back to XLA)."""
    from pallas_kernels.attention import api as attention_api
    from pallas_kernels.matmul import api as matmul_api
    from pallas_kernels.quantized_attention import api as quantized_attention_api
    from pallas_kernels.quantized_matmul import api as quantized_matmul_api

    calls: list[str] = []
    for registry, name, label in ((attention_api._PACKED_REGISTRY, "triton", "triton attention"),
                                  (quantized_attention_api._PACKED_REGISTRY, "triton", "triton 8-bit attention"),
                                  (quantized_matmul_api._PACKED_REGISTRY, "mosaic", "mosaic gemm"),
                                  (quantized_matmul_api._PARTIAL_REGISTRY, "mosaic", "mosaic gemm"),
                                  (matmul_api._REGISTRY, "mosaic", "mosaic float gemm"),
                                  (matmul_api._PARTIAL_REGISTRY, "mosaic", "mosaic float gemm")):
        def counted(*a, fn=registry[name], label=label, **k):
            out = fn(*a, **k)
            calls.append(label)
            return out

        monkeypatch.setitem(registry, name, counted)
    return calls


def hf_forward(hf_model, ids, mask, types=None) -> np.ndarray:
    """A Hugging Face PyTorch model's logits (or last hidden state) on numpy ids, mask and token types."""
    import torch

    kwargs = dict(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long))
    if types is not None:
        kwargs["token_type_ids"] = torch.tensor(types, dtype=torch.long)
    with torch.no_grad():
        out = hf_model(**kwargs)
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state).numpy()


def nested_close(got, want, tol: dict) -> bool:
    """Equal structure (dicts, lists), labels and spans; floats within `tol` (numpy.isclose's rtol/atol)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(nested_close(got[k], want[k], tol)
                                                                           for k in want)
    if isinstance(want, (list, tuple)):
        return len(got) == len(want) and all(nested_close(g, w, tol) for g, w in zip(got, want))
    if isinstance(want, float):
        return bool(np.isclose(got, want, **tol))
    return got == want
