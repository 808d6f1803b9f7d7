"""The ingest run: discover -> parse -> chunk -> embed -> write, one document at a time.

Every file ends in one outcome; a file that cannot be read is recorded with its reason
and never stops the run.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy.exc import OperationalError

from embedding import Embedder, load_embedder
from store import Chunk, Collection, DocumentRecord, Settings, Store

from .chunking import chunk_elements
from .parsers import ParseError
from .parsers.pool import ParserPool
from .pii import Masker, load_masker
from .sources import SourceFile, discover

log = logging.getLogger(__name__)


class UsageError(Exception):
    """Bad input from the user (a missing path, an unknown model...): nothing was ingested."""


@dataclass(frozen=True)
class FileOutcome:
    key: str
    outcome: str            # "ingested", "skipped" (unsupported type) or "failed"
    reason: str | None = None
    chunks: int = 0
    pii_counts: dict[str, int] = field(default_factory=dict)  # masked values by entity type


@dataclass
class IngestReport:
    collection: str
    files: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, outcome: str) -> int:
        return sum(1 for f in self.files if f.outcome == outcome)

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.outcome == "failed"]

    @property
    def chunks_written(self) -> int:
        return sum(f.chunks for f in self.files)

    def pii_counts(self) -> Counter:
        """Masked values by entity type, over every file."""
        return sum((Counter(f.pii_counts) for f in self.files), Counter())

    def counts(self) -> dict:
        return {
            "seen": len(self.files), "ingested": self.count("ingested"),
            "skipped": self.count("skipped"), "failed": self.count("failed"),
            "chunks": self.chunks_written, "pii": dict(self.pii_counts().most_common()),
        }

    def failures_by_reason(self) -> Counter:
        return Counter(f.reason.split(":")[0] for f in self.failed)


def ingest(
    path: str | Path, settings: Settings | None = None, *,
    embedder: Embedder | None = None, masker: Masker | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
) -> IngestReport:
    """Ingest a file or a folder into `settings.collection`; returns what happened to each file.

    `embedder` reuses a loaded model (else `settings.model` is loaded) and `masker` a loaded
    masker (else one is built from the settings, or none with `settings.pii` off); `on_file`
    is called with each file's outcome as it is known.
    """
    settings = settings or Settings.from_env()
    root = Path(path).expanduser()
    if not root.exists():
        raise UsageError(f"{root}: no such file or folder")
    started = time.perf_counter()
    masker = masker or load_masker(settings)  # first: a bad masking setting fails before the model loads
    embedder = embedder or load_embedder(settings.model, dims=settings.dims or None,
                                         query_instruction=settings.query_instruction,
                                         **settings.embedder_options())
    parser = ParserPool.from_settings(settings)
    store = Store.open(settings)
    try:
        collection = store.collection(settings.collection, embedder.space.to_dict())
        options = {"path": str(root.resolve()), "model": settings.model,
                   "pii": masker.policy.describe() if masker else "off"}
        run_id = store.start_run(collection, options)
        report = IngestReport(collection.name)
        max_tokens = min(settings.chunk_tokens, embedder.max_text_tokens)
        status = "aborted"  # unless the loop completes: interrupted, or the database went away
        try:
            for source in discover(root):
                outcome = _ingest_file(source, store, collection, embedder, max_tokens, masker, parser)
                report.files.append(outcome)
                if on_file:
                    on_file(outcome)
            status = "failed" if report.failed else "succeeded"
            if report.chunks_written:
                store.analyze()
        finally:
            report.seconds = time.perf_counter() - started
            errors = [{"key": f.key, "reason": f.reason} for f in report.failed]
            store.finish_run(run_id, status, report.counts(), errors)
        return report
    finally:
        store.close()
        parser.close()


def _ingest_file(source: SourceFile, store, collection, embedder, max_tokens: int,
                 masker: Masker | None, parser: ParserPool) -> FileOutcome:
    if source.media_type is None:
        return FileOutcome(source.key, "skipped", f"unsupported type {source.path.suffix or '(none)'}")
    try:
        parsed = parser.parse(source.path, source.media_type)  # in a worker, under time and memory limits
        for warning in parsed.warnings:
            log.warning("%s: %s", source.key, warning)
        # Before anything else reads the text: chunks, titles and metadata only see it masked.
        pii_counts = masker.mask_document(parsed) if masker else {}
        metadata = {"source": source.key, **parsed.metadata}
        chunks = chunk_elements(parsed.elements, source.key, embedder.count_tokens, max_tokens, metadata)
        vectors = _vectors(chunks, store, collection, embedder)
        record = DocumentRecord(
            key=source.key, path=str(source.path), sha256=source.sha256, size_bytes=source.size,
            mtime=source.mtime, media_type=source.media_type, title=parsed.title, metadata=parsed.metadata,
            pii_counts=pii_counts,
        )
        store.write_document(collection, record, chunks, vectors)
    except ParseError as exc:
        log.warning("%s: %s", source.key, exc)
        return FileOutcome(source.key, "failed", str(exc))
    except OperationalError:
        raise  # the database went away: no later file can succeed either
    except Exception as exc:  # a library's bug on one odd file must not stop the run
        log.warning("%s: %s: %s", source.key, type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return FileOutcome(source.key, "failed", f"error: {type(exc).__name__}: {exc}")
    log.info("%s: %d chunks", source.key, len(chunks))
    return FileOutcome(source.key, "ingested", chunks=len(chunks), pii_counts=pii_counts)


def _vectors(chunks: list[Chunk], store: Store, collection: Collection, embedder: Embedder) -> np.ndarray:
    """The chunks' vectors: those whose text the collection already holds come from the
    store (the embedding cache), only the others go to the model, each distinct text once."""
    if not chunks:
        return np.zeros((0, embedder.space.dims), dtype=np.float32)
    found = store.stored_vectors(collection, (c.content_hash for c in chunks))
    missing = {c.content_hash: c.embedding_text for c in chunks if c.content_hash not in found}
    if missing:
        found.update(zip(missing, embedder.embed_documents(list(missing.values()))))
    return np.stack([found[c.content_hash] for c in chunks])
