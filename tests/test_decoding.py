from __future__ import annotations

import pytest

from samp_jax.decoding import decode_entities, split_tag

TEXT = "John Smith lives in New York City ."
WORDS = TEXT.split(" ")


def _offsets():
    out, pos = [], 0
    for w in WORDS:
        out.append((pos, pos + len(w)))
        pos += len(w) + 1
    return out


def _decode(tags, scores=None):
    scores = scores or [1.0] * len(tags)
    return [(s.entity, s.text) for s in decode_entities(tags, _offsets(), scores, TEXT)]


def test_bio():
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC", "O"]
    assert _decode(tags) == [("PER", "John Smith"), ("LOC", "New York City")]


def test_iob1_conll_style():
    # CoNLL-2003 raw tags: I- opens entities; B- only splits adjacent same-type ones.
    tags = ["I-PER", "I-PER", "O", "O", "I-LOC", "B-LOC", "I-LOC", "O"]
    assert _decode(tags) == [("PER", "John Smith"), ("LOC", "New"), ("LOC", "York City")]


def test_type_change_and_stray_inside_open_new_entities():
    tags = ["B-PER", "I-ORG", "O", "I-MISC", "B-LOC", "I-LOC", "I-LOC", "I-LOC"]
    assert _decode(tags) == [("PER", "John"), ("ORG", "Smith"), ("MISC", "in"), ("LOC", "New York City .")]


def test_bioes_and_io():
    assert _decode(["S-PER", "S-PER", "O", "O", "B-LOC", "I-LOC", "E-LOC", "O"]) == [
        ("PER", "John"), ("PER", "Smith"), ("LOC", "New York City")]
    assert _decode(["PER", "PER", "O", "O", "LOC", "LOC", "LOC", "O"]) == [
        ("PER", "John Smith"), ("LOC", "New York City")]


def test_span_offsets_and_mean_score():
    spans = decode_entities(["B-PER", "I-PER"] + ["O"] * 6, _offsets(), [0.9, 0.7] + [1.0] * 6, TEXT)
    assert (spans[0].start, spans[0].end) == (0, 10)
    assert spans[0].score == pytest.approx(0.8)


def test_split_tag_and_length_mismatch():
    assert split_tag("B-PER") == ("B", "PER") and split_tag("O") == ("O", None)
    assert split_tag("I_LOC") == ("I", "LOC") and split_tag("ORG") == ("I", "ORG")
    with pytest.raises(ValueError, match="2 tags, 8 offsets"):
        decode_entities(["O", "O"], _offsets(), [1.0, 1.0], TEXT)
