"""Re-embedding: a collection copied into a new one whose vectors come from another model.

Nothing is parsed, masked or chunked again: each document's stored chunks are read back, the
text the model reads of each (its embedding text: the section path, then the chunk text, as
it was ingested) is embedded with the new model, and the documents are written to the new
collection with their chunks, metadata, tags (and so their access) and the folders they came
from. The new collection has the new model's embedding space of its own, so its vectors never
mix with the old ones; searching both compares the models (`pgkb eval`).

    reembed(Settings.from_env(collection="handbook-tuned", model="/models/tuned"), source="handbook")
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from sqlalchemy import select

from embedding import Embedder
from pgkb.errors import ConfigurationError
from pgkb.settings import Settings
from store import Chunk, Collection, DocumentRecord, Store
from store.tables import chunks, collections, documents

from .chunking import content_hash
from .run import load_model

log = logging.getLogger(__name__)

# Documents read, embedded and written at a time: full batches for the model, bounded memory.
DOCUMENTS_PER_BATCH = 200


@dataclass(frozen=True)
class ReembedReport:
    source: str
    target: str
    model: str
    documents: int   # ingested documents copied with their chunks
    failed: int      # documents that failed to ingest, copied as failures
    chunks: int
    seconds: float


def reembed(settings: Settings, source: str, embedder: Embedder | None = None) -> ReembedReport:
    """Copy collection `source` into the new collection `settings.collection`, every chunk
    embedded by `embedder` (default: the model the settings name, as ingest loads it). A copy
    cut short leaves the new collection part-filled: drop it and run again."""
    target = settings.collection
    if source == target:
        raise ConfigurationError(f"--reembed-from {source!r}: re-embed into another collection (--collection)")
    store = Store.open(settings)
    try:
        if store.find_collection(target) is not None:
            raise ConfigurationError(f"--collection {target!r} exists: re-embed into a new collection "
                                     f"(or `pgkb drop {target}` first)")
        old = store.collection(source)
        embedder = embedder or load_model(settings)
        new = store.collection(target, embedder.space.to_dict(), unlabelled=_unlabelled(store, old))
        for root in old.roots:
            new = store.add_root(new, root)
        run_id = store.start_run(new, {"reembed_from": source, "model": embedder.space.model})
        started = time.perf_counter()
        counts = {"documents": 0, "failed": 0, "chunks": 0}
        with store.bulk_load(new):
            for batch in _document_batches(store, old):
                _copy_batch(store, new, batch, embedder, counts)
        store.finish_run(run_id, "succeeded", counts, [])
        seconds = time.perf_counter() - started
    finally:
        store.close()
    log.info("re-embedded %r into %r: %d documents, %d chunks in %.1f s", source, target, counts["documents"],
             counts["chunks"], seconds)
    return ReembedReport(source, target, new.space["model"], counts["documents"], counts["failed"],
                         counts["chunks"], round(seconds, 2))


@dataclass(frozen=True)
class _StoredDocument:
    record: DocumentRecord
    status: str
    error: str | None
    chunks: list[Chunk]


def _copy_batch(store: Store, collection: Collection, batch: list[_StoredDocument], embedder: Embedder,
                counts: dict[str, int]) -> None:
    texts = [chunk.embedding_text for document in batch for chunk in document.chunks]
    vectors = embedder.embed_documents(texts)
    token_counts = iter(embedder.count_tokens(texts))
    offset = 0
    for document in batch:
        if document.status == "failed":
            store.record_failure(collection, document.record, document.error or "")
            counts["failed"] += 1
            continue
        # The token counts are the new model's: its tokenizer may cut text differently.
        recounted = [replace(chunk, token_count=next(token_counts)) for chunk in document.chunks]
        store.write_document(collection, document.record, recounted, vectors[offset:offset + len(recounted)])
        offset += len(recounted)
        counts["documents"] += 1
        counts["chunks"] += len(recounted)


def _document_batches(store: Store, collection: Collection) -> Iterator[list[_StoredDocument]]:
    """The collection's documents with their chunks, a batch at a time, in the order they were stored."""
    last_id = 0
    with store.engine.connect() as conn:
        while True:
            rows = conn.execute(select(documents).where(documents.c.collection_id == collection.id,
                                                        documents.c.id > last_id)
                                .order_by(documents.c.id).limit(DOCUMENTS_PER_BATCH)).all()
            if not rows:
                return
            last_id = rows[-1].id
            by_document: dict[int, list[Chunk]] = {row.id: [] for row in rows}
            keys = {row.id: row.key for row in rows}
            for chunk in conn.execute(select(chunks).where(chunks.c.document_id.in_(list(by_document)))
                                      .order_by(chunks.c.document_id, chunks.c.ordinal)):
                by_document[chunk.document_id].append(_stored_chunk(keys[chunk.document_id], chunk))
            yield [_StoredDocument(_record(row), row.status, row.error, by_document[row.id]) for row in rows]


def _record(row) -> DocumentRecord:
    return DocumentRecord(key=row.key, path=row.path, sha256=row.sha256, size_bytes=row.size_bytes,
                          mtime=row.mtime, media_type=row.media_type, title=row.title, metadata=row.metadata,
                          tags=row.tags, fingerprint=row.fingerprint, pii_counts=row.pii_counts)


def _stored_chunk(document_key: str, row) -> Chunk:
    """A stored chunk as it was ingested. Whether the model read its section path too
    (PGKB_EMBED_HEADINGS) is not stored, but its content hash is the hash of what the model
    read (ingest/chunking.py), which tells."""
    chunk = Chunk(document_key=document_key, ordinal=row.ordinal, text=row.text,
                  section_path=tuple(row.section_path), page_start=row.page_start, page_end=row.page_end,
                  element_types=tuple(row.element_types), token_count=row.token_count,
                  content_hash=row.content_hash, metadata=row.metadata)
    if content_hash(chunk.embedding_text) != row.content_hash:
        without_heading = replace(chunk, embeds_heading=False)
        if content_hash(without_heading.embedding_text) == row.content_hash:
            return without_heading
    return chunk


def _unlabelled(store: Store, collection: Collection):
    """Who reads the collection's documents without an access tag: the new one keeps it."""
    with store.engine.connect() as conn:
        settings = conn.execute(select(collections.c.settings)
                                .where(collections.c.id == collection.id)).scalar_one()
    return settings.get("unlabelled", "public")
