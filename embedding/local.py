"""Local embedding with transformers.

Throughput comes from four things: texts are sorted by token length and cut into batches
by a token budget (padding included) and where their lengths drop, so little compute is
spent on padding whatever the mix of lengths; the next window of texts is tokenised in a
background thread while the model works on the current one; on CUDA the model runs in bf16
with SDPA attention and nothing reads results back between batches, so the GPU never waits
for Python; on CPU, oneDNN computes the linear layers and attention runs in cache-sized
slices where that is faster (see cpu.py). Running out of memory halves the batch and retries.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast, get_args

import numpy as np

from pgkb.errors import ConfigurationError
from pgkb.settings import Precision, default

from . import cpu
from .base import Embedder
from .profiles import ModelProfile
from .space import EmbeddingSpace

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Texts tokenised at a time: enough for well-filled sorted batches, few enough to overlap.
TOKENIZE_WINDOW = 1024
# A batch ends before a text that would fill less than this share of its padded width, once
# it holds this share of the token budget (so that short texts still share batches).
MIN_WIDTH_FILLED = 0.9
MIN_BUDGET_FILLED = 1 / 8
# A search's queries, at most this many, are embedded on one CPU thread (see embed_queries).
FEW_QUERIES = 8


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


PRECISIONS: tuple[Precision, ...] = get_args(Precision)


def load_model(model_dir: Path, device: str, precision: Precision = default("precision"),
               auto_class: str = "AutoModel"):
    """The model with SDPA attention, ready for inference, in `precision`; `auto_class` is the
    transformers class that loads it (AutoModelForSequenceClassification for a cross-encoder...).

    "auto": bf16 on CUDA, and on CPUs that compute bf16 natively (1.7x float32's speed for
    MiniLM on an AMD EPYC, vectors at cosine 0.9999 of float32's); float32 elsewhere.
    """
    import torch
    import transformers
    from transformers.utils import logging as transformers_logging

    if precision not in PRECISIONS:
        raise ConfigurationError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if device == "cpu":
        cpu.bound_onednn_caches()  # before the first oneDNN op, which reads them
    transformers_logging.disable_progress_bar()  # a per-load weights bar is noise in a CLI
    if precision == "auto":
        native_bf16 = device.startswith("cuda") or (device == "cpu" and cpu.cpu_has_native_bf16())
        precision = "bfloat16" if native_bf16 else "float32"
    dtype = getattr(torch, precision)
    model = getattr(transformers, auto_class).from_pretrained(model_dir, local_files_only=True, dtype=dtype,
                                                              attn_implementation="sdpa")
    model = model.to(device).eval()
    if device == "cpu":
        cpu.speed_up(model)
    return model


def load_tokenizer(model_dir: Path, padding_side: str):
    from transformers import AutoTokenizer

    # Texts are tokenised a window at a time by one thread beside the model (see `prefetched`);
    # tokenizers' own threads would compete with the model's, and warn after a fork (the
    # parser workers). Set before the first tokenizer runs; a value the user set is kept.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    return AutoTokenizer.from_pretrained(model_dir, local_files_only=True, padding_side=padding_side)


@dataclass(frozen=True)
class Batch:
    rows: np.ndarray                # where these texts are in the caller's list
    input_ids: torch.Tensor         # [n, width], padded on the profile's side
    attention_mask: torch.Tensor    # 1 for real tokens


class BatchedModel:
    """A transformers model run over many inputs in length-sorted batches cut by a token budget
    (padding included), a batch that runs out of memory split in two. The embedder and the
    reranker are ones; each says what the model reads for an input (`_model_input_ids`) and
    what one batch gives (`_forward`)."""

    model: Any
    device: torch.device
    batch_tokens: int
    padding_side: str  # "left" or "right"
    _pad_id: int

    def _model_input_ids(self, items: Sequence) -> list[list[int]]:
        """The token ids the model reads for each of `items`, special tokens included."""
        raise NotImplementedError

    def _forward(self, input_ids, attention_mask):
        """The model's output for one padded batch, a tensor of one row per input."""
        raise NotImplementedError

    def _batches(self, items: Sequence) -> Iterator[Batch]:
        """Length-sorted batches of at most `batch_tokens` padded tokens, a window at a time.

        The budget is read as each batch is cut, so a budget lowered after running out of
        memory applies from the next batch on.
        """
        for start in range(0, len(items), TOKENIZE_WINDOW):
            ids = self._model_input_ids(items[start:start + TOKENIZE_WINDOW])
            rows: list[int] = []
            # Longest first, so a batch's padded width is the length of its first text.
            for i in sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True):
                if rows and self._batch_ends(len(rows), len(ids[rows[0]]), len(ids[i])):
                    yield self._pad([ids[r] for r in rows], np.asarray(rows) + start)
                    rows = []
                rows.append(i)
            if rows:
                yield self._pad([ids[r] for r in rows], np.asarray(rows) + start)

    def _batch_ends(self, rows: int, width: int, next_length: int) -> bool:
        """Whether a batch of `rows` texts padded to `width` tokens ends before the next text.

        At the budget, and where the next text is much shorter than the batch's longest:
        padding is work spent on nothing. Cut by the budget alone, the batches of the test
        corpus's chunks were 8.1% padding; cut here too, 3.8%, embedded in 8% less time on a CPU.
        """
        if (rows + 1) * width > self.batch_tokens:
            return True
        return next_length < MIN_WIDTH_FILLED * width and rows * width >= MIN_BUDGET_FILLED * self.batch_tokens

    def _pad(self, ids: list[list[int]], rows: np.ndarray) -> Batch:
        import torch

        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, x in enumerate(ids):
            cols = slice(width - len(x), width) if self.padding_side == "left" else slice(0, len(x))
            input_ids[i, cols] = x
            mask[i, cols] = 1
        return Batch(rows, torch.from_numpy(input_ids), torch.from_numpy(mask))

    def _forward_halving_on_oom(self, input_ids, attention_mask):
        """The batch's output; out of memory splits it in two and lowers the budget for the rest."""
        import torch

        try:
            return self._forward(input_ids, attention_mask)
        except RuntimeError as exc:  # torch.OutOfMemoryError is one
            if not _is_out_of_memory(exc) or len(input_ids) == 1:
                raise
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.batch_tokens = max(input_ids.numel() // 2, 1)
        log.warning("out of memory on a batch of %d inputs; now %d tokens per batch", len(input_ids), self.batch_tokens)
        half = len(input_ids) // 2
        return torch.cat([
            self._forward_halving_on_oom(*_without_padding_columns(input_ids[:half], attention_mask[:half])),
            self._forward_halving_on_oom(*_without_padding_columns(input_ids[half:], attention_mask[half:])),
        ])


def left_padding_positions(attention_mask):
    """Position ids for a left-padded batch: every input's start at 0, as when it runs alone."""
    return (attention_mask.cumsum(dim=1) - 1).clamp(min=0)


class TransformersEmbedder(Embedder, BatchedModel):
    """Embeds texts with a loaded transformers model, following its ModelProfile."""

    def __init__(self, name: str, model, tokenizer, profile: ModelProfile, *, dims: int | None = None,
                 query_prefix: str = "", batch_tokens: int = default("batch_tokens")):
        import torch

        self.model = model
        model.config.use_cache = False  # a decoder would keep every layer's keys and values
        self.device = next(model.parameters()).device
        self.batch_tokens = batch_tokens
        dims = profile.output_dims(dims, model.config.hidden_size, name)
        space = EmbeddingSpace(model=name, dims=dims, pooling=profile.pooling, normalize=True,
                               query_instruction=query_prefix or None, max_tokens=profile.max_tokens)
        super().__init__(tokenizer, profile, space)
        self.padding_side = profile.padding_side
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._document_threads = torch.get_num_threads()
        log.info("loaded %s on %s in %s (%d dims)", name, self.device, next(model.parameters()).dtype, dims)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """A search's query is a few dozen tokens: on a CPU, spreading its matrix products over
        threads gains less than their synchronisation costs, and while the database works on
        the same cores they wait on each other (search p95 at 100,000 chunks: query embedding
        25 ms on torch's 2 threads, 5.5 ms on one; bench/search_latency.py). So a thread
        embedding queries uses one; a thread embedding documents, the count torch had when
        the model loaded. torch keeps the count per thread, so a thread that searches never
        changes it for one that ingests; it is set when a thread's kind of work changes."""
        if len(texts) <= FEW_QUERIES:
            self._use_threads(1)
        return super().embed_queries(texts)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self._use_threads(self._document_threads)
        return super().embed_documents(texts)

    def _use_threads(self, count: int) -> None:
        import torch

        if self.device.type == "cpu" and torch.get_num_threads() != count:
            torch.set_num_threads(count)  # this thread's, and the default of threads started later

    def _embed(self, texts: list[str]) -> np.ndarray:
        import torch

        out = np.empty((len(texts), self.space.dims), dtype=np.float32)
        done: list[tuple[np.ndarray, torch.Tensor]] = []

        def copy_back() -> None:
            # Vectors stay on the device for a window of texts: copying each batch back would
            # make the CPU wait for the GPU instead of queuing the next batch.
            out[np.concatenate([rows for rows, _ in done])] = torch.cat([v for _, v in done]).cpu().numpy()
            done.clear()

        batches = self._batches(texts)
        if len(texts) > TOKENIZE_WINDOW:
            # The next window is tokenised while the model works on this one. One window has
            # nothing to overlap with, and the thread would cost a tenth of a query's 4 ms.
            batches = prefetched(batches)
        with torch.inference_mode():
            for batch in batches:
                done.append((batch.rows, self._forward_halving_on_oom(batch.input_ids, batch.attention_mask)))
                if sum(len(rows) for rows, _ in done) >= TOKENIZE_WINDOW:
                    copy_back()
            if done:
                copy_back()
        return out

    def _model_input_ids(self, items: Sequence) -> list[list[int]]:
        return self.input_ids(list(items))

    def _forward(self, input_ids, attention_mask):
        import torch

        input_ids = input_ids.to(self.device, non_blocking=True)
        attention_mask = attention_mask.to(self.device, non_blocking=True)
        extra = {}
        if self.profile.padding_side == "left":
            extra["position_ids"] = left_padding_positions(attention_mask)
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        pooled = pool(hidden, attention_mask, self.profile.pooling, self.profile.padding_side).float()
        # Matryoshka: the leading dims are the shorter vector, normalised after the cut.
        return torch.nn.functional.normalize(pooled[:, : self.space.dims], dim=-1)


def pool(hidden, attention_mask, pooling: str, padding_side: str):
    """One vector per row. Decided without reading values back from the GPU, which would make
    the CPU wait for this batch before it can queue the next one."""
    import torch

    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last_token":
        if padding_side == "left":  # the last position is every row's last token
            return hidden[:, -1]
        last = attention_mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


T = TypeVar("T")
_END = object()


def prefetched(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced by a background thread up to `depth` ahead of the consumer.

    Tokenizers and torch both release the GIL, so preparing a batch overlaps the model's work.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgkb-tokenize") as worker:
        pending = deque(worker.submit(next, items, _END) for _ in range(depth))
        while (item := pending.popleft().result()) is not _END:
            pending.append(worker.submit(next, items, _END))
            yield cast(T, item)  # not the end marker, so one of `items`


def _without_padding_columns(input_ids, attention_mask):
    keep = attention_mask.any(dim=0)
    return input_ids[:, keep], attention_mask[:, keep]


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc)
