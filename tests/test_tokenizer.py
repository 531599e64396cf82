from __future__ import annotations

import numpy as np
import pytest

from samp_jax.tokenizer import TokenizerFrontEnd, normalize_inputs


@pytest.fixture(scope="module")
def front(minilm_dir):
    return TokenizerFrontEnd.from_str((minilm_dir / "tokenizer.json").read_text(), max_seq_len=512, pad_id=0)


def test_matches_hf_tokenizer_and_pads_to_buckets(front, minilm_dir, real_sentences):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(minilm_dir)
    encs = front.encode(real_sentences[:5])
    batch = front.pad(encs)
    longest = max(len(e.ids) for e in encs)
    assert batch.input_ids.shape == (8, front.seq_bucket(longest))  # 5 rows -> batch bucket 8
    assert batch.input_ids.shape[1] in (32, 64, 128)
    assert batch.num_examples == 5
    for i, s in enumerate(real_sentences[:5]):
        ref = hf(s)["input_ids"]
        assert list(batch.input_ids[i, : len(ref)]) == ref
        assert batch.attention_mask[i].sum() == len(ref)
        assert not batch.input_ids[i, len(ref) :].any()
    assert not batch.attention_mask[5:].any()  # batch padding rows are empty


def test_pairs_get_token_types(front):
    [enc] = front.encode([("first sentence here", "second one")])
    batch = front.pad([enc], pad_batch=False)
    types = batch.token_type_ids[0, : len(enc.ids)]
    assert types[0] == 0 and types[-1] == 1 and set(np.unique(types)) == {0, 1}
    assert batch.input_ids.shape == (1, 32)


def _pad_row_by_row(front, encodings):
    """`pad` as a plain loop over rows: what the vectorized one must equal."""
    seq = front.seq_bucket(max(len(e.ids) for e in encodings))
    ids = np.full((front.batch_bucket(len(encodings)), seq), front.pad_id, np.int32)
    mask, types = np.zeros_like(ids), np.zeros_like(ids)
    for i, e in enumerate(encodings):
        ids[i, : len(e.ids)], mask[i, : len(e.ids)], types[i, : len(e.ids)] = e.ids, 1, e.type_ids
    return ids, mask, types


@pytest.mark.parametrize("single_type", [0, 1])
def test_pad_equals_a_row_by_row_loop(minilm_dir, real_sentences, single_type):
    """Singles, pairs and a template that gives a single text a non-zero type (types are skipped only where
    the post-processor makes them all 0)."""
    from tokenizers.processors import TemplateProcessing

    front = TokenizerFrontEnd.from_str((minilm_dir / "tokenizer.json").read_text(), max_seq_len=512, pad_id=7)
    if single_type:
        front.tokenizer.post_processor = TemplateProcessing(
            single="[CLS]:0 $A:1 [SEP]:1", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", 101), ("[SEP]", 102)])
        front = TokenizerFrontEnd(front.tokenizer, max_seq_len=512, pad_id=7)
    for items in (real_sentences[:13], list(zip(real_sentences[:5], real_sentences[5:10]))):
        encs = front.encode(items)
        b = front.pad(encs)
        want = _pad_row_by_row(front, encs)
        for got, ref in zip((b.input_ids, b.attention_mask, b.token_type_ids), want):
            np.testing.assert_array_equal(got, ref)
    assert b.token_type_ids.any()  # the pairs' second texts
    assert bool(front.pad(front.encode(real_sentences[:3])).token_type_ids.any()) == bool(single_type)


def test_long_input_raises_unless_truncation(front):
    text = "word " * 600
    with pytest.raises(ValueError, match=r"input 1 is \d+ tokens long, more than max_length=512"):
        front.encode(["short", text])
    [enc] = front.encode([text], truncation=True, max_length=100)
    assert len(enc.ids) == 100
    [enc] = front.encode([text], truncation=True)
    assert len(enc.ids) == 512
    with pytest.raises(ValueError, match="max_length=1000 must be in"):
        front.encode(["x"], max_length=1000)
    # truncation is not left switched on for the next call
    with pytest.raises(ValueError, match="more than max_length"):
        front.encode([text])


def test_buckets():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    f = TokenizerFrontEnd(Tokenizer(WordLevel({"a": 0}, unk_token="a")), max_seq_len=200, pad_id=0)
    assert f.seq_buckets == (32, 64, 128, 200)
    assert [f.seq_bucket(n) for n in (1, 32, 33, 129, 200)] == [32, 32, 64, 200, 200]
    assert [f.batch_bucket(n) for n in (1, 3, 8, 9, 300)] == [1, 4, 8, 16, 300]
    with pytest.raises(ValueError, match="201 tokens exceeds max_seq_len=200"):
        f.seq_bucket(201)


@pytest.mark.parametrize(
    "inputs, message",
    [
        ([], "empty batch"),
        (["a", ("b", "c")], "item 1 is tuple"),
        ([("a", "b"), ("c",)], "item 1 is"),
        ([3], "item 0 is int"),
    ],
)
def test_normalize_inputs_errors(inputs, message):
    with pytest.raises(ValueError, match=message):
        normalize_inputs(inputs)


def test_normalize_inputs_forms():
    assert normalize_inputs("one text") == (["one text"], False)
    assert normalize_inputs([["a", "b"]]) == ([("a", "b")], True)


def test_encoding_without_offsets_gives_the_same_tokens(front, real_sentences):
    pairs = list(zip(real_sentences[:6], real_sentences[6:12]))
    for items, kw in ((real_sentences, {}), (real_sentences, dict(truncation=True, max_length=12)), (pairs, {})):
        full, fast = front.encode(items, **kw), front.encode(items, offsets=False, **kw)
        assert [e.ids for e in fast] == [e.ids for e in full]
        assert [e.type_ids for e in fast] == [e.type_ids for e in full]
