"""Feedback on search hits: a user marks a hit of a query good or bad, or gives the right
chunk for a query. The rows hold the query as masked by the caller (retrieval.feedback) and
where the chunk is, never its text; `feedback_pairs` finds each row's chunk again for
training data, after a re-ingest too (by its document and content hash)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import and_, func, insert, literal, or_, select, true
from sqlalchemy.engine import Connection

from .access import readable_by
from .errors import StoreError
from .records import Collection
from .tables import chunks, documents, feedback

# good: a hit that answers the query; bad: a hit that does not; right: the chunk that answers
# it, whether or not the search found it.
Verdict = Literal["good", "bad", "right"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)


class UnknownChunk(StoreError):
    """A chunk id the collection has none of (or none the caller may read: the same answer)."""

    def __init__(self, collection: str, chunk_id: int):
        super().__init__(f"collection {collection!r} has no chunk {chunk_id} (a hit's chunk_id)")


@dataclass(frozen=True)
class Feedback:
    """A feedback row as stored."""

    id: int
    collection: str
    query: str  # masked
    chunk_id: int | None  # None once its chunk was replaced (re-ingested) or removed
    document_key: str
    ordinal: int
    content_hash: str
    rank: int | None
    verdict: Verdict
    given_by: str | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class JudgedChunk:
    """A feedback row's query with its chunk as the collection holds it now (for training data)."""

    query: str
    verdict: Verdict
    chunk_id: int
    text: str
    document_key: str
    section_path: tuple[str, ...]


def record_feedback(conn: Connection, collection: Collection, query: str, chunk_id: int, verdict: Verdict,
                    rank: int | None, given_by: str | None, principals: Sequence[str] | None) -> Feedback:
    """Store a verdict on the collection's chunk `chunk_id` for `query` (masked already).
    UnknownChunk when the collection has no such chunk that `principals` (when given) may read."""
    if not 1 <= chunk_id < 2**63:  # no chunk has it, and PostgreSQL's bigint would refuse it
        raise UnknownChunk(collection.name, chunk_id)
    judged = (select(literal(collection.id), literal(query), chunks.c.id, documents.c.key, chunks.c.ordinal,
                     chunks.c.content_hash, literal(rank), literal(verdict), literal(given_by))
              .join(documents, documents.c.id == chunks.c.document_id)
              .where(chunks.c.id == chunk_id, chunks.c.collection_id == collection.id,
                     readable_by(principals, collection.id) if principals is not None else true()))
    columns = ["collection_id", "query", "chunk_id", "document_key", "ordinal", "content_hash", "rank", "verdict",
               "given_by"]
    row = conn.execute(insert(feedback).from_select(columns, judged).returning(*_COLUMNS)).first()
    if row is None:
        raise UnknownChunk(collection.name, chunk_id)
    return _feedback(row, collection.name)


def list_feedback(conn: Connection, collection: Collection, limit: int | None = None,
                  offset: int = 0) -> list[Feedback]:
    """The collection's feedback, oldest first."""
    rows = conn.execute(select(*_COLUMNS).where(feedback.c.collection_id == collection.id)
                        .order_by(feedback.c.id).limit(limit).offset(offset))
    return [_feedback(row, collection.name) for row in rows]


def count_feedback(conn: Connection, collection: Collection) -> int:
    return conn.execute(select(func.count()).where(feedback.c.collection_id == collection.id)).scalar_one()


def judged_chunks(conn: Connection, collection: Collection) -> list[JudgedChunk]:
    """Each feedback row of the collection whose chunk it still holds: by its id, or, once a
    re-ingest replaced it, the chunk of the same document with the same content (the nearest
    to its old place); rows whose text is gone are left out. Oldest first."""
    found = (select(chunks.c.id, chunks.c.text, chunks.c.section_path, documents.c.key)
             .join(documents, documents.c.id == chunks.c.document_id)
             .where(chunks.c.collection_id == collection.id,
                    or_(chunks.c.id == feedback.c.chunk_id,
                        and_(feedback.c.chunk_id.is_(None), documents.c.key == feedback.c.document_key,
                             chunks.c.content_hash == feedback.c.content_hash)))
             .order_by(func.abs(chunks.c.ordinal - feedback.c.ordinal)).limit(1)
             .lateral("found"))
    rows = conn.execute(select(feedback.c.query, feedback.c.verdict, found)
                        .join(found, true())
                        .where(feedback.c.collection_id == collection.id).order_by(feedback.c.id))
    return [JudgedChunk(row.query, row.verdict, row.id, row.text, row.key, tuple(row.section_path)) for row in rows]


_COLUMNS = (feedback.c.id, feedback.c.query, feedback.c.chunk_id, feedback.c.document_key, feedback.c.ordinal,
            feedback.c.content_hash, feedback.c.rank, feedback.c.verdict, feedback.c.given_by, feedback.c.created_at)


def _feedback(row, collection: str) -> Feedback:
    return Feedback(row.id, collection, row.query, row.chunk_id, row.document_key, row.ordinal, row.content_hash,
                    row.rank, row.verdict, row.given_by, row.created_at)
