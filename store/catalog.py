"""What the store holds, as listings, and what removing part of it took: the records of
`Store.list_collections`, `list_documents`, `remove_documents` and `drop_collection`, and the
queries that list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, any_, func, select, true
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.engine import Connection

from .access import readable_by
from .records import Collection, DocumentStatus, RunStatus, citation
from .tables import chunks, collection_statistics, collections, documents, hnsw_index_name, ingest_runs


@dataclass(frozen=True)
class RunSummary:
    """An ingest run: when it started and ended, and how it ended (`running` while it runs)."""

    id: int
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class CollectionSummary:
    """A collection: its embedding space, what it holds and its last ingest run."""

    name: str
    model: str
    dims: int
    documents: int          # ingested
    failed_documents: int   # files that could not be read, remembered until they change
    chunks: int
    # An estimate: its chunks' and documents' values as stored (pg_column_size, compressed or
    # not) plus its own HNSW index; row headers, free space and the indexes every collection
    # shares (full text, keys) are left out.
    size_bytes: int
    last_run: RunSummary | None
    roots: tuple[str, ...]  # the folders its documents were ingested from, as stored

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class DocumentSummary:
    """A document as stored: ingested with its chunks, or failed with the reason."""

    key: str  # as stored: personal data in it was masked at ingest
    status: DocumentStatus
    error: str | None
    chunks: int
    pages: int | None  # the last page its chunks cite; None for files without pages
    ingested_at: datetime  # when this version was written

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class ChunkView:
    """A stored chunk with where it sits: for reading a hit's surroundings."""

    chunk_id: int
    document_key: str
    ordinal: int  # its place in its document, from 0
    text: str
    section_path: tuple[str, ...]
    page_start: int | None
    page_end: int | None

    @property
    def citation(self) -> str:
        return citation(self.document_key, self.page_start, self.page_end, self.section_path)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "section_path": list(self.section_path), "citation": self.citation}


@dataclass(frozen=True)
class Removal:
    """Documents removed from a collection, with their chunks."""

    collection: str
    keys: tuple[str, ...]
    chunks: int


@dataclass(frozen=True)
class DroppedCollection:
    """A collection deleted with everything it held."""

    name: str
    documents: int  # ingested and failed
    chunks: int
    runs: int


def collection_summaries(conn: Connection, only: Collection | None = None) -> list[CollectionSummary]:
    """Every collection by name (or `only` that one), counted in a few grouped queries."""
    selected = select(collections).order_by(collections.c.name)
    if only is not None:
        selected = selected.where(collections.c.id == only.id)
    rows = conn.execute(selected).all()
    ids = [row.id for row in rows]
    statuses = _document_counts(conn, ids)
    sizes = _stored_sizes(conn, ids)
    runs = _last_runs(conn, ids)
    chunk_counts = dict(conn.execute(
        select(collection_statistics.c.collection_id, collection_statistics.c.chunk_count)
        .where(collection_statistics.c.collection_id.in_(ids))).tuples().all())
    return [
        CollectionSummary(
            row.name, row.model, row.dims, statuses.get((row.id, "ingested"), 0), statuses.get((row.id, "failed"), 0),
            chunk_counts.get(row.id, 0), sizes.get(row.id, 0), runs.get(row.id), tuple(row.settings.get("roots", ())))
        for row in rows
    ]


def document_summaries(conn: Connection, collection: Collection, failed_only: bool = False,
                       principals: Sequence[str] | None = None, keys: Sequence[str] | None = None,
                       limit: int | None = None, offset: int = 0) -> list[DocumentSummary]:
    """The collection's documents by key (those `principals` may read, when given; only `keys`,
    when given; a page of `limit` from `offset`, when given), each with its chunk count and
    last cited page, counted for the documents listed only."""
    page = (select(documents.c.id, documents.c.key, documents.c.status, documents.c.error, documents.c.updated_at)
            .where(*_document_conditions(collection, failed_only, principals, keys))
            .order_by(documents.c.key).limit(limit).offset(offset).subquery())
    per_document = (select(func.count().label("chunks"), func.max(chunks.c.page_end).label("pages"))
                    .where(chunks.c.document_id == page.c.id).lateral())
    rows = conn.execute(select(page.c.key, page.c.status, page.c.error, per_document.c.chunks,
                               per_document.c.pages, page.c.updated_at)
                        .join(per_document, true()).order_by(page.c.key))
    return [DocumentSummary(row.key, row.status, row.error, row.chunks, row.pages, row.updated_at) for row in rows]


def document_count(conn: Connection, collection: Collection, failed_only: bool = False,
                   principals: Sequence[str] | None = None) -> int:
    """How many documents document_summaries lists for the same arguments, over all pages."""
    return conn.execute(select(func.count()).select_from(documents)
                        .where(*_document_conditions(collection, failed_only, principals, None))).scalar_one()


def _document_conditions(collection: Collection, failed_only: bool, principals: Sequence[str] | None,
                         keys: Sequence[str] | None) -> list[ColumnElement]:
    conditions = [documents.c.collection_id == collection.id]
    if failed_only:
        conditions.append(documents.c.status == "failed")
    if principals is not None:
        conditions.append(readable_by(principals, collection.id))
    if keys is not None:
        conditions.append(documents.c.key == any_(array(keys, type_=Text)))
    return conditions


def chunk_neighbourhood(conn: Connection, collection: Collection, chunk_id: int, before: int, after: int,
                        principals: Sequence[str] | None) -> list[ChunkView]:
    """The chunk `chunk_id` of the collection with up to `before` chunks before it and `after`
    after it in its document, in order; empty when there is none (or `principals` may not read it)."""
    target = (select(chunks.c.document_id, chunks.c.ordinal)
              .join(documents, documents.c.id == chunks.c.document_id)
              .where(chunks.c.id == chunk_id, chunks.c.collection_id == collection.id))
    if principals is not None:
        target = target.where(readable_by(principals, collection.id))
    found = conn.execute(target).first()
    if found is None:
        return []
    rows = conn.execute(
        select(chunks.c.id, documents.c.key, chunks.c.ordinal, chunks.c.text, chunks.c.section_path,
               chunks.c.page_start, chunks.c.page_end)
        .join(documents, documents.c.id == chunks.c.document_id)
        .where(chunks.c.document_id == found.document_id,
               chunks.c.ordinal.between(found.ordinal - before, found.ordinal + after))
        .order_by(chunks.c.ordinal))
    return [ChunkView(row.id, row.key, row.ordinal, row.text, tuple(row.section_path), row.page_start, row.page_end)
            for row in rows]


def readable_counts(conn: Connection, collection: Collection, principals: Sequence[str]) -> tuple[int, int]:
    """How many ingested documents of the collection, and chunks of them, `principals` may read."""
    readable = and_(documents.c.collection_id == collection.id, documents.c.status == "ingested",
                    readable_by(principals, collection.id))
    document_count = select(func.count()).select_from(documents).where(readable)
    chunk_count = (select(func.count()).select_from(chunks.join(documents, documents.c.id == chunks.c.document_id))
                   .where(readable))
    return conn.execute(document_count).scalar_one(), conn.execute(chunk_count).scalar_one()


def _document_counts(conn: Connection, ids: list[int]) -> dict[tuple[int, str], int]:
    counted = (select(documents.c.collection_id, documents.c.status, func.count())
               .where(documents.c.collection_id.in_(ids)).group_by(documents.c.collection_id, documents.c.status))
    return {(collection_id, status): count for collection_id, status, count in conn.execute(counted)}


def _stored_sizes(conn: Connection, ids: list[int]) -> dict[int, int]:
    """CollectionSummary.size_bytes: pg_column_size reads a value's stored size without fetching
    it from TOAST (where vectors live), so this reads the rows but not the vectors."""
    chunk_values = (func.pg_column_size(chunks.c.text) + func.pg_column_size(chunks.c.embedding)
                    + func.pg_column_size(chunks.c.tsv) + func.pg_column_size(chunks.c.metadata)
                    + func.pg_column_size(chunks.c.section_path))
    document_values = (func.pg_column_size(documents.c.key) + func.pg_column_size(documents.c.path)
                       + func.pg_column_size(documents.c.metadata)
                       + func.coalesce(func.pg_column_size(documents.c.error), 0))
    sizes: dict[int, int] = {}
    for table, values in ((chunks, chunk_values), (documents, document_values)):
        summed = (select(table.c.collection_id, func.sum(values))
                  .where(table.c.collection_id.in_(ids)).group_by(table.c.collection_id))
        for collection_id, size in conn.execute(summed):
            sizes[collection_id] = sizes.get(collection_id, 0) + size
    for collection_id in ids:
        index = func.to_regclass(hnsw_index_name(collection_id))
        sizes[collection_id] = sizes.get(collection_id, 0) + conn.execute(
            select(func.coalesce(func.pg_relation_size(index), 0))).scalar_one()
    return sizes


def _last_runs(conn: Connection, ids: list[int]) -> dict[int, RunSummary]:
    latest = (select(ingest_runs.c.collection_id, ingest_runs.c.id, ingest_runs.c.status,
                     ingest_runs.c.started_at, ingest_runs.c.finished_at)
              .where(ingest_runs.c.collection_id.in_(ids))
              .distinct(ingest_runs.c.collection_id)
              .order_by(ingest_runs.c.collection_id, ingest_runs.c.started_at.desc(), ingest_runs.c.id.desc()))
    return {row.collection_id: RunSummary(row.id, row.status, row.started_at, row.finished_at)
            for row in conn.execute(latest)}


def _jsonable(value: Any) -> Any:
    """Dates as ISO 8601 text, in nested records too."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value.isoformat() if isinstance(value, datetime) else value
