"""Property tests of what users hand the library: id arrays, plan strings, config.json dicts.

Each input has two allowed outcomes: a ValueError (FileNotFoundError for paths) whose message
names the argument, key or text at fault, or a valid result (finite outputs, a plan that
round-trips, a config whose every field is in range). Never another exception, a NaN or a
silently different answer.
"""

from __future__ import annotations

import ast
import json
import math
import re
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import samp_jax
from convert import convert_hf_checkpoint, task_from_hf_config
from pallas_kernels.matmul.base import ACTIVATIONS
from samp_jax.config import EncoderConfig
from samp_jax.model import SampModel
from samp_jax.plan import DTYPES, LAYER_MODES, Plan
from tests.conftest import make_hf_model

VOCAB, NUM_LABELS = 30522, 3  # make_hf_model's BERT
ARGS = ("input_ids", "attention_mask", "token_type_ids")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, minilm_dir):
    folder = tmp_path_factory.mktemp("tiny_bert")
    make_hf_model(folder, "BertForSequenceClassification", tokenizer_from=minilm_dir)
    return folder


@pytest.fixture(scope="module")
def model(tiny_dir):
    return samp_jax.load(tiny_dir)


# ---- id arrays ----------------------------------------------------------------

INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
DTYPE_CHOICES = (*INT_DTYPES, "float32", "float64", "bool", "object")
# few sizes, so that the valid shapes, each compiled once, stay few
VALID_SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 3))
SHAPES = VALID_SHAPES | st.lists(st.integers(0, 3), min_size=0, max_size=3).map(tuple)


def _elements(dtype: str, low: int, high: int):
    """Values mostly in [low, high), some just outside, some far outside (clipped to what `dtype` holds)."""
    if dtype == "bool":
        return st.booleans()
    if dtype.startswith("float"):
        return st.one_of(st.integers(low, high - 1).map(float), st.floats(allow_nan=True, allow_infinity=True))
    edges = [low - 1, high, -(2**31), 2**31 + 5, 2**32 + low, 2**40, 2**63 + 3, 2**70]
    if dtype == "object":
        return st.one_of(st.integers(low, high - 1), st.sampled_from(edges), st.none(), st.text(max_size=2),
                         st.floats(allow_nan=False))
    info = np.iinfo(dtype)
    inside = [e for e in edges if info.min <= e <= info.max]
    valid = st.integers(max(low, int(info.min)), min(high - 1, int(info.max)))
    return st.one_of(valid, valid, st.sampled_from(inside)) if inside else valid


@st.composite
def id_arrays(draw, low: int, high: int, shape=None):
    """Half the time a valid array (an integer dtype, values in [low, high)), else anything."""
    wild = draw(st.booleans())
    dtype = draw(st.sampled_from(DTYPE_CHOICES if wild else INT_DTYPES))
    shape = draw(SHAPES if wild else VALID_SHAPES) if shape is None else shape
    if wild:
        elements = _elements(dtype, low, high)
    else:
        elements = st.integers(max(low, int(np.iinfo(dtype).min)), min(high, int(np.iinfo(dtype).max) + 1) - 1)
    arr = draw(hnp.arrays(np.dtype(dtype), shape, elements=elements))
    if wild and draw(st.integers(0, 5)) == 0:  # what is not an array at all
        return draw(st.sampled_from((None, "some text", [[1, 2], [3]], [[1], 2], [], [[]], {"ids": [1]})))
    return arr.tolist() if draw(st.integers(0, 9)) == 0 else arr  # nested lists too


def _shape_or_none(x) -> tuple[int, ...] | None:
    """The array shape of `x`, or None where it has none (a ragged list, say)."""
    try:
        return np.shape(x)
    except ValueError:
        return None


@st.composite
def model_inputs(draw):
    ids = draw(id_arrays(0, VOCAB))
    shape = _shape_or_none(ids) if draw(st.booleans()) else None  # mostly matching shapes: reach the value checks
    mask = draw(st.none() | id_arrays(0, 2, shape))
    types = draw(st.none() | id_arrays(0, 2, shape))
    return ids, mask, types


def _valid(ids, mask, types) -> bool:
    """The contract, written independently of samp_jax.validation: rectangular 2-D integers (any width,
    or Python ints; a mask may be boolean), ids in the vocabulary, masks and types 0/1, a real token per row."""
    arrays = []
    for name, x, high in zip(ARGS, (ids, mask, types), (VOCAB, 2, 2)):
        if x is None and name != "input_ids":
            arrays.append(None)
            continue
        try:
            arr = np.asarray(x)
        except ValueError:
            return False
        if arr.dtype == bool and name == "attention_mask":
            arr = arr.astype(np.int64)
        values = arr.ravel().tolist()
        if arr.ndim != 2 or arr.size == 0 or not all(type(v) is int and 0 <= v < high for v in values):
            return False
        if arr.dtype.kind not in "iuO":  # float arrays are refused even when they hold whole numbers
            return False
        arrays.append(arr)
    ids_arr, mask_arr, types_arr = arrays
    if any(a is not None and a.shape != ids_arr.shape for a in (mask_arr, types_arr)):
        return False
    return mask_arr is None or bool((mask_arr.astype(np.int64).sum(axis=1) > 0).all())


def _size(x) -> int | None:
    try:
        return np.asarray(x).size
    except ValueError:
        return None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(inputs=model_inputs())
def test_any_id_array_is_refused_by_name_or_runs_finite(model, inputs):
    ids, mask, types = inputs
    valid = _valid(ids, mask, types)
    try:
        out = np.asarray(model(ids, mask, types))
    except ValueError as e:
        event("refused")
        assert not valid, f"valid input refused: {e}"
        assert any(name in str(e) for name in ARGS), f"message names no argument: {e}"
        if ids is not None and _size(ids) == 0:
            assert "empty" in str(e), e
        return
    event("ran")
    assert valid, "invalid input accepted"
    # accepted: the ids, read as int32, give the same answer, and it is finite
    as32 = [None if a is None else np.asarray(a).astype(np.int32) for a in (ids, mask, types)]
    assert all(a is None or np.array_equal(a, np.asarray(b)) for a, b in zip(as32, (ids, mask, types)))
    assert out.shape == (as32[0].shape[0], NUM_LABELS) and np.isfinite(out).all()
    np.testing.assert_array_equal(out, np.asarray(model(*as32)))


# ---- plan strings ------------------------------------------------------------

NUM_LAYERS = 4
PLAN_TOKENS = (*LAYER_MODES, *DTYPES, "dtype", "embedding", "probs", "float", "int8", "uint8", "fp8", "int4",
               ":", ":", "-", "+", ",", ",", " ", "0", "1", "2", "3", "4", "12", "-1", "x", "FP16", "_", "\t", "\u0663")


@st.composite
def plan_terms(draw):
    """Mostly well-formed terms, so that valid plans come up often."""
    kind = draw(st.sampled_from(("mode", "mode", "setting", "float")))
    if kind == "float":
        return draw(st.sampled_from(tuple(DTYPES)))
    if kind == "setting":
        name = draw(st.sampled_from(("dtype", "embedding", "probs")))
        value = draw(st.sampled_from(("fp32", "bf16", "fp16", "float", "int8", "uint8", "fp8", "x", "")))
        return f"{name}:{value}"
    mode = draw(st.sampled_from(LAYER_MODES))
    layer = st.integers(0, NUM_LAYERS - 1) | st.integers(-1, NUM_LAYERS)
    ranges = draw(st.lists(st.tuples(layer, st.none() | layer), max_size=3))
    spec = "+".join(f"{a}" if b is None else f"{a}-{b}" for a, b in ranges)
    return f"{mode}:{spec}" if spec or draw(st.booleans()) else mode


PLAN_TEXT = st.one_of(
    st.lists(st.sampled_from(PLAN_TOKENS), max_size=10).map("".join),
    st.lists(plan_terms(), min_size=1, max_size=4).map(",".join),
    st.lists(plan_terms(), min_size=1, max_size=2).map(",".join),
    st.lists(plan_terms(), min_size=1, max_size=3).map(lambda ts: " , ".join(ts)),
)
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'")


@settings(max_examples=600, deadline=None)
@given(text=PLAN_TEXT)
def test_any_plan_string_is_refused_by_quoting_it_or_round_trips(text):
    try:
        plan = Plan.parse(text, NUM_LAYERS)
    except ValueError as e:
        event("refused")
        quoted = [ast.literal_eval(q) for q in _QUOTED.findall(str(e))]
        assert any(q and q in text for q in quoted) or repr(text) in str(e), f"{text!r}: {e}"
        return
    event("parsed")
    assert len(plan.layers) == NUM_LAYERS
    assert Plan.parse(plan.to_string(), NUM_LAYERS) == plan
    assert Plan.parse(plan.to_dict(), NUM_LAYERS) == plan
    assert Plan.parse(json.loads(json.dumps(plan.to_dict())), NUM_LAYERS) == plan


# ---- config.json dicts -------------------------------------------------------

TINY_CONFIG = dict(
    architectures=["BertForSequenceClassification"], model_type="bert", vocab_size=VOCAB, hidden_size=32,
    num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, hidden_act="gelu",
    max_position_embeddings=128, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
    position_embedding_type="absolute", id2label={"0": "neg", "1": "pos", "2": "neutral"},
    label2id={"neg": 0, "pos": 1, "neutral": 2}, num_labels=3, problem_type=None,
)
_DELETE = object()
BAD_VALUES = st.one_of(
    st.just(_DELETE), st.none(), st.booleans(), st.sampled_from((0, -1, 1, 3, 7, 33, 2**31, 2**40, 10**30)),
    st.sampled_from(("12", "abc", "", "gelu", "BertModel", "absolute", "mpnet")),
    st.sampled_from((0.0, 12.0, 12.5, -1e-5, 1e-300, float("nan"), float("inf"))),
    st.sampled_from(([], ["BertModel"], [None], {}, {"0": "a"}, {"a": "b"}, {"0": "a", "2": "b"}, ["12"])),
)


@st.composite
def config_dicts(draw):
    hf = json.loads(json.dumps(TINY_CONFIG))
    changed = draw(st.lists(st.sampled_from(sorted(TINY_CONFIG)), min_size=1, max_size=3, unique=True))
    for key in changed:
        value = draw(BAD_VALUES)
        if value is _DELETE:
            del hf[key]
        else:
            hf[key] = value
    return hf, changed


@settings(max_examples=400, deadline=None)
@given(case=config_dicts())
def test_any_config_dict_is_refused_by_key_or_is_in_range(case):
    hf, changed = case
    try:
        cfg = EncoderConfig.from_hf_config(hf)
        task = task_from_hf_config(hf)
    except ValueError as e:
        event("refused")
        assert any(key in str(e) for key in changed), f"{changed}: {e}"
        return
    event("accepted")
    ints = {f: getattr(cfg, f) for f in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                                         "max_position_embeddings", "type_vocab_size", "pad_token_id")}
    assert all(type(v) is int and 0 <= v < 2**31 for v in ints.values()), ints
    assert min(ints["vocab_size"], ints["hidden_size"], ints["num_layers"], ints["num_heads"]) > 0
    assert 0 <= cfg.pad_token_id < cfg.vocab_size and cfg.hidden_size % cfg.num_heads == 0
    assert cfg.max_seq_len > 0 and math.isfinite(cfg.layer_norm_eps) and cfg.layer_norm_eps > 0
    assert cfg.hidden_act in ACTIVATIONS
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg  # what a converted checkpoint stores loads back
    assert task.kind == "encoder" or all(isinstance(label, str) for label in task.labels)


# Conversion end to end, on keys that leave the weights' shapes alone: few examples, each compiles.
SHAPE_FREE = dict(
    pad_token_id=st.sampled_from((0, 5, VOCAB - 1, VOCAB, VOCAB + 7, -1, None, 2**40)),
    layer_norm_eps=st.sampled_from((1e-12, 1e-5, 1.0, 1e6, 0.0, -1e-5, float("nan"))),
    hidden_act=st.sampled_from(("gelu", "relu", "tanh", "mish", None)),
)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(change=st.fixed_dictionaries({}, optional=SHAPE_FREE))
def test_converted_configs_give_finite_predictions(tmp_path_factory, tiny_dir, change):
    folder = tmp_path_factory.mktemp("mutated")
    shutil.copytree(tiny_dir, folder, dirs_exist_ok=True)
    hf = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**hf, **change}))
    try:
        model = SampModel(convert_hf_checkpoint(folder))
    except ValueError as e:
        event("refused")
        assert any(key in str(e) for key in change), f"{change}: {e}"
        return
    event("converted")
    preds = model.predict(["a short one .", "and a much longer sentence , so that the first is padded ."])
    scores = [s for p in preds for s in p["scores"].values()]
    assert len(scores) == 2 * NUM_LABELS and all(math.isfinite(s) for s in scores), (change, preds)
