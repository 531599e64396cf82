"""Token-classification decoding: per-word tags -> entity spans with character offsets.

Accepts BIO (IOB2), IOB1 (CoNLL-2003's raw tags: `I-X` may open an entity,
`B-X` only separates two adjacent entities of one type), BIOES/BILOU, and bare
`X` tags (IO). An `I-X` after `O` or after another type opens a new entity.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

_BEGIN = {"B", "S", "U"}
_SINGLE = {"S", "U"}
_END = {"E", "L"}


@dataclasses.dataclass(frozen=True)
class Span:
    entity: str
    start: int  # character offsets into the text, end exclusive
    end: int
    text: str
    score: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def split_tag(tag: str) -> tuple[str, str | None]:
    """`"B-PER"` -> `("B", "PER")`, `"O"` -> `("O", None)`, `"PER"` -> `("I", "PER")`."""
    if tag == "O":
        return "O", None
    if len(tag) > 2 and tag[1] in "-_" and tag[0] in "BIESUL":
        return tag[0], tag[2:]
    return "I", tag


def decode_entities(
    tags: Sequence[str],
    offsets: Sequence[tuple[int, int]],
    scores: Sequence[float],
    text: str,
) -> list[Span]:
    """Groups consecutive word tags into entity spans.

    Args:
      tags: one tag per word.
      offsets: each word's `(start, end)` character span in `text`.
      scores: each word's probability for its tag; a span's score is their mean.
      text: the original text, to cut the span's surface string.
    """
    if not len(tags) == len(offsets) == len(scores):
        raise ValueError(f"{len(tags)} tags, {len(offsets)} offsets and {len(scores)} scores differ in length")
    spans: list[Span] = []
    current: list[int] = []  # word indices of the open entity
    current_type: str | None = None

    def close() -> None:
        nonlocal current, current_type
        if current:
            assert current_type is not None  # set by the tag that opened the entity
            start, end = offsets[current[0]][0], offsets[current[-1]][1]
            score = sum(scores[i] for i in current) / len(current)
            spans.append(Span(current_type, start, end, text[start:end], float(score)))
        current, current_type = [], None

    for i, tag in enumerate(tags):
        prefix, etype = split_tag(tag)
        if prefix == "O":
            close()
            continue
        if prefix in _BEGIN or etype != current_type:
            close()
            current_type = etype
        current.append(i)
        if prefix in _SINGLE or prefix in _END:
            close()
    close()
    return spans
