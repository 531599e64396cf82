"""A Hugging Face checkpoint folder -> `samp_jax.checkpoint.Checkpoint`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from convert.hf_to_flax import convert_state_dict
from convert.hf_weights import read_state_dict
from samp_jax.checkpoint import Checkpoint, expected_param_shapes, save_checkpoint
from samp_jax.config import EncoderConfig, read_json
from samp_jax.heads import TaskSpec

log = logging.getLogger(__name__)

_ENCODER_ARCHS = ("Model", "ForMaskedLM", "ForPreTraining")


def task_from_hf_config(hf: Mapping[str, Any]) -> TaskSpec:
    """The task of a Hugging Face config, from `architectures`, `problem_type` and `id2label`."""
    archs = hf.get("architectures") or [f"{str(hf.get('model_type', '')).capitalize()}Model"]
    arch = archs[0]
    if arch.endswith(_ENCODER_ARCHS):
        return TaskSpec("encoder")
    id2label = hf.get("id2label") or {i: f"LABEL_{i}" for i in range(int(hf.get("num_labels", 2)))}
    labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
    if arch.endswith("ForSequenceClassification"):
        if hf.get("problem_type") == "multi_label_classification":
            return TaskSpec("multi_label_classification", labels, (0.5,) * len(labels))
        return TaskSpec("sequence_classification", labels)
    if arch.endswith("ForTokenClassification"):
        return TaskSpec("token_classification", labels)
    raise ValueError(
        f"unsupported architecture {arch!r}; supported: *Model, *ForMaskedLM, *ForPreTraining "
        "(served as bare encoders), *ForSequenceClassification, *ForTokenClassification"
    )


def _tokenizer_json(folder: Path) -> str | None:
    """tokenizer.json as text, built from vocab files through `transformers` if needed."""
    path = folder / "tokenizer.json"
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        from tokenizers import Tokenizer

        try:
            Tokenizer.from_str(text)
        except Exception as e:
            raise ValueError(f"corrupt tokenizer file {path}: {e}") from None
        return text
    if not any((folder / f).is_file() for f in ("vocab.txt", "tokenizer_config.json", "vocab.json")):
        return None
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), use_fast=True)
    except Exception as e:
        raise ValueError(f"cannot build a fast tokenizer from the files in {folder}: {e}") from None
    return tok.backend_tokenizer.to_str()


def convert_hf_checkpoint(
    hf_dir: str | Path, out_dir: str | Path | None = None, *, overwrite: bool = False
) -> Checkpoint:
    """Converts a Hugging Face folder (config.json + weights + tokenizer files).

    Returns the converted checkpoint; writes it to `out_dir` when given.
    """
    folder = Path(hf_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such checkpoint folder: {folder}")
    hf_config = read_json(folder / "config.json")
    config = EncoderConfig.from_hf_config(hf_config)
    task = task_from_hf_config(hf_config)
    state = read_state_dict(folder)
    params, dropped = convert_state_dict(state, config, task, expected_param_shapes(config, task))
    if dropped:
        log.warning("%s: not serving heads of a bare encoder, dropped %d keys: %s", folder, len(dropped), dropped)
    tokenizer_json = _tokenizer_json(folder)
    if tokenizer_json is None:
        log.warning("%s has no tokenizer files: model(ids) works, model.predict(texts) will not", folder)
    ckpt = Checkpoint(config, task, params, tokenizer_json, plan=None, source=str(folder.absolute()))
    if out_dir is not None:
        save_checkpoint(ckpt, out_dir, overwrite=overwrite)
    return ckpt
