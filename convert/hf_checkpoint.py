"""A Hugging Face checkpoint folder -> `samp_jax.checkpoint.Checkpoint`."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from convert.bertlike_names import ARCHITECTURES
from convert.hf_to_flax import convert_state_dict
from convert.hf_weights import read_state_dict
from convert.st_pooling import read_pooling
from samp_jax.checkpoint import Checkpoint, expected_param_shapes, save_checkpoint
from samp_jax.config import EncoderConfig, read_json
from samp_jax.heads import TaskSpec

log = logging.getLogger(__name__)

_ENCODER_ARCHS = ("Model", "ForMaskedLM", "ForPreTraining")
_HEAD_ARCHS = ("ForSequenceClassification", "ForTokenClassification")
# Each model type's class-name prefix and bare-encoder classes in Hugging Face.
_ARCHITECTURES = {"bert": ("Bert", ("Model", "ForPreTraining", "ForMaskedLM")), "mpnet": ("MPNet", ("Model", "ForMaskedLM")),
                  **ARCHITECTURES}
SUPPORTED_ARCHITECTURES = tuple(f"{name}{kind}" for name, encoders in _ARCHITECTURES.values()
                                for kind in (*encoders, *_HEAD_ARCHS))


_PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


def _architecture(hf: Mapping[str, Any]) -> str:
    archs = hf.get("architectures")
    if archs is None or archs == []:
        return f"{str(hf.get('model_type', '')).capitalize()}Model"
    if not isinstance(archs, list) or not all(isinstance(a, str) and a for a in archs):
        raise ValueError(f"architectures={archs!r} must be a list of class names, e.g. ['BertForSequenceClassification']")
    return archs[0]


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key}={value!r} must be a positive integer")
    return value


def _labels(hf: Mapping[str, Any]) -> tuple[str, ...]:
    """Label names in id order, from `id2label` (Hugging Face's choice when both are given) or `num_labels`."""
    num_labels = hf.get("num_labels")  # null counts as absent, as in Hugging Face
    if num_labels is not None:
        num_labels = _positive_int("num_labels", num_labels)
    id2label = hf.get("id2label")
    if not id2label:  # absent, null or {}: Hugging Face's default of two labels
        return tuple(f"LABEL_{i}" for i in range(num_labels or 2))
    if not isinstance(id2label, Mapping):
        raise ValueError(f"id2label={id2label!r} must map label ids to names, e.g. {{'0': 'neg', '1': 'pos'}}")
    names: dict[int, str] = {}
    for key, name in id2label.items():
        if isinstance(key, int) and not isinstance(key, bool):
            i = key
        elif isinstance(key, str) and re.fullmatch(r"[0-9]+", key.strip()):
            i = int(key)
        else:
            raise ValueError(f"id2label key {key!r} is not a label id (0, 1, ...)")
        if name is None or isinstance(name, (bool, list, dict)):
            raise ValueError(f"id2label[{key!r}]={name!r} must be a label name")
        if i in names:
            raise ValueError(f"id2label names id {i} twice ({names[i]!r} and {name!r})")
        names[i] = str(name)
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"id2label ids {sorted(names)} must be 0 to {len(names) - 1}, one label each")
    if num_labels is not None and num_labels != len(names):
        log.warning("config.json: num_labels=%d disagrees with id2label's %d labels; id2label decides, as in "
                    "Hugging Face", num_labels, len(names))
    return tuple(names[i] for i in range(len(names)))


def task_from_hf_config(hf: Mapping[str, Any]) -> TaskSpec:
    """The task of a Hugging Face config, from `architectures`, `problem_type` and `id2label`."""
    arch = _architecture(hf)
    if arch.endswith(_ENCODER_ARCHS):
        return TaskSpec("encoder")
    problem_type = hf.get("problem_type")
    if problem_type is not None and problem_type not in _PROBLEM_TYPES:
        raise ValueError(f"unknown problem_type={problem_type!r}; Hugging Face's are {_PROBLEM_TYPES} or null")
    if arch.endswith("ForSequenceClassification"):
        labels = _labels(hf)
        if problem_type == "multi_label_classification":
            return TaskSpec("multi_label_classification", labels, (0.5,) * len(labels))
        if problem_type == "regression" and len(labels) > 1:  # predict would read the outputs as class scores
            raise ValueError(f"problem_type='regression' with {len(labels)} outputs is not supported; "
                             "samp-jax serves single-output regression heads and classifiers")
        return TaskSpec("sequence_classification", labels)
    if arch.endswith("ForTokenClassification"):
        return TaskSpec("token_classification", _labels(hf))
    raise ValueError(
        f"unsupported architecture {arch!r} (architectures={hf.get('architectures')!r}); supported: "
        f"{', '.join(SUPPORTED_ARCHITECTURES)} (*Model, *ForMaskedLM and *ForPreTraining serve as bare encoders)"
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
    pooling = None
    if task.kind == "encoder":  # a bi-encoder: its sentence-transformers pooling, if it names one
        pooling = read_pooling(folder, config.hidden_size)
        if pooling is None:
            log.warning("%s has no sentence-transformers pooling configuration (modules.json): embeddings are "
                        "mean-pooled and L2-normalized", folder)
    state = read_state_dict(folder)
    try:
        params, dropped = convert_state_dict(state, config, task, expected_param_shapes(config, task))
    except ValueError as e:
        if task.labels and "params/head/" in str(e):  # the head's width comes from the config's labels
            raise ValueError(f"{e}\n  (the head's width is config.json's label count: id2label/num_labels name "
                             f"{task.num_labels} labels)") from None
        raise
    if dropped:
        log.warning("%s: not serving heads of a bare encoder, dropped %d keys: %s", folder, len(dropped), dropped)
    tokenizer_json = _tokenizer_json(folder)
    if tokenizer_json is None:
        log.warning("%s has no tokenizer files: model(ids) works, model.predict(texts) will not", folder)
    ckpt = Checkpoint(config, task, params, tokenizer_json, plan=None, source=str(folder.absolute()), pooling=pooling)
    if out_dir is not None:
        save_checkpoint(ckpt, out_dir, overwrite=overwrite)
    return ckpt
