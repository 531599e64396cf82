from __future__ import annotations

import json
import re

import numpy as np
import pytest

import samp_jax
from samp_jax.config import minilm_l6
from samp_jax.plan import LAYER_MODES, LayerMode, Plan, mode_qtype
from samp_jax.quant.build import check_plan
from samp_jax.quant.points import required_points
from samp_jax.quant.scales import Scales


def test_string_forms():
    p = Plan.parse("ffn_int8:0-7,fp16:8-11", 12)
    assert p.layers == ("ffn_int8",) * 8 + ("fp16",) * 4
    assert (p.dtype, p.embedding, p.probs) == ("fp16", "float", "uint8")
    assert p.to_string() == "ffn_int8:0-7,fp16:8-11"
    q = Plan.parse("full_int8:0-5", 6)
    assert q.embedding == "int8" and q.to_string() == "full_int8"
    r = Plan.parse("full_fp8:0+2,ffn_int8:4-5,dtype:bf16,probs:int8", 6)
    assert r.layers == ("full_fp8", "fp16", "full_fp8", "fp16", "ffn_int8", "ffn_int8")
    assert r.embedding == "fp8" and r.dtype == "bf16" and r.probs == "int8"
    assert Plan.parse(r.to_string(), 6) == r
    assert Plan.parse("ffn_int8:2", 4).layers == ("fp16", "fp16", "ffn_int8", "fp16")  # unnamed layers: fp16
    for dtype in ("fp32", "bf16", "fp16"):
        f = Plan.parse(dtype, 3)
        assert f.layers == ("fp16",) * 3 and f.dtype == dtype and f.to_string() == dtype
    assert Plan.parse("fp16,embedding:int8", 2).embedding == "int8"


def test_json_forms(tmp_path):
    p = Plan.parse("full_int8:0-1,ffn_fp8:2-3,probs:float", 4)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(p.to_dict()))
    assert Plan.parse(str(path), 4) == p
    assert Plan.parse(p.to_dict(), 4) == p


@pytest.mark.parametrize(
    "text, layers, message",
    [
        ("int4", 6, "unknown precision mode 'int4'"),
        ("ffn_int8:0-3,full_int8:3-5", 6, "layer 3 is given two modes"),
        ("ffn_int8:0-6", 6, "layer range '0-6' .* outside the model's layers 0-5"),
        ("ffn_int8:a-b", 6, "bad layer range 'a-b'"),
        ("full_int8,embedding:float", 2, "embedding precision must be 'int8', not 'float'"),
        ("fp16,dtype:fp64", 2, "unknown dtype 'fp64'"),
        ("full_int8,probs:int4", 2, "unknown probs treatment 'int4'"),
        ("ffn_int8,dtype", 2, "needs a value"),
        # whitespace-only and separator-only plans parsed as all-fp16 while "" meant fp32
        ("", 2, "empty plan ''"),
        ("   ", 2, "empty plan '   '"),
        (",", 2, "empty plan ','"),
        (" , ,", 2, "empty plan ' , ,'"),
        # a reversed range was reported as outside the model's layers
        ("full_int8:5-2", 6, "layer range '5-2' in 'full_int8:5-2' is reversed: write '2-5'"),
        ("ffn_int8:-1", 6, "bad layer range '-1' .*layers count from 0"),
        ("ffn_int8:0-", 6, r"bad layer range '0-' in plan term 'ffn_int8:0-'"),  # was layer 0 alone
        ("ffn_int8:1_0", 6, "bad layer range '1_0'"),  # int() reads "1_0" as 10
        ("ffn_int8:\u0663", 6, "bad layer range '\u0663'"),  # int() reads Arabic-Indic digits
        ("ffn_int8:", 2, "plan term 'ffn_int8:' needs layers after ':'"),
        ("ffn_int8:0+0", 2, "layer 0 is given twice"),
        ("ffn _int8", 2, "unknown precision mode 'ffn _int8'"),
        # a setting given twice: the last one won silently
        ("dtype:bf16,dtype:fp32", 2, r"dtype is set twice in plan 'dtype:bf16,dtype:fp32' \(bf16 and fp32\)"),
        ("ffn_int8,probs:int8,probs:float", 2, "probs is set twice"),
        ("fp16,embedding:", 2, "plan term 'embedding:' needs a value"),
        ("embedding:int4", 2, "unknown embedding precision 'int4'"),
        # the float plan names were missing from the list of what is accepted
        ("FP16", 2, "unknown precision mode 'FP16'.*float plans fp32, bf16, fp16"),
        ("int4", 2, "layer modes fp16, ffn_int8, full_int8, ffn_fp8, full_fp8.*settings dtype:"),
        ("bf16,ffn_int8:0", 2, "'bf16' names a whole float plan only alone: with other terms write 'dtype:bf16'"),
    ],
)
def test_parse_errors_name_the_value(text, layers, message):
    with pytest.raises(ValueError, match=message):
        Plan.parse(text, layers)


def test_spaces_around_separators_are_ignored():
    want = Plan.parse("ffn_int8:0-2,dtype:bf16", 4)
    for text in (" ffn_int8 : 0 - 2 , dtype : bf16 ", "ffn_int8:0-2,,dtype:bf16,", "ffn_int8: 0-2,dtype: bf16"):
        assert Plan.parse(text, 4) == want


def test_to_string_keeps_every_setting():
    """A float plan's short name drops nothing: probs was lost from "fp16,probs:int8"."""
    for text in ("fp16,probs:int8", "fp16,dtype:bf16,probs:float", "fp16,embedding:fp8"):
        p = Plan.parse(text, 3)
        assert Plan.parse(p.to_string(), 3) == p
    assert Plan.parse("bf16", 3).to_string() == "bf16"


@pytest.mark.parametrize(
    "data, message",
    [
        (["fp16", "fp16"], r"plan JSON must be an object like .*got list: \['fp16', 'fp16'\]"),
        ({"layers": "fp16fp16"}, "layers='fp16fp16' must be a list of layer modes"),  # was read letter by letter
        ({"layers": None}, "layers=None must be a list of layer modes"),  # was a TypeError
        ({"layers": ["fp16", 3]}, "unknown precision mode 3 for layer 1"),
        ({"layers": ["fp16", "fp16"], "dtype": 16}, "dtype=16 must be a string"),
        ({"layers": ["fp16", "fp16"], "embedding": None}, "embedding=None must be a string"),
        ({"layers": ["fp16", "fp16"], "probs": ["int8"]}, r"probs=\['int8'\] must be a string"),
    ],
)
def test_bad_plan_json_is_named(tmp_path, data, message):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"plan file .*plan.json: {message}"):
        Plan.parse(str(path), 2)
    if isinstance(data, dict):
        with pytest.raises(ValueError, match=message):
            Plan.parse(data, 2)


def test_undecodable_plan_file_is_named(tmp_path):
    (tmp_path / "plan.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(ValueError, match="corrupt plan JSON .*plan.json"):  # was a UnicodeDecodeError
        Plan.parse(str(tmp_path / "plan.json"), 2)


def test_plan_must_fit_the_model(tmp_path):
    with pytest.raises(ValueError, match="plan has 4 layer modes, the model has 6 layers"):
        Plan.parse(Plan.uniform("fp16", 4), 6)
    (tmp_path / "bad.json").write_text('{"layers": ["fp16"], "speed": "max"}')
    with pytest.raises(ValueError, match="allows dtype/embedding/probs/smooth; got keys"):
        Plan.parse(str(tmp_path / "bad.json"), 1)
    with pytest.raises(FileNotFoundError, match="plan file .*missing.json not found"):
        Plan.parse(str(tmp_path / "missing.json"), 1)


def test_missing_scales_are_named_by_layer_and_point():
    cfg = minilm_l6()
    plan = Plan.parse("ffn_int8:0-1,full_int8:2,probs:int8", 6)
    have = {p: 1.0 for p in required_points(0, "ffn_int8", "uint8") + required_points(1, "ffn_int8", "uint8")}
    have.update({p: 1.0 for p in required_points(2, "full_int8", "uint8")})  # no probs scale
    with pytest.raises(ValueError, match=r"layer 2 \(full_int8\): layer_2/attention/probs") as e:
        check_plan(plan, cfg, Scales(have))
    assert "layer_2/attention/q" not in str(e.value)
    with pytest.raises(ValueError, match=r"(?s)no scales at all.*layer 0 \(ffn_int8\): layer_0/attention_output"):
        check_plan(plan, cfg, None)
    check_plan(Plan.parse("fp16", 6), cfg, None)  # float plans need no scales


def test_load_takes_plan_string_json_and_stored_default(tmp_path, minilm_dir):
    from samp_jax.checkpoint import set_default_plan
    from samp_jax.cli import main

    out = tmp_path / "ckpt"
    main(["convert", str(minilm_dir), str(out)])
    with pytest.raises(ValueError, match="needs activation scales the checkpoint lacks"):
        samp_jax.load(out, plan="ffn_int8:0-2")
    (tmp_path / "calib.txt").write_text("a first calibration sentence .\nand another , longer one for the ranges .\n")
    assert main(["calibrate", str(out), "--data", str(tmp_path / "calib.txt"), "--quiet"]) == 0
    ids = np.array([[101, 7592, 2088, 102]])
    by_string = samp_jax.load(out, plan="ffn_int8:0-2")
    (tmp_path / "p.json").write_text(json.dumps(by_string.plan.to_dict()))
    by_json = samp_jax.load(out, plan=str(tmp_path / "p.json"))
    set_default_plan(out, by_string.plan.to_string())
    by_default = samp_jax.load(out)
    assert by_default.plan == by_string.plan == by_json.plan
    np.testing.assert_array_equal(np.asarray(by_default(ids)), np.asarray(by_string(ids)))


# ---- typed layer modes ---------------------------------------------------------------------------

MODES = [("fp16", "float", None), ("ffn_int8", "ffn", "int8"), ("full_int8", "full", "int8"),
         ("ffn_fp8", "ffn", "fp8"), ("full_fp8", "full", "fp8")]


@pytest.mark.parametrize("spelling, family, qtype", MODES)
def test_a_layer_mode_parses_from_its_spelling_and_prints_it(spelling, family, qtype):
    mode = LayerMode.parse(spelling)
    assert (mode.family, mode.qtype) == (family, qtype)
    assert str(mode) == f"{mode}" == spelling and type(str(mode)) is str
    assert mode == spelling and hash(mode) == hash(spelling)  # a mode is its spelling wherever strings go
    assert LayerMode.of(family, qtype) is mode and LayerMode.parse(mode) is mode
    assert mode.quantizes_ffn == (family != "float") and mode.quantizes_attention == (family == "full")
    assert mode.input_qtype == (qtype if family == "full" else None)
    assert mode_qtype(spelling) == qtype


def test_float_is_another_spelling_of_the_unquantized_mode_and_plans_keep_writing_fp16():
    assert LayerMode.parse("float") is LayerMode.FLOAT and LAYER_MODES == tuple(m for m, _, _ in MODES)
    plan = Plan.parse("full_int8:0-1,float:2-3,dtype:bf16", 4)
    assert plan.layers == ("full_int8",) * 2 + ("fp16",) * 2 and plan.modes[2] is LayerMode.FLOAT
    assert plan.to_string() == "full_int8:0-1,fp16:2-3,dtype:bf16"
    assert plan.to_dict()["layers"] == ["full_int8", "full_int8", "fp16", "fp16"]
    assert all(type(m) is str for m in plan.to_dict()["layers"])
    assert Plan.parse("float", 2) == Plan.parse("fp16", 2) == Plan(("float", "fp16"))
    assert Plan.from_dict({"layers": ["float", "ffn_fp8"]}).to_string() == "fp16:0,ffn_fp8:1"
    with pytest.raises(ValueError, match="layer 1 is given twice"):
        Plan.parse("float:1,fp16:1", 2)


def test_unknown_layer_modes_are_named():
    for bad in ("fp8", "full_int4", "FP16", "", None, 3):
        with pytest.raises(ValueError, match=f"unknown precision mode {bad!r}"):
            LayerMode.parse(bad)
        with pytest.raises(ValueError, match=rf"unknown precision mode {re.escape(repr(bad))} for layer 1"):
            Plan(("fp16", bad))
    with pytest.raises(ValueError, match="no layer mode of family='full' and qtype=None"):
        LayerMode.of("full")
    with pytest.raises(ValueError, match="no layer mode of family='float' and qtype='int8'"):
        LayerMode.of("float", "int8")


def test_plans_written_before_read_the_same():
    """Plan strings and JSON as older versions wrote them parse to typed modes and write back unchanged."""
    for text in ("ffn_int8:0-7,fp16:8-11", "full_int8", "full_fp8:0+2,fp16:1+3-5,dtype:bf16,probs:int8", "bf16",
                 "fp16,embedding:int8", "full_int8:0,ffn_fp8:1-11,probs:float"):
        plan = Plan.parse(text, 12 if "11" in text or "8-11" in text else 6)
        assert plan.to_string() == text and all(isinstance(m, LayerMode) for m in plan.layers)
        assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
