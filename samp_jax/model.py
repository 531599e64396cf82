"""`SampModel`: a converted checkpoint built for one precision plan, jit-compiled.

One XLA executable is compiled per (plan, batch bucket, sequence bucket). The
tokenizer front end pads texts to those buckets, and direct calls on ids pad
theirs the same way (masked rows and columns, cut off the result), so that
every caller reuses the same few executables: compiling costs seconds, a padded
call microseconds. The cache holds at most `MAX_EXECUTABLES` (least recently
used go first) for callers whose batches exceed the largest bucket.

A model may be called from many threads at once: each executable is compiled
once (other threads asking for it wait), and the tokenizer is never reconfigured.

`devices` spreads every batch's rows over several local devices (`samp_jax.sharding`):
parameters replicated, rows split, outputs equal to the single-device ones.

Its public seams: `compiled(kind, batch, seq)` gives one compiled forward pass with
its parameters (benchmarks, the tuner, profilers); `float32()`, `batches(...)` and
`observe(...)` are what calibration runs (`samp_jax.calibration.Observable`). This
module is the library core: it reads samp-jax checkpoints and never imports
`convert`; `samp_jax.load` (`samp_jax.api`, the entry layer) converts Hugging Face
folders on the fly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from tokenizers import Encoding
from tqdm.auto import tqdm

import pallas_kernels as ops
from samp_jax.checkpoint import Checkpoint
from samp_jax.compiled import OUTPUT_KINDS, CompiledForward
from samp_jax.decoding import Span, decode_entities
from samp_jax.heads import EncoderWithHead
from samp_jax.packing import MIN_WIDTH, PackedBatch, max_per_row, pack, place, slot_pool, unpackable
from samp_jax.plan import Plan
from samp_jax.pooling import DEFAULT_POOLING, embed_hidden, l2_normalize, pool
from samp_jax.quant import points
from samp_jax.quant.build import build_params
from samp_jax.sharding import DataParallel, Devices
from samp_jax.tokenizer import (
    DEFAULT_BATCH_BUCKETS,
    DEFAULT_SEQ_BUCKETS,
    PaddedBatch,
    TokenizerFrontEnd,
    normalize_inputs,
)
from samp_jax.validation import check_inputs

DEFAULT_PLAN = "fp32"
MAX_EXECUTABLES = 64
# `packing=None` packs a batch where its rows compute at most this share of the padded layout's tokens: a
# packed row attends over its whole width (masked per sequence), so a small saving in GEMM rows is not worth it
PACK_BELOW = 0.8
PACKED_ROW_STEP = 16
# `embed`/`predict` dispatch this many batches ahead of the one they read back: JAX dispatch returns at once, so
# the host lays out and dispatches batch n+1 (and n+2) while batch n runs, and reads n back as the device goes on
IN_FLIGHT = 2


class SampModel:
    """A BERT-family encoder with its task head, built for one precision plan.

    Call it on ids (`model(input_ids, attention_mask, token_type_ids)`) for the
    head's float32 output (the last hidden state for a bare encoder), or on
    texts (`model.predict(...)`) for decoded predictions.
    """

    def __init__(self, checkpoint: Checkpoint, plan: str | Plan | None = None, *, kernels: str = "auto",
                 devices: Devices = None):
        self.config = checkpoint.config
        self.task = checkpoint.task
        stored = checkpoint.plan if checkpoint.plan is not None else DEFAULT_PLAN
        self.plan = Plan.parse(plan if plan is not None else stored, self.config.num_layers)
        self.scales = checkpoint.scales
        # a bi-encoder's pooling (sentence-transformers'); checkpoints that record none are mean-pooled and normalized
        self.pooling = checkpoint.pooling if checkpoint.pooling is not None else DEFAULT_POOLING
        self.source = checkpoint.source
        if kernels not in ("auto", "xla"):
            raise ValueError(f"kernels={kernels!r}: choose 'auto' (Pallas kernels where the device runs them) or 'xla'")
        self.kernels = kernels
        self._module = EncoderWithHead(self.config, self.task, self.plan)
        self.checkpoint = checkpoint  # the float parameters and metadata this plan was built from
        self._params = build_params(checkpoint.params, self.config, self.plan, self.scales)
        self.parallel = DataParallel.over(devices)  # None: the default device alone
        if self.parallel is not None:
            self._params = self.parallel.replicate(self._params)
        # One compiled executable per (output kind, batch, seq), built ahead of time; least recently used go first.
        self._executables: OrderedDict[tuple[str, int, int, bool], Any] = OrderedDict()
        self._compile_locks: dict[tuple[str, int, int, bool], threading.Lock] = {}
        self._lock = threading.Lock()
        self._observe_fn: Any = None  # the jitted observing forward pass, made on first use
        self._pool_fn: Any = None  # the jitted pooling of hidden states without normalization, made on first use
        self._seq_buckets = tuple(sorted({b for b in DEFAULT_SEQ_BUCKETS if b < self.config.max_seq_len}
                                         | {self.config.max_seq_len}))
        self.tokenizer = None
        if checkpoint.tokenizer_json is not None:
            self.tokenizer = TokenizerFrontEnd.from_str(
                checkpoint.tokenizer_json, max_seq_len=self.config.max_seq_len, pad_id=self.config.pad_token_id
            )

    def __repr__(self) -> str:
        c = self.config
        on = "" if self.parallel is None else f", devices={self.parallel.size}"
        return (f"SampModel({c.model_type}, layers={c.num_layers}, hidden={c.hidden_size}, "
                f"task={self.task.kind}, plan={self.plan.to_string()!r}{on})")

    # ---- ids in, arrays out -------------------------------------------------
    def __call__(self, input_ids, attention_mask=None, token_type_ids=None) -> jax.Array:
        """The head's output for `[batch, seq]` ids: logits, or the last hidden state."""
        ids, mask, types = check_inputs(self.config, input_ids, attention_mask, token_type_ids)
        return self._run_bucketed("head", ids, mask, types)

    def hidden_states(self, input_ids, attention_mask=None, token_type_ids=None) -> jax.Array:
        """The encoder's last hidden state `[batch, seq, hidden]` in float32, whatever the head."""
        ids, mask, types = check_inputs(self.config, input_ids, attention_mask, token_type_ids)
        return self._run_bucketed("hidden", ids, mask, types)

    def _forward(self, kind: str, params, ids, mask, types, packed: bool = False):
        if kind == "embed":  # the model's pooling, always L2-normalized: cosines are dot products
            hidden = cast(jax.Array, self._module.apply({"params": params}, ids, mask, types, output="hidden",
                                                        packed=packed))
            if packed:  # per slot, [R, K, hidden]
                return l2_normalize(slot_pool(hidden, mask, max_per_row(ids.shape[1]), self.pooling.mode))
            return embed_hidden(hidden, mask, self.pooling, normalize=True)
        return self._module.apply({"params": params}, ids, mask, types, output=kind, packed=packed)

    def compiled(self, kind: str, batch: int, seq: int, *, packed: bool = False) -> CompiledForward:
        """The forward pass for `kind` ("head", "hidden", "embed") compiled for `[batch, seq]` ids, with this
        plan's parameters: call it on `(ids, mask, types)` of that shape. Built once per shape and cached.
        `packed`: rows of packed sequences, the mask holding segment ids (`samp_jax.packing`)."""
        if kind not in OUTPUT_KINDS:
            raise ValueError(f"unknown output kind {kind!r}; known: {OUTPUT_KINDS}")
        return CompiledForward(kind, (batch, seq), self.executable(kind, batch, seq, packed=packed), self._params)

    def executable(self, kind: str, batch: int, seq: int, *, packed: bool = False):
        """The compiled executable for `kind` ("head", "hidden", "embed") at one shape, built once; it takes the
        parameters as its first argument (`compiled` binds them). `packed`: see `compiled`."""
        if packed and (why := self.unpackable(self.pooling.mode if kind == "embed" else None)) is not None:
            raise ValueError(why)
        key = (kind, batch, seq, packed)
        with self._lock:
            if key in self._executables:
                self._executables.move_to_end(key)
                return self._executables[key]
            compile_lock = self._compile_locks.setdefault(key, threading.Lock())
        with compile_lock:  # one thread compiles a shape; the others wait for it
            with self._lock:
                if key in self._executables:
                    return self._executables[key]
            def forward(p, i, m, t):
                return self._forward(kind, p, i, m, t, packed)

            # names the executable (and its persistent-cache entry)
            forward.__name__ = f"samp_jax_{kind}" + ("_packed" if packed else "")
            jitted: Any
            if self.parallel is None:
                ids, jitted = jax.ShapeDtypeStruct((batch, seq), jnp.int32), jax.jit(forward)
            else:
                ids, jitted = self.parallel.input_spec(batch, seq), self.parallel.wrap(forward)
            with ops.xla_only(self.kernels == "xla"):
                compiled = jitted.lower(self._params, ids, ids, ids).compile()
            with self._lock:
                self._executables[key] = compiled
                while len(self._executables) > MAX_EXECUTABLES:
                    self._executables.popitem(last=False)
                self._compile_locks.pop(key, None)
        return compiled

    def _run(self, kind: str, ids, mask, types) -> jax.Array:
        """Runs `[B, S]` inputs in the executable of their shape; on several devices, B is first padded with
        masked rows to split evenly (the result keeps them: callers read their own rows)."""
        batch = ids.shape[0]
        if self.parallel is not None and self.parallel.rows(batch) != batch:
            pad = ((0, self.parallel.rows(batch) - batch), (0, 0))
            ids, mask, types = np.pad(ids, pad, constant_values=self.config.pad_token_id), np.pad(mask, pad), \
                np.pad(types, pad)
        return self.executable(kind, *ids.shape)(self._params, ids, mask, types)

    def _bucket_shape(self, batch: int, seq: int) -> tuple[int, int]:
        """The executable shape a `[batch, seq]` call runs in: the smallest buckets that hold it."""
        rows = next((b for b in DEFAULT_BATCH_BUCKETS if batch <= b), None)
        if rows is None:  # past the largest bucket: whole multiples of it
            top = DEFAULT_BATCH_BUCKETS[-1]
            rows = -(-batch // top) * top
        if self.parallel is not None:
            rows = self.parallel.rows(rows)
        return rows, next(b for b in self._seq_buckets if seq <= b)

    def _run_bucketed(self, kind: str, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> jax.Array:
        """Runs checked `[B, S]` inputs in their bucket's executable; returns the caller's shape.

        Padding tokens are masked (they attend nowhere and no real token attends to them) and
        padding rows are cut off, so real positions get what the `[B, S]` executable computes up
        to float reduction order.
        """
        batch, seq = ids.shape
        rows, cols = self._bucket_shape(batch, seq)
        if (rows, cols) == (batch, seq):
            return self._run(kind, ids, mask, types)
        pad = ((0, rows - batch), (0, cols - seq))
        out = self._run(kind, np.pad(ids, pad, constant_values=self.config.pad_token_id), np.pad(mask, pad),
                        np.pad(types, pad))
        out = out[:batch]
        return out[:, :seq] if out.ndim == 3 else out  # [B, S, ...] outputs (hidden states, token logits)

    # ---- packed batches: several sequences to a row ------------------------------
    def unpackable(self, pooling_mode: str | None = None) -> str | None:
        """Why this model cannot run packed batches (None: it can): its architecture or pooling
        (`samp_jax.packing.unpackable`)."""
        return unpackable(self.config, pooling_mode)

    def pack(self, ids: Sequence[Sequence[int]], types: Sequence[Sequence[int]] | None = None) -> PackedBatch:
        """Packs token id sequences (and token types) into rows this model runs (`samp_jax.packing`): rows as
        wide as the sequence bucket of the longest (at least `packing.MIN_WIDTH`, at most `max_seq_len`), their
        count padded to a batch bucket (and to split evenly over `devices`)."""
        if not ids:
            raise ValueError("pack: no sequences")
        width = self._pack_width(max(len(x) for x in ids))
        return pack(ids, types, width=width, pad_id=self.config.pad_token_id, rows=self._packed_rows)

    def _packed_rows(self, rows: int) -> int:
        """The row count a packed batch is padded to: a batch bucket up to `PACKED_ROW_STEP`, then whole
        multiples of it (a packed batch is sized by its tokens, often past the largest batch bucket, where
        doubling would pad away what packing saved)."""
        if rows <= PACKED_ROW_STEP:
            rows = next(b for b in DEFAULT_BATCH_BUCKETS if rows <= b)
        else:
            rows = -(-rows // PACKED_ROW_STEP) * PACKED_ROW_STEP
        return rows if self.parallel is None else self.parallel.rows(rows)

    def _pack_width(self, longest: int) -> int:
        if longest > self.config.max_seq_len:
            raise ValueError(f"pack: a sequence of {longest} tokens exceeds max_seq_len={self.config.max_seq_len}")
        return next(b for b in self._seq_buckets if max(longest, min(MIN_WIDTH, self.config.max_seq_len)) <= b)

    def run_packed(self, kind: str, batch: PackedBatch) -> jax.Array:
        """`kind`'s output for a `PackedBatch` (from `pack`): "hidden" and a token head's `[R, W, ...]` (cut
        each sequence out with `batch.tokens`), a sequence head's and "embed"'s `[R, K, ...]` per slot (in input
        order: `batch.sequences`)."""
        ids, seg, types = batch.input_ids, batch.segment_ids, batch.token_type_ids
        if batch.max_per_row != max_per_row(ids.shape[1]):
            raise ValueError(f"a packed batch of width {ids.shape[1]} holds {max_per_row(ids.shape[1])} sequences "
                             f"a row in this model's executables, not {batch.max_per_row}: pack with model.pack")
        return self.executable(kind, *ids.shape, packed=True)(self._params, ids, seg, types)

    def packs_better(self, lengths: Sequence[int]) -> bool:
        """Whether packing sequences of these lengths computes at most `PACK_BELOW` of the tokens of their
        padded layout (and the model runs packed)."""
        if self.unpackable(self.pooling.mode) is not None or not lengths:
            return False
        width = self._pack_width(max(lengths))
        return self._pays(self._packed_rows(place(lengths, width).rows) * width, lengths)

    def _may_pay(self, lengths: Sequence[int]) -> bool:
        """Whether packing could pay: the fewest rows the tokens fill, unbroken, must pay (`_pays`). Checked
        before packing, which costs more than the answer is worth where the padded layout is tight (one text)."""
        width = self._pack_width(max(lengths))
        return self._pays(self._packed_rows(-(-sum(lengths) // width)) * width, lengths)

    def _pays(self, packed_tokens: int, lengths: Sequence[int]) -> bool:
        return bool(packed_tokens <= PACK_BELOW * np.prod(self._bucket_shape(len(lengths), max(lengths))))

    # ---- calibration: the float model's activations ----------------------------
    def float32(self) -> SampModel:
        """This checkpoint in the fp32 plan (the model itself if that is its plan): what calibration observes."""
        if self.plan.to_string() == "fp32":
            return self
        return SampModel(self.checkpoint, plan="fp32", kernels=self.kernels)

    def observe(self, input_ids, attention_mask=None, token_type_ids=None) -> dict[str, jax.Array]:
        """The activations at every quantization point for one batch, keyed like `Scales.activations`
        (`layer_3/attention/q`, see `samp_jax.quant.points`), from this float plan's forward pass.

        Rows that are all padding are allowed (calibration pads its last batch).
        """
        if self.plan.is_quantized:
            raise ValueError(f"observe runs a float plan, this model's is {self.plan}; use model.float32()")
        ids, mask, types = check_inputs(self.config, input_ids, attention_mask, token_type_ids,
                                        allow_padding_rows=True)
        if self._observe_fn is None:
            module = self._module

            def observe(p, i, m, t):
                return module.apply({"params": p}, i, m, t, output="hidden", mutable=["intermediates"])[1]

            self._observe_fn = jax.jit(observe)
        with ops.xla_only(self.kernels == "xla"):
            state = self._observe_fn(self._params, ids, mask, types)
        return points.observed(state["intermediates"])

    # ---- texts in, predictions out ------------------------------------------
    def batches(
        self, items: Sequence, *, batch_size: int, truncation: bool = False, max_length: int | None = None,
        progress: bool | None = None,
    ) -> Iterator[tuple[np.ndarray, list, PaddedBatch]]:
        """Tokenizes `items` (texts or pairs) and yields them in padded batches, shortest first.

        Yields `(indices, encodings, batch)`: the items' positions in `items`, their encodings, and the
        `PaddedBatch` (ids, mask, token types padded to the model's buckets).
        """
        for idx, encs in self._chunks(items, batch_size=batch_size, truncation=truncation, max_length=max_length,
                                      progress=progress):
            yield idx, encs, self._tokenizer().pad(encs)

    def _tokenizer(self) -> TokenizerFrontEnd:
        if self.tokenizer is None:
            raise ValueError(f"{self.source} has no tokenizer; call the model on token ids instead")
        return self.tokenizer

    def _chunks(self, items: Sequence, *, batch_size: int, truncation: bool, max_length: int | None,
                progress: bool | None, offsets: bool = True) -> Iterator[tuple[np.ndarray, list]]:
        """`items` tokenized, in chunks of `batch_size` shortest first: `(indices, encodings)`."""
        tokenizer = self._tokenizer()
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
        encodings = tokenizer.encode(items, truncation=truncation, max_length=max_length, offsets=offsets)
        # Sorting by length keeps padding, and so wasted compute, small.
        order = np.argsort([len(e) for e in encodings], kind="stable")
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        show = len(chunks) > 4 if progress is None else progress
        for idx in tqdm(chunks, desc="predict", unit="batch") if show else chunks:  # no bar object for none
            yield idx, [encodings[i] for i in idx]

    def _layouts(self, items: Sequence, packing: bool | None, **kw) -> Iterator[tuple[np.ndarray, list, Any]]:
        """`_chunks` laid out as a `PaddedBatch` or, where `packing` says (None: `packs_better`), a `PackedBatch`."""
        if packing and (why := self.unpackable(self.pooling.mode)) is not None:
            raise ValueError(f"packing=True: {why}")
        packable = packing is not False and self.unpackable(self.pooling.mode) is None
        for idx, encs in self._chunks(items, **kw):
            lengths = [len(e) for e in encs]
            packed = None
            if packable and (packing or self._may_pay(lengths)):
                types = [e.type_ids for e in encs] if self._tokenizer().types_needed(encs) else None
                packed = self.pack([e.ids for e in encs], types)
            if packed is not None and (packing or self._pays(packed.input_ids.size, lengths)):
                yield idx, encs, packed  # packed once: the layout itself says whether it pays
            else:
                yield idx, encs, self._tokenizer().pad(encs)

    def embed(self, texts: Sequence[str], *, batch_size: int = 32, truncation: bool = False,
              max_length: int | None = None, progress: bool | None = None, normalize: bool | None = None,
              packing: bool | None = None) -> np.ndarray:
        """Bi-encoder embeddings, `[N, hidden]` float32: pooled as the model's sentence-transformers configuration
        says (`self.pooling`; mean pooling where it says nothing), then L2-normalized if `normalize` (default: if
        the model has a Normalize module, or has no configuration).

        `packing`: run each batch packed (`samp_jax.packing`: several texts to a row, no padding between them);
        None packs where it computes markedly fewer tokens (`packs_better`), False never."""
        items, is_pair = normalize_inputs(texts)
        if is_pair:
            raise ValueError("embed takes single texts; use similarity() for pairs")
        if normalize is None:
            normalize = self.pooling.normalize
        out = np.zeros((len(items), self.config.hidden_size), np.float32)

        def dispatch(b: PaddedBatch | PackedBatch) -> Any:
            if isinstance(b, PackedBatch):  # "embed" normalizes in the executable
                return self.run_packed("embed", b) if normalize else self._unnormalized_packed(b)
            if normalize:
                return self._run("embed", b.input_ids, b.attention_mask, b.token_type_ids)
            return self._pooled(self._run("hidden", b.input_ids, b.attention_mask, b.token_type_ids), b.attention_mask)

        layouts = self._layouts(items, packing, batch_size=batch_size, truncation=truncation, max_length=max_length,
                                progress=progress, offsets=False)  # pooled: no character offsets needed
        for idx, _, b, emb in _ahead(layouts, dispatch):
            out[idx] = b.sequences(emb) if isinstance(b, PackedBatch) else np.asarray(emb)[: b.num_examples]
        return out

    def _unnormalized_packed(self, b: PackedBatch) -> jax.Array:
        """The model's pooling of a packed batch, not normalized, per slot: `[R, K, hidden]`."""
        hidden = self.run_packed("hidden", b)
        return slot_pool(hidden, jnp.asarray(b.segment_ids), b.max_per_row, self.pooling.mode)

    def _pooled(self, hidden: jax.Array, mask: np.ndarray) -> jax.Array:
        """The model's pooling of `[B, S, hidden]` states, not normalized."""
        if self._pool_fn is None:
            mode = self.pooling.mode
            self._pool_fn = jax.jit(lambda h, m: pool(h, m, mode))
        return self._pool_fn(hidden, mask)

    def similarity(self, pairs: Sequence[tuple[str, str]], **kwargs) -> np.ndarray:
        """Bi-encoder matching: cosine similarity of each pair's embeddings (pooled as `embed` pools), `[N]`."""
        items, is_pair = normalize_inputs(pairs)
        if not is_pair:
            raise ValueError("similarity takes (text_a, text_b) pairs")
        emb = self.embed([a for a, _ in items] + [b for _, b in items], **{**kwargs, "normalize": True})
        n = len(items)
        return np.sum(emb[:n] * emb[n:], axis=-1)

    def predict(self, inputs, *, batch_size: int = 32, truncation: bool = False,
                max_length: int | None = None, progress: bool | None = None, packing: bool | None = None) -> Any:
        """Tokenizes, runs and decodes.

        Returns, by task:
          encoder: texts -> `[N, hidden]` embeddings (`embed`); pairs -> `[N]` cosine similarities.
          sequence_classification (texts or cross-encoder pairs): `{"label", "score", "scores"}` each
            (`{"score"}` alone for a single-output regression head).
          multi_label_classification: `{"labels", "scores"}` each, labels over their thresholds.
          token_classification (texts): a list of entity spans each (`Span.to_dict()`).

        `packing`: as `embed`'s.
        """
        items, is_pair = normalize_inputs(inputs)
        kw: dict[str, Any] = dict(batch_size=batch_size, truncation=truncation, max_length=max_length, progress=progress)
        kind = self.task.kind
        if kind == "encoder":
            kw["packing"] = packing
            return self.similarity(items, **kw) if is_pair else self.embed(items, **kw)
        if kind == "token_classification" and is_pair:
            raise ValueError("token classification takes single texts, not pairs")
        results: list[Any] = [None] * len(items)

        def dispatch(b: PaddedBatch | PackedBatch) -> jax.Array:
            if isinstance(b, PackedBatch):
                return self.run_packed("head", b)
            return self._run("head", b.input_ids, b.attention_mask, b.token_type_ids)

        # character offsets only where decoding reads them (entity spans)
        layouts = self._layouts(items, packing, **kw, offsets=kind == "token_classification")
        for idx, encs, b, dev in _ahead(layouts, dispatch):
            out = np.asarray(dev)
            if isinstance(b, PackedBatch):
                rows = [b.tokens(out, j) for j in range(len(idx))] if kind == "token_classification" else b.sequences(out)
            else:
                rows = out
            for row, (i, enc) in enumerate(zip(idx, encs)):
                results[i] = self.decode(rows[row], enc, items[i])
        return results

    def decode(self, logits: np.ndarray, encoding: Encoding | None, item: str | tuple[str, str]) -> Any:
        """One input's prediction from its row of the head's output: what `predict` returns for it.

        `logits` is the row of `model(...)` for that input (`[labels]`, or `[seq, labels]` for token
        classification, padding columns allowed); `encoding` its tokenizer encoding (read for NER: word
        ids and character offsets); `item` the input text. Serving calls this too, so that its answers are
        `predict`'s. A bare encoder has no head to decode: use `embed`/`similarity`.
        """
        if self.task.kind == "encoder":
            raise ValueError("a bare encoder has no head to decode; its predictions are embed() and similarity()")
        if self.task.kind == "token_classification":
            if encoding is None or not isinstance(item, str):
                raise ValueError("token classification decodes a single text with its encoding")
            return [s.to_dict() for s in self.decode_tokens(logits, encoding, item)]
        return self.decode_sequence(logits)

    def decode_sequence(self, logits: np.ndarray) -> dict:
        """A sequence head's `[labels]` logits -> `{"label", "score", "scores"}` (softmax), `{"labels",
        "scores"}` (multi-label: sigmoid against the thresholds) or `{"score"}` (a single-output head)."""
        labels = self.task.labels
        if self.task.kind == "multi_label_classification":
            probs = 1.0 / (1.0 + np.exp(-logits))
            chosen = [lab for lab, p, t in zip(labels, probs, self.task.thresholds) if p >= t]
            return {"labels": chosen, "scores": {lab: float(p) for lab, p in zip(labels, probs)}}
        if len(labels) == 1:
            return {"score": float(logits[0])}
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = int(np.argmax(probs))
        return {"label": labels[best], "score": float(probs[best]),
                "scores": {lab: float(p) for lab, p in zip(labels, probs)}}

    def decode_tokens(self, logits: np.ndarray, enc: Encoding, text: str) -> list[Span]:
        """Token classification: tags each word by its first sub-token, then groups words into spans."""
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        first: dict[int, int] = {}
        spans: dict[int, list[int]] = {}
        for t, w in enumerate(enc.word_ids):
            if w is None:
                continue
            first.setdefault(w, t)
            start, end = enc.offsets[t]
            lo, hi = spans.get(w, (start, end))
            spans[w] = [min(lo, start), max(hi, end)]
        words = sorted(first)
        tags = [self.task.labels[int(np.argmax(probs[first[w]]))] for w in words]
        scores = [float(np.max(probs[first[w]])) for w in words]
        offsets = [(spans[w][0], spans[w][1]) for w in words]
        return decode_entities(tags, offsets, scores, text)



def _ahead(layouts: Iterable[tuple[np.ndarray, list, Any]], dispatch: Callable[[Any], Any]
           ) -> Iterator[tuple[np.ndarray, list, Any, Any]]:
    """`(indices, encodings, batch, output)` for each laid-out batch, in order, with `IN_FLIGHT` batches dispatched
    ahead of the one handed back; each output's copy to the host starts as soon as its batch is dispatched."""
    pending: deque[tuple[np.ndarray, list, Any, Any]] = deque()
    for idx, encs, b in layouts:
        out = dispatch(b)
        if isinstance(out, jax.Array):
            out.copy_to_host_async()
        pending.append((idx, encs, b, out))
        if len(pending) > IN_FLIGHT:
            yield pending.popleft()
    while pending:
        yield pending.popleft()
