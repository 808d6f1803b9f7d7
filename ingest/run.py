"""The ingest run: discover -> skip unchanged -> parse -> mask -> chunk -> embed -> write -> prune.

The stages overlap. A few threads hash, parse (each file in a worker process), mask and chunk
files; the calling thread embeds the chunks of several documents at a time, since the model
is fastest on full batches; one writer thread stores each finished document in its own
transaction. Every stage holds a bounded number of documents, so memory stays flat whatever
the corpus size.

Every file ends in one outcome; a file that cannot be read is recorded with its reason and
never stops the run. A document is written whole or not at all, so a run that is killed
leaves each document old or new, and running it again finishes the job: files already stored
with the same bytes, tags and options are skipped without being parsed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.exc import OperationalError

from embedding import Embedder, load_embedder, resolve_model_dir
from pgkb.settings import Settings
from store import Chunk, Collection, DocumentRecord, DocumentState, Store
from store.fulltext import unstorable

from .chunking import chunk_elements
from .heap import map_large_blocks_apart, release_freed_memory
from .metadata import MetadataError, UserMetadata
from .parsers import ParseError
from .parsers.pool import ParserPool
from .pii import (
    KeyCollision,
    Masker,
    MaskingError,
    MaskPolicy,
    OutputMasker,
    load_masker,
    masks_keys,
    policy_from_settings,
)
from .sources import SourceFile, discover, key_of, leads_out, media_type_of, printable, readable_name

log = logging.getLogger(__name__)

# Bump when parsing or chunking changes what the same file turns into, so that the next run
# cuts every document again instead of skipping it as unchanged.
PIPELINE_VERSION = 1


# Files whose outcomes are handed to the writer together at most: a run of unchanged files,
# which add no tokens, still reports its progress as it goes.
MAX_GROUP_FILES = 256


class UsageError(Exception):
    """Bad input from the user (a missing path, an unknown model...): nothing was ingested."""


@dataclass(frozen=True)
class FileOutcome:
    key: str
    # ingested (new), updated (its bytes, tags or the options changed), unchanged,
    # skipped (a type pgkb does not read) or failed
    outcome: str
    reason: str | None = None
    pages: int = 0
    chunks: int = 0
    tokens: int = 0      # tokens of text in its chunks
    embedded: int = 0    # chunks the model embedded; the others' vectors were already stored
    pii_counts: dict[str, int] = field(default_factory=dict)  # masked values by entity type


@dataclass
class IngestReport:
    collection: str
    run_id: int | None = None
    status: str = "running"  # then succeeded, failed (some files), interrupted or aborted
    error: str | None = None  # why the run aborted
    total_files: int = 0     # known once the folder is listed
    files_started_at: float = 0.0  # time.perf_counter() when the first file started, after start-up
    files: list[FileOutcome] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Busy time per stage, summed over the threads doing it (stages overlap, so the sum
    # exceeds the wall time).
    stage_seconds: Counter = field(default_factory=Counter)

    def count(self, outcome: str) -> int:
        return sum(1 for f in self.files if f.outcome == outcome)

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.outcome == "failed"]

    def pii_counts(self) -> Counter:
        """Masked values by entity type, over every file."""
        return sum((Counter(f.pii_counts) for f in self.files), Counter())

    def failures_by_reason(self) -> Counter:
        return Counter(f.reason.split(":")[0] for f in self.failed)

    def counts(self) -> dict[str, Any]:
        return {
            "seen": len(self.files),
            **{outcome: self.count(outcome) for outcome in ("ingested", "updated", "unchanged", "skipped", "failed")},
            "pruned": len(self.pruned),
            "pages": sum(f.pages for f in self.files),
            "chunks": sum(f.chunks for f in self.files),
            "embedded": sum(f.embedded for f in self.files),
            "tokens": sum(f.tokens for f in self.files),
            "failed_by_reason": dict(self.failures_by_reason().most_common()),
            "pii": dict(self.pii_counts().most_common()),
        }

    def to_dict(self) -> dict[str, Any]:
        """The report as `--report` writes it: the summary, then one entry per file seen."""
        return {
            "collection": self.collection, "run_id": self.run_id, "status": self.status, "error": self.error,
            "seconds": round(self.seconds, 3), "counts": self.counts(),
            "stage_seconds": {stage: round(s, 3) for stage, s in self.stage_seconds.items()},
            "pruned": self.pruned,
            "files": [{k: v for k, v in asdict(f).items() if v or k in ("key", "outcome")} for f in self.files],
        }


def ingest(
    path: str | Path, settings: Settings | None = None, *,
    tags: dict[str, Any] | None = None, prune: bool = False, force: bool = False, prune_any_share: bool = False,
    embedder: Embedder | None = None, masker: Masker | None = None,
    on_file: Callable[[FileOutcome, IngestReport], None] | None = None,
    stop: threading.Event | None = None, report: IngestReport | None = None,
) -> IngestReport:
    """Bring `settings.collection` up to date with a file or a folder; returns what happened.

    Unchanged files are skipped unless `force`; `tags` are attached to every document (over
    the folder and sidecar metadata, see ingest.metadata); `prune` removes the documents whose
    files are gone, and refuses (UsageError, before anything is done) when the folder holds no
    file pgkb reads or when more than `settings.prune_max_share` of the collection would go,
    unless `prune_any_share`. `embedder` reuses a loaded model (else `settings.model` is loaded) and
    `masker` a loaded masker (else one is built from the settings, or none with masking off).
    `on_file` is called with each file's outcome as it is known (files end out of order; the
    report lists them by key). Setting `stop` finishes the documents in progress and ends
    the run as "interrupted". A `report` given is filled in as the run goes, so that the
    caller still holds it when the run raises (the database went away, a second Ctrl-C): its
    status is then "aborted" and its `error` says why.
    """
    settings = settings or Settings.from_env()
    root = Path(path).expanduser()
    if not root.exists():
        raise UsageError(f"{root}: no such file or folder")
    if prune and not root.is_dir():
        raise UsageError(f"--prune needs a folder (the whole of what the collection mirrors), not the file {root}")
    started = time.perf_counter()
    map_large_blocks_apart()  # before the model's first batch
    # Settings are checked now; the masker and the model load when first needed (the masker for
    # file names, unless PGKB_PII_KEYS=keep, so a run that finds every file unchanged never
    # loads the model, and with real keys and no tags not the masker either).
    policy = masker.policy if masker else policy_from_settings(settings) if settings.pii else None
    mask_keys = masks_keys(settings)
    if embedder is None:
        resolve_model_dir(settings.model, settings.allow_download)  # not on this machine: say so now
    store = Store.open(settings)
    try:
        models = _Models(settings, store, embedder, masker)
        collection = store.find_collection(settings.collection)
        if collection is None:
            collection = models.load().collection  # a new collection: its space comes from the model
        else:  # the model named must be the collection's, even when nothing needs embedding
            collection.check_space({"model": embedder.space.model if embedder else settings.model,
                                    **({"dims": settings.dims} if settings.dims and not embedder else {})})
        run = _Run(settings, store, collection, models, policy, root, tags or {}, force, on_file,
                   report or IngestReport(collection.name))
        paths = discover(root, settings.follow_links)
        workers = _parse_workers(settings.workers, len(paths))
        stored_root = run.outputs.name(run.root, paths)
        if prune:
            run.check_prune(paths, settings.prune_max_share if not prune_any_share else 1.0)
        run.report.run_id = store.start_run(collection, {
            "path": stored_root, "model": collection.space["model"], "prune": prune,
            "force": force, "tags": run.outputs.values(tags or {}), "pii": policy.describe() if policy else "off",
            "workers": workers, **({"keys": "kept"} if policy and not mask_keys else {}),
        })
        try:
            with ParserPool.from_settings(settings, workers) as parser, store.bulk_load(collection) as load:
                run.process(paths, parser, workers, stop or threading.Event())
            if load.deferred:
                run.report.stage_seconds["index"] += load.index_seconds
            run.report.status = "interrupted" if stop and stop.is_set() else (
                "failed" if run.report.failed else "succeeded")
            if prune and run.report.status != "interrupted":
                run.prune()
            if any(f.chunks for f in run.report.files) or run.report.pruned:
                store.analyze()
        except BaseException as exc:
            # A second Ctrl-C stops the documents in progress too (the next run does them again);
            # the database went away, or a signal.
            run.report.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "aborted"
            run.report.error = _abort_reason(exc)
            raise
        finally:
            run.report.seconds = time.perf_counter() - started
            _record_end(store, run.report)
        return run.report
    finally:
        store.close()


@dataclass
class _Loaded:
    embedder: Embedder
    masker: Masker | None
    collection: Collection  # created, or checked against the model's embedding space
    max_tokens: int         # chunk size: the setting, capped by what the model reads


class _Models:
    """The masker and the embedding model, loaded once, by the first thread that needs them."""

    def __init__(self, settings: Settings, store: Store, embedder: Embedder | None, masker: Masker | None):
        self.settings, self.store, self.embedder, self._masker = settings, store, embedder, masker
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()
        self._masker_lock = threading.Lock()

    def masker(self) -> Masker | None:
        """The masker alone (file names, tags and error texts need no model)."""
        with self._masker_lock:
            if self._masker is None:
                self._masker = load_masker(self.settings)
            return self._masker

    def load(self) -> _Loaded:
        with self._lock:
            if self._loaded is None:
                settings = self.settings
                masker = self.masker()
                embedder = self.embedder or load_embedder(settings.model, dims=settings.dims or None,
                                                          query_instruction=settings.query_instruction,
                                                          **settings.embedder_options())
                collection = self.store.collection(settings.collection, embedder.space.to_dict())
                self._loaded = _Loaded(embedder, masker, collection,
                                       min(settings.chunk_tokens, embedder.max_text_tokens))
            return self._loaded


@dataclass
class _Parsed:
    """A file parsed, masked and chunked, waiting for its vectors."""

    outcome: str  # ingested or updated, once written
    record: DocumentRecord
    chunks: list[Chunk]
    pages: int
    vectors: np.ndarray | None = None
    embedded: int = 0

    @property
    def tokens(self) -> int:
        return sum(c.token_count for c in self.chunks)


class _Run:
    """One run's shared state, and the work of each stage."""

    def __init__(self, settings: Settings, store: Store, collection: Collection, models: _Models,
                 policy: MaskPolicy | None, root: Path, tags: dict[str, Any], force: bool,
                 on_file: Callable[[FileOutcome, IngestReport], None] | None, report: IngestReport):
        self.store, self.collection, self.models = store, collection, models
        self.root = root.resolve()
        self.follow_links = settings.follow_links
        self.user_metadata = UserMetadata(self.root, tags, settings.follow_links)
        self.force = force
        self.on_file = on_file
        self.embed_headings = settings.embed_headings
        # The options that shape a document's chunks; a change means every file is cut again.
        options = {"version": PIPELINE_VERSION, "chunk_tokens": settings.chunk_tokens,
                   "pii": policy.describe() if policy else "off", "ocr": settings.ocr_languages}
        if not settings.embed_headings:  # absent when on, so collections ingested before stay unchanged
            options["embed_headings"] = False
        self.fingerprint = _digest(options)
        # A file that failed is tried again when it changes, or when these do: the limits, or
        # whether passwords are given (their values are never stored, even hashed).
        self.failure_fingerprint = _digest({**options, "seconds": settings.parse_seconds,
                                            "memory_mb": settings.parse_memory_mb,
                                            "max_chars": settings.max_document_chars,
                                            "passwords": bool(settings.passwords or settings.passwords_file)})
        # How many tokens of new text to gather across documents before calling the model,
        # and the fewest it is called with while documents are still being parsed.
        self.group_tokens = 4 * settings.batch_tokens
        self.batch_tokens = settings.batch_tokens
        self.known: dict[str, DocumentState] = store.document_states(collection)
        self.seen: set[str] = set()
        self.report = report
        self._clock_lock = threading.Lock()
        # Presidio's engines are not documented as safe to share between threads.
        self._mask_lock = threading.Lock()
        # Keys, paths, tags and error texts, masked like the documents' texts (ingest.pii.outputs).
        self.outputs = OutputMasker(models.masker if policy else None, masks_keys(settings), self._mask_lock)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            with self._clock_lock:
                self.report.stage_seconds[stage] += time.perf_counter() - started

    # -- the pipeline -------------------------------------------------------------------

    def process(self, paths: list[Path], parser: ParserPool, workers: int, stop: threading.Event) -> None:
        self.report.total_files = len(paths)
        self.report.files_started_at = time.perf_counter()
        group: list[_Parsed | FileOutcome] = []
        writes: deque[Future] = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="pgkb-parse") as parsing, \
                ThreadPoolExecutor(1, thread_name_prefix="pgkb-write") as writing:

            group_tokens = 0

            def flush() -> None:
                nonlocal group_tokens
                self._embed([item for item in group if isinstance(item, _Parsed)])
                writes.append(writing.submit(self._write_all, list(group)))
                group.clear()
                group_tokens = 0
                while len(writes) > 2:  # the writer may lag two groups behind, no more
                    writes.popleft().result()

            def flush_while_waiting() -> None:
                # The model gets what is parsed so far once it fills a batch: a model called
                # with a few chunks runs far below its speed on full batches (ingesting the
                # test corpus on a CPU, calls of 1-8 texts made 2,700 tokens/s, of over 512
                # 16,500), and on a CPU, waiting leaves the cores to the parsers. A group of
                # outcomes alone (unchanged or failed files) goes on, so that progress shows.
                if group and (group_tokens >= self.batch_tokens or group_tokens == 0):
                    flush()

            try:
                prepared = _as_completed(parsing, lambda p: self._prepare(p, parser), paths, 2 * workers, stop,
                                         flush_while_waiting)
                for item in prepared:
                    group.append(item)
                    group_tokens += item.tokens if isinstance(item, _Parsed) else 0
                    if len(group) >= MAX_GROUP_FILES or group_tokens >= self.group_tokens:
                        flush()
                if group:
                    flush()
                while writes:
                    writes.popleft().result()
            except BaseException:
                parser.close()  # so the parsing threads end now, not after their files
                raise
        self.report.files.sort(key=lambda outcome: outcome.key)

    def _prepare(self, path: Path, parser: ParserPool) -> _Parsed | FileOutcome:
        """Hash, then parse, mask and chunk a file unless the store already holds it as it is."""
        key = key_of(path, self.root)
        if unstorable(key):  # a name that is not UTF-8 (Python keeps its bytes as lone surrogates)
            name = self.outputs.text(readable_name(key))
            return FileOutcome(name, "failed", "file name is not UTF-8: rename the file")
        key = self.outputs.key(path)
        if not self.follow_links and leads_out(path, self.root):
            return FileOutcome(key, "skipped", "link out of the folder (--follow-links reads it)")
        media_type = media_type_of(path)
        if media_type is None:  # known by its name: the file is never read
            return FileOutcome(key, "skipped", f"unsupported type {path.suffix or '(none)'}")
        try:
            self.outputs.check_unique(path)
            with self.timed("read"):
                source = SourceFile.read(path, key, media_type)
                tags = self.outputs.values(self.user_metadata.for_file(path))
        except OSError as exc:  # unreadable, or gone since the folder was listed
            log.warning("%s: cannot read it: %s", printable(key), exc.strerror or exc)
            return FileOutcome(key, "failed", f"cannot read: {exc.strerror or exc}")
        except (MetadataError, KeyCollision, MaskingError) as exc:
            reason = self.outputs.text(str(exc))
            log.warning("%s: %s", printable(key), reason)
            return FileOutcome(key, "failed", reason)
        known = self.known.get(key)
        if known and not self.force and known.sha256 == source.sha256:
            if (known.status, known.fingerprint) == ("ingested", self.fingerprint):
                if known.tags == tags:
                    return FileOutcome(key, "unchanged")
                self.store.update_tags(self.collection, key, tags)
                return FileOutcome(key, "updated", "tags only")
            if (known.status, known.fingerprint) == ("failed", self.failure_fingerprint):
                return FileOutcome(key, "failed", f"{known.error} (unchanged since; --force tries again)")
        record = DocumentRecord(key=key, path=self.outputs.path(path), sha256=source.sha256, size_bytes=source.size,
                                mtime=source.mtime, media_type=source.media_type, tags=tags,
                                fingerprint=self.fingerprint)
        models = self.models.load()  # a model that cannot load stops the run, not just this file
        try:
            with self.timed("parse"):
                parsed = parser.parse(source.path, source.media_type)  # in a worker, under time and memory limits
            for warning in parsed.warnings:
                log.warning("%s: %s", printable(key), self.outputs.text(warning))
            with self.timed("mask"), self._mask_lock:
                # Before anything else reads the text: chunks, titles and metadata only see it masked.
                pii_counts = models.masker.mask_document(parsed) if models.masker else {}
            with self.timed("chunk"):
                chunks = chunk_elements(parsed.elements, key, models.embedder.count_tokens, models.max_tokens,
                                        {"source": key, **parsed.metadata}, embed_headings=self.embed_headings)
        except ParseError as exc:
            reason = self.outputs.text(str(exc))  # a parser's message can quote the document
            log.warning("%s: %s", printable(key), reason)
            self.store.record_failure(self.collection, replace(record, fingerprint=self.failure_fingerprint), reason)
            return FileOutcome(key, "failed", reason)
        except OperationalError:
            raise  # the database went away: no later file can succeed either
        except Exception as exc:  # a library's bug on one odd file must not stop the run
            return self._failure(key, exc)
        record = replace(record, title=parsed.title, metadata=parsed.metadata, pii_counts=pii_counts)
        pages = max((e.metadata.page_number or 0 for e in parsed.elements), default=0)
        return _Parsed("updated" if known and known.status == "ingested" else "ingested", record, chunks, pages)

    def _embed(self, documents: list[_Parsed]) -> None:
        """Vectors for several documents' chunks in one call to the model. Texts the collection
        already holds come from the store (the embedding cache); each new text is embedded once."""
        chunks = [c for d in documents for c in d.chunks]
        if not chunks:
            for d in documents:
                d.vectors = np.zeros((0, self.collection.dims), dtype=np.float32)
            return
        with self.timed("embed"):
            found = self.store.stored_vectors(self.collection, (c.content_hash for c in chunks))
            missing: dict[str, str] = {}
            for d in documents:
                new = {c.content_hash: c.embedding_text for c in d.chunks
                       if c.content_hash not in found and c.content_hash not in missing}
                d.embedded = len(new)
                missing.update(new)
            if missing:
                try:
                    found.update(zip(missing, self.models.load().embedder.embed_documents(list(missing.values()))))
                except Exception:
                    if len(documents) == 1:
                        raise
                    for d in documents:  # one document's text broke the batch: find which
                        self._embed_alone(d)
                    return
            for d in documents:
                d.vectors = np.stack([found[c.content_hash] for c in d.chunks]) if d.chunks else \
                    np.zeros((0, self.collection.dims), dtype=np.float32)

    def _embed_alone(self, document: _Parsed) -> None:
        try:
            self._embed([document])
        except OperationalError:
            raise
        except Exception as exc:
            document.vectors = None
            document.embedded = 0
            log.warning("%s: embedding failed: %s: %s", printable(document.record.key), type(exc).__name__,
                        self.outputs.text(str(exc)))

    def _write_all(self, items: list[_Parsed | FileOutcome]) -> None:
        for item in items:
            outcome = self._write(item) if isinstance(item, _Parsed) else item
            self.report.files.append(outcome)
            self.seen.add(outcome.key)
            if outcome.outcome in ("ingested", "updated") and outcome.chunks:
                log.info("%s: %d chunks", printable(outcome.key), outcome.chunks)
            if self.on_file:
                self.on_file(outcome, self.report)
        release_freed_memory()  # the documents just written are freed

    def _write(self, document: _Parsed) -> FileOutcome:
        key = document.record.key
        if document.vectors is None:
            return FileOutcome(key, "failed", "embedding failed (see the log)")
        try:
            with self.timed("write"):
                self.store.write_document(self.collection, document.record, document.chunks, document.vectors)
        except OperationalError:
            raise
        except Exception as exc:
            return self._failure(key, exc)
        return FileOutcome(key, document.outcome, pages=document.pages, chunks=len(document.chunks),
                           tokens=document.tokens, embedded=document.embedded,
                           pii_counts=document.record.pii_counts)

    def _failure(self, key: str, exc: Exception) -> FileOutcome:
        reason = f"error: {type(exc).__name__}: {self.outputs.text(str(exc))}"
        log.warning("%s: %s", printable(key), reason)
        # The frames only: the traceback's last line would repeat the message unmasked.
        log.debug("%s: traceback:\n%s", printable(key), "".join(traceback.format_tb(exc.__traceback__)))
        return FileOutcome(key, "failed", reason)

    def check_prune(self, paths: list[Path], max_share: float) -> None:
        """Refuse a prune that looks like a mistake: a folder with no file pgkb reads (empty,
        unmounted or mistyped), or one that would remove more than `max_share` of the collection."""
        present = {self.outputs.key(path) for path in paths
                   if not unstorable(key_of(path, self.root)) and media_type_of(path) is not None
                   and (self.follow_links or not leads_out(path, self.root))}
        if not present:
            raise UsageError(f"--prune refused: {self.root} holds no file pgkb reads (empty, unmounted or "
                             "mistyped?); nothing was done")
        gone = set(self.known) - present
        if len(gone) > max_share * len(self.known):
            raise UsageError(f"--prune refused: it would remove {len(gone)} of the collection's {len(self.known)} "
                             f"documents, more than {max_share:.0%} (PGKB_PRUNE_MAX_SHARE); pass --yes if that is "
                             "what you want; nothing was done")

    def prune(self) -> None:
        """Remove the documents whose files were not seen in this run."""
        gone = sorted(set(self.store.document_states(self.collection)) - self.seen)
        self.store.delete_documents(self.collection, gone)
        for key in gone:
            log.info("%s: pruned", printable(key))
        self.report.pruned = gone


def _as_completed(pool: ThreadPoolExecutor, work: Callable[[Path], Any], items: Iterable[Path], window: int,
                  stop: threading.Event, before_waiting: Callable[[], None]) -> Iterator[Any]:
    """`work(item)` for each item on `pool`, at most `window` at once, yielding results as they
    come: a long file holds up nothing but itself. `before_waiting` is called whenever no
    result is ready yet. Once `stop` is set no new item starts; those in progress still end.
    """
    items = iter(items)
    pending: set[Future] = set()
    while True:
        while len(pending) < window and not stop.is_set() and (item := next(items, None)) is not None:
            pending.add(pool.submit(work, item))
        if not pending:
            return
        done = {future for future in pending if future.done()}
        if not done:
            before_waiting()
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            pending.discard(future)
            yield future.result()


def _parse_workers(asked: int, files: int) -> int:
    """Files parsed at once: as asked (0: one per CPU core, at most 4), yet no more than the
    CPU cores, since parsing keeps each busy and every worker is a process of its own, nor
    than the files."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if asked > cores:
        log.warning("%d workers asked for; %d used, one per CPU core", asked, cores)
    return max(1, min(asked or 4, cores, files))


def _abort_reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "stopped by Ctrl-C"
    if isinstance(exc, OperationalError):
        return f"the database went away ({exc.orig})"
    if isinstance(exc, Exception):
        return f"{type(exc).__name__}: {exc}"
    return str(exc) or type(exc).__name__  # a signal's exception says which


def _digest(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


def _record_end(store: Store, report: IngestReport) -> None:
    counts = {**report.counts(), "stage_seconds": {k: round(v, 3) for k, v in report.stage_seconds.items()}}
    errors = [{"key": f.key, "reason": f.reason} for f in report.failed]
    try:
        store.finish_run(report.run_id, report.status, counts, errors)
    except OperationalError as exc:  # the database went away: say so, but keep the first error
        log.warning("could not record the end of ingest run %s: %s", report.run_id, exc.orig)
