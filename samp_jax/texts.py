"""Reading input texts from files: plain text (one per line), TSV/CSV with a header row, or JSON lines.

Every failure names the file (and the line or row where there is one): a missing file,
bytes that are not UTF-8, a line that is not JSON, a row without the asked column, no texts.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path


def read_text_file(path: Path, what: str = "input file") -> str:
    """The file's text, decoded as UTF-8 (a byte-order mark is dropped); errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found" + (" (it is a folder)" if path.is_dir() else ""))
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line} is not UTF-8 text (byte {data[e.start:e.start + 1]!r} at offset {e.start}); "
            "convert the file to UTF-8"
        ) from None


def json_line(path: Path, n: int, line: str) -> dict:
    """Line `n` of a JSON-lines file as its object; anything else is named by file and line number."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{n} is not a JSON line: {e}") from None
    if not isinstance(row, dict):
        raise ValueError(f"{path}:{n} holds a JSON {type(row).__name__}, expected an object")
    return row


def json_line_rows(path: Path, text: str) -> list[dict]:
    """The objects of a JSON-lines file's text (blank lines skipped); a bad line is named by file and number."""
    return [json_line(path, n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_texts(path: str | Path, text_field: str | None = None, limit: int | None = None, *,
               what: str = "input file") -> list:
    """Texts from plain text (one per line, blank lines skipped), JSONL or TSV/CSV.

    `text_field` names the column ("sentence" by default for TSV/CSV; required for JSONL);
    "a,b" reads (a, b) pairs. `limit` keeps the first N.
    """
    path = Path(path)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0):
        raise ValueError(f"limit={limit!r} must be a positive integer")
    text = read_text_file(path, what)
    fields = [f.strip() for f in text_field.split(",")] if text_field else None
    if fields is not None and (not all(fields) or len(fields) > 2):
        raise ValueError(f"text_field={text_field!r} must name one column, or two separated by a comma")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        if not fields:
            raise ValueError(f"{path} is JSON lines: pass --text-field (e.g. sentence, or sentence1,sentence2)")
        rows = json_line_rows(path, text)
    elif suffix in (".tsv", ".csv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",",
                                quoting=csv.QUOTE_NONE)
        rows = list(reader)
        fields = fields or ["sentence"]
    else:
        if fields:
            raise ValueError(f"{path} is plain text (one input per line): it has no columns for "
                             f"text_field={text_field!r}; use a .tsv, .csv or .jsonl file")
        texts = [line for line in text.splitlines() if line.strip()][:limit]
        if not texts:
            raise ValueError(f"{path} holds no texts")
        return texts
    out: list = []
    for n, row in enumerate(rows[:limit]):
        missing = [f for f in fields if f not in row or row[f] is None]
        if missing:
            raise ValueError(f"{path} row {n} lacks field(s) {missing}; it has {sorted(k for k in row if k)}")
        values = tuple(str(row[f]) for f in fields)
        out.append(values[0] if len(values) == 1 else values)
    if not out:
        raise ValueError(f"{path} holds no texts")
    return out
