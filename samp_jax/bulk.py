"""Bulk inference: a file of any size in, one result per row out, in bounded memory, resumable after a kill.

The input (JSON lines, CSV/TSV with a header, Parquet, or plain text one row a line) is read as a stream and
cut into chunks of `chunk_rows` rows: chunk k holds rows [k * chunk_rows, (k + 1) * chunk_rows). Each chunk's
results are written, atomically, to its own part file in `OUTPUT.parts/`, which also holds the job's
description (`job.json`: the input's path, size and modification time, the kind, the plan, the columns, the
chunk size). A run that finds that folder skips the chunks whose part exists (their rows are read and
dropped, not recomputed), so a job killed at any moment resumes with no row lost or computed twice; a
description that does not match the new run is an error naming what differs. When every chunk is done, the
parts are joined in order into OUTPUT (written beside it, then renamed) and the folder is removed.

With `ray_workers`, the chunks are computed by that many Ray actors (one GPU each where the Ray cluster has
GPUs, else one CPU each), each holding the model, while this process reads the input, keeps at most two
chunks per actor in flight, and writes the part files as results come back: the output, the resume and the
memory bound are the same as without Ray, and no storage needs to be shared between machines. (Ray Core's
actors rather than Ray Data: Ray Data's distributed reads give rows no stable index, which resuming with
every row exactly once needs.) Install with `pip install "samp-jax[ray]"`.

Every output row carries `row`, the input row's index (0-based, counting data rows only), and the result:
`embedding` (embed), or what `SampModel.predict` returns for the row (`label`/`score`/`scores`, `labels`/
`scores`, `entities`, or `embedding`/`similarity` for a bare encoder). Parquet needs pyarrow
(`pip install "samp-jax[bulk]"`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from samp_jax.fileio import atomic_write_bytes, atomic_write_text
from samp_jax.model import SampModel
from samp_jax.texts import json_line

KINDS = ("embed", "predict")
INPUT_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")
OUTPUT_SUFFIXES = (".jsonl", ".parquet")
DEFAULT_CHUNK_ROWS = 4096


@dataclasses.dataclass(frozen=True)
class BulkResult:
    """What a finished job did: rows in the output, chunks computed now and chunks a previous run had done."""

    output: Path
    rows: int
    computed_chunks: int
    resumed_chunks: int


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError('Parquet files need pyarrow: pip install "samp-jax[bulk]"') from None
    return pa, pq


def _fields(text_field: str | None, suffix: str) -> list[str] | None:
    if suffix == ".txt":
        if text_field is not None:
            raise ValueError(f"text_field={text_field!r}: a .txt input has one text a line and no columns")
        return None
    fields = [f.strip() for f in (text_field or "sentence").split(",")]
    if not all(fields) or len(fields) > 2:
        raise ValueError(f"text_field={text_field!r} must name one column, or two separated by a comma")
    return fields


def _item(row: dict, fields: list[str], where: str) -> str | tuple[str, str]:
    values = []
    for f in fields:
        if f not in row:
            raise ValueError(f"{where} has no column {f!r}; it has {sorted(row)} (choose one with --text-field)")
        v = row[f]
        if not isinstance(v, str):
            raise ValueError(f"{where} column {f!r} holds {type(v).__name__} {v!r}, not text")
        values.append(v)
    return values[0] if len(values) == 1 else (values[0], values[1])


def read_rows(path: Path, text_field: str | None) -> Iterator[str | tuple[str, str]]:
    """The input's texts (or pairs, for a `a,b` text_field), one per data row, streamed."""
    suffix = path.suffix.lower()
    fields = _fields(text_field, suffix)
    if suffix == ".parquet":
        _, pq = _pyarrow()
        file = pq.ParquetFile(path)
        missing = [f for f in fields or () if f not in file.schema_arrow.names]
        if missing:
            raise ValueError(f"{path} has no column {missing[0]!r}; it has {file.schema_arrow.names}")
        n = 0
        for batch in file.iter_batches(columns=fields, batch_size=1024):
            for row in batch.to_pylist():
                yield _item(row, fields or [], f"{path} row {n}")
                n += 1
        return
    with open(path, encoding="utf-8-sig", newline="") as f:
        if suffix in (".csv", ".tsv"):
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            for n, row in enumerate(reader):
                yield _item(row, fields or [], f"{path} row {n} (line {reader.line_num})")
            return
        n = 0
        for line_no, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if suffix == ".txt":
                yield line
            else:
                yield _item(json_line(path, line_no, line), fields or [], f"{path}:{line_no}")
            n += 1


def _records(model: SampModel, kind: str, items: list, first_row: int, batch_size: int, truncation: bool,
             max_length: int | None) -> list[dict[str, Any]]:
    kw: dict[str, Any] = dict(batch_size=batch_size, truncation=truncation, max_length=max_length, progress=False)
    if kind == "embed":
        out: Any = model.embed(items, **kw)
    else:
        out = model.predict(items, **kw)
    records = []
    for i, r in enumerate(out):
        if isinstance(r, dict):
            rec = dict(r)
        elif isinstance(r, list):
            rec = {"entities": r}
        elif np.ndim(r) == 1:
            rec = {"embedding": np.asarray(r, np.float32).tolist()}
        else:
            rec = {"similarity": float(r)}
        records.append({"row": first_row + i, **rec})
    return records


def _encode_part(records: list[dict], suffix: str) -> bytes:
    if suffix == ".jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    pa, pq = _pyarrow()
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), buf)
    return buf.getvalue()


def _job_description(model: SampModel, kind: str, path: Path, output: Path, text_field: str | None,
                     chunk_rows: int) -> dict[str, Any]:
    st = path.stat()
    return {"kind": kind, "input": str(path.resolve()), "input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns,
            "text_field": text_field, "chunk_rows": chunk_rows, "plan": model.plan.to_string(),
            "model": str(model.source), "output": output.suffix.lower()}


def _join_parts(parts: list[Path], output: Path, suffix: str) -> None:
    tmp = output.with_name(f".{output.name}.joining")
    if suffix == ".jsonl":
        with open(tmp, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out)
            out.flush()
            os.fsync(out.fileno())
    else:
        _, pq = _pyarrow()
        writer = None
        try:
            for p in parts:
                table = pq.read_table(p)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # no rows: an empty file with just the row column
            pa, _ = _pyarrow()
            pq.write_table(pa.table({"row": pa.array([], pa.int64())}), tmp)
    os.replace(tmp, output)


def run_bulk(model: SampModel, kind: str, input_path: str | Path, output_path: str | Path, *,
             text_field: str | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS, batch_size: int = 32,
             truncation: bool = False, max_length: int | None = None, force: bool = False,
             progress: bool = True, ray_workers: int | None = None) -> BulkResult:
    """Runs `model.embed` or `model.predict` over every row of `input_path`, writing `output_path`.

    Resumes a killed run of the same job from its part files (see the module docstring); `force` replaces
    an existing output. `text_field` names the column ("sentence" by default; "a,b" reads pairs).
    `ray_workers`: compute the chunks on that many Ray actors (Ray initialized here, or reached through
    `RAY_ADDRESS`; see the module docstring).
    """
    if ray_workers is not None and (not isinstance(ray_workers, int) or isinstance(ray_workers, bool)
                                    or ray_workers < 1):
        raise ValueError(f"ray_workers={ray_workers!r} must be a positive integer")
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: choose one of {KINDS}")
    path, output = Path(input_path), Path(output_path)
    if path.suffix.lower() not in INPUT_SUFFIXES:
        raise ValueError(f"input {path}: read are {INPUT_SUFFIXES} files, not {path.suffix or 'no suffix'!r}")
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} not found" + (" (it is a folder)" if path.is_dir() else ""))
    suffix = output.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"output {output}: written are {OUTPUT_SUFFIXES} files, not {output.suffix or 'no suffix'!r}")
    if suffix == ".parquet" or path.suffix.lower() == ".parquet":
        _pyarrow()
    if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows!r} must be a positive integer")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"cannot write {output}: folder {output.parent} does not exist")
    parts_dir = output.with_name(output.name + ".parts")
    if parts_dir.is_symlink() or (parts_dir.exists() and not parts_dir.is_dir()):
        raise ValueError(f"{parts_dir} is in the way of the job's part files (a link or a file); remove it")
    if output.exists() and not parts_dir.exists():
        if not force:
            raise FileExistsError(f"{output} exists; pass force=True (--force) to replace it")
        if output.is_dir() and not output.is_symlink():
            raise IsADirectoryError(f"cannot write {output}: it is a folder")
    job = _job_description(model, kind, path, output, text_field, chunk_rows)
    job_file = parts_dir / "job.json"
    if parts_dir.exists():
        try:
            stored = json.loads(job_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stored = None
        if not isinstance(stored, dict):
            raise ValueError(f"{parts_dir} holds no readable job.json; remove the folder to start over")
        differs = sorted(k for k in job if stored.get(k) != job[k])
        if differs:
            changed = ", ".join(f"{k}: {stored.get(k)!r} now {job[k]!r}" for k in differs)
            raise ValueError(f"{parts_dir} belongs to another job ({changed}); remove the folder to start over")
    else:
        parts_dir.mkdir()
        atomic_write_text(job_file, json.dumps(job, indent=1))

    def part(k: int) -> Path:
        return parts_dir / f"part-{k:06d}{suffix}"

    computed = resumed = rows = 0
    chunk: list = []
    bar = tqdm(desc=kind, unit="row", disable=not progress)
    settings = dict(kind=kind, batch_size=batch_size, truncation=truncation, max_length=max_length)
    pool = None if ray_workers is None else _RayChunks(model, ray_workers, settings)

    def write(k: int, records: list[dict]) -> None:
        nonlocal computed
        atomic_write_bytes(part(k), _encode_part(records, suffix))
        computed += 1
        bar.update(len(records))

    def finish(k: int, items: list) -> None:
        nonlocal resumed
        if part(k).exists():
            resumed += 1
            bar.update(len(items))
        elif pool is None:
            write(k, _records(model, kind, items, k * chunk_rows, batch_size, truncation, max_length))
        else:
            for done in pool.submit(k, k * chunk_rows, items):
                write(*done)

    try:
        for item in read_rows(path, text_field):
            chunk.append(item)
            rows += 1
            if len(chunk) == chunk_rows:
                finish(rows // chunk_rows - 1, chunk)
                chunk = []
        if chunk:
            finish(rows // chunk_rows, chunk)
        if pool is not None:
            for done in pool.drain():
                write(*done)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
    chunks = -(-rows // chunk_rows)
    _join_parts([part(k) for k in range(chunks)], output, suffix)
    shutil.rmtree(parts_dir)
    return BulkResult(output, rows, computed, resumed)


class _ChunkWorker:
    """A Ray actor's state: the model, loaded once, and the job's settings."""

    def __init__(self, checkpoint: Any, plan: str, kernels: str, settings: dict[str, Any]):
        self.model = SampModel(checkpoint, plan=plan, kernels=kernels)
        self.settings = settings

    def run(self, k: int, first_row: int, items: list) -> tuple[int, list[dict[str, Any]]]:
        s = self.settings
        return k, _records(self.model, s["kind"], items, first_row, s["batch_size"], s["truncation"],
                           s["max_length"])


class _RayChunks:
    """Chunks computed by `workers` Ray actors, at most two per actor in flight; results in completion order."""

    def __init__(self, model: SampModel, workers: int, settings: dict[str, Any]):
        try:
            import ray
        except ImportError:
            raise ValueError('ray_workers needs Ray: pip install "samp-jax[ray]"') from None
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
        gpus = ray.cluster_resources().get("GPU", 0)
        actor = (ray.remote(num_gpus=1) if gpus >= 1 else ray.remote(num_cpus=1))(_ChunkWorker)
        self.ray = ray
        checkpoint = ray.put(model.checkpoint)  # the float weights, once into the object store
        # typed Any: Ray's stubs give a class's methods no `.remote`
        self.actors: list[Any] = [actor.remote(checkpoint, model.plan.to_string(), model.kernels, settings)
                                  for _ in range(workers)]
        self.load: dict[int, int] = {i: 0 for i in range(workers)}  # chunks in flight per actor
        self.pending: dict[Any, int] = {}  # result ref -> actor index

    def submit(self, k: int, first_row: int, items: list) -> list[tuple[int, list[dict]]]:
        done = []
        while len(self.pending) >= 2 * len(self.actors):
            done += self._wait()
        i = min(self.load, key=self.load.__getitem__)
        self.load[i] += 1
        self.pending[self.actors[i].run.remote(k, first_row, items)] = i
        return done

    def drain(self) -> list[tuple[int, list[dict]]]:
        done = []
        while self.pending:
            done += self._wait()
        return done

    def _wait(self) -> list[tuple[int, list[dict]]]:
        ready, _ = self.ray.wait(list(self.pending), num_returns=1)
        out = []
        for ref in ready:
            self.load[self.pending.pop(ref)] -= 1
            out.append(self.ray.get(ref))
        return out

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
