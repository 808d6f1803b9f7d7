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

from sqlalchemy.exc import OperationalError

from embedding import TransformersEmbedder, load_embedder
from store import DocumentRecord, Settings, Store

from .chunking import chunk_elements
from .parsers import ParseError, parse
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

    def counts(self) -> dict[str, int]:
        return {
            "seen": len(self.files), "ingested": self.count("ingested"),
            "skipped": self.count("skipped"), "failed": self.count("failed"),
            "chunks": self.chunks_written,
        }

    def failures_by_reason(self) -> Counter:
        return Counter(f.reason.split(":")[0] for f in self.failed)


def ingest(
    path: str | Path, settings: Settings | None = None, *,
    embedder: TransformersEmbedder | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
) -> IngestReport:
    """Ingest a file or a folder into `settings.collection`; returns what happened to each file.

    `embedder` reuses a loaded model (else `settings.model` is loaded); `on_file` is called
    with each file's outcome as it is known.
    """
    settings = settings or Settings.from_env()
    root = Path(path).expanduser()
    if not root.exists():
        raise UsageError(f"{root}: no such file or folder")
    started = time.perf_counter()
    embedder = embedder or load_embedder(settings.model, device=settings.device,
                                         batch_tokens=settings.batch_tokens)
    store = Store.open(settings)
    try:
        collection = store.collection(settings.collection, embedder.space.to_dict())
        options = {"path": str(root.resolve()), "model": settings.model}
        run_id = store.start_run(collection, options)
        report = IngestReport(collection.name)
        max_tokens = min(settings.chunk_tokens, embedder.max_text_tokens)
        status = "aborted"  # unless the loop completes: interrupted, or the database went away
        try:
            for source in discover(root):
                outcome = _ingest_file(source, store, collection, embedder, max_tokens)
                report.files.append(outcome)
                if on_file:
                    on_file(outcome)
            status = "failed" if report.failed else "succeeded"
        finally:
            report.seconds = time.perf_counter() - started
            errors = [{"key": f.key, "reason": f.reason} for f in report.failed]
            store.finish_run(run_id, status, report.counts(), errors)
        return report
    finally:
        store.close()


def _ingest_file(source: SourceFile, store, collection, embedder, max_tokens: int) -> FileOutcome:
    if source.media_type is None:
        return FileOutcome(source.key, "skipped", f"unsupported type {source.path.suffix or '(none)'}")
    try:
        parsed = parse(source.path, source.media_type)
        metadata = {"source": source.key, **parsed.metadata}
        chunks = chunk_elements(parsed.elements, source.key, embedder.count_tokens, max_tokens, metadata)
        vectors = embedder.embed_documents([c.embedding_text for c in chunks])
        record = DocumentRecord(
            key=source.key, path=str(source.path), sha256=source.sha256, size_bytes=source.size,
            mtime=source.mtime, media_type=source.media_type, title=parsed.title, metadata=parsed.metadata,
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
    return FileOutcome(source.key, "ingested", chunks=len(chunks))
