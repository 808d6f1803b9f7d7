"""The connection to PostgreSQL and every write pgkb makes to it."""

from __future__ import annotations

import logging
from importlib.resources import files
from typing import Any, Iterable, Sequence

import numpy as np
from alembic import command
from alembic.config import Config
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb
from sqlalchemy import create_engine, event, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from .embedded import embedded_database_url
from .errors import SpaceMismatch, StoreError
from .records import Chunk, Collection, DocumentRecord
from .settings import Settings
from .tables import chunks, collections, documents, ingest_runs

log = logging.getLogger(__name__)

# Arbitrary constants naming pgkb's advisory locks (one number space per database).
MIGRATION_LOCK = 0x70676B62_01
COLLECTION_LOCK = 0x70676B62_02

# The space fields that decide whether two vectors are comparable.
SPACE_IDENTITY = ("model", "dims", "pooling", "normalize")


def resolve_url(settings: Settings) -> str:
    """DATABASE_URL if set (any PostgreSQL with pgvector), else the embedded server."""
    if settings.database_url:
        url = settings.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url
    return embedded_database_url(settings.data_dir)


class Store:
    """pgkb's tables in one PostgreSQL database. Open with `Store.open(settings)`."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def open(cls, settings: Settings) -> "Store":
        url = resolve_url(settings)
        engine = create_engine(url, pool_pre_ping=True)
        try:
            migrate(engine)
        except OperationalError as exc:
            where = "DATABASE_URL" if settings.database_url else f"the embedded server in {settings.data_dir}"
            raise StoreError(f"cannot reach PostgreSQL ({where}): {exc.orig}") from None
        # The vector type exists now, so every new connection can learn it.
        event.listen(engine, "connect", lambda dbapi_connection, _: register_vector(dbapi_connection))
        engine.dispose()
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- collections ---------------------------------------------------------------------

    def collection(self, name: str, space: dict[str, Any] | None = None) -> Collection:
        """The collection `name`; created with `space` (and its HNSW index) if it does not exist.

        Raises SpaceMismatch when `space` differs from the one the collection was made with.
        """
        with self.engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(COLLECTION_LOCK)))
            row = conn.execute(select(collections).where(collections.c.name == name)).first()
            if row is None:
                if space is None:
                    raise StoreError(f"collection {name!r} does not exist: ingest documents into it first")
                return _create_collection(conn, name, space)
        found = Collection(row.id, row.name, row.dims, row.space)
        if space is not None:
            differs = [k for k in SPACE_IDENTITY if space.get(k) != found.space.get(k)]
            if differs:
                theirs = ", ".join(f"{k}={found.space.get(k)!r}" for k in SPACE_IDENTITY)
                raise SpaceMismatch(
                    f"collection {name!r} holds vectors of another embedding space ({theirs}); "
                    f"use the same model and dims, or another --collection"
                )
        return found

    # -- documents -------------------------------------------------------------------------

    def write_document(
        self, collection: Collection, document: DocumentRecord,
        doc_chunks: Sequence[Chunk], vectors: np.ndarray,
    ) -> int:
        """Replace the document and all its chunks in one transaction; returns its id.

        A crash at any point leaves either the old document or the new one, never a mix.
        """
        if len(doc_chunks) != len(vectors):
            raise ValueError(f"{len(doc_chunks)} chunks but {len(vectors)} vectors")
        if len(vectors) and vectors.shape[1] != collection.dims:
            raise SpaceMismatch(
                f"vectors have {vectors.shape[1]} dims, collection {collection.name!r} holds {collection.dims}"
            )
        row = {
            "collection_id": collection.id, "key": document.key, "path": document.path,
            "sha256": document.sha256, "size_bytes": document.size_bytes, "mtime": document.mtime,
            "media_type": document.media_type, "title": document.title,
            "metadata": document.metadata, "status": "ingested", "error": None,
        }
        upsert = pg_insert(documents).values(row)
        upsert = upsert.on_conflict_do_update(
            index_elements=[documents.c.collection_id, documents.c.key],
            set_={**{k: upsert.excluded[k] for k in row if k not in ("collection_id", "key")},
                  "updated_at": func.now()},
        )
        with self.engine.begin() as conn:
            # Concurrent writers of the same key queue on the row lock this takes.
            document_id = conn.execute(upsert.returning(documents.c.id)).scalar_one()
            conn.execute(chunks.delete().where(chunks.c.document_id == document_id))
            _copy_chunks(conn, collection.id, document_id, doc_chunks, vectors)
        return document_id

    # -- ingest runs -----------------------------------------------------------------------

    def start_run(self, collection: Collection, options: dict[str, Any]) -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                insert(ingest_runs).values(collection_id=collection.id, options=options)
                .returning(ingest_runs.c.id)
            ).scalar_one()

    def finish_run(self, run_id: int, status: str, counts: dict[str, Any], errors: list[dict]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(ingest_runs).where(ingest_runs.c.id == run_id)
                .values(status=status, counts=counts, errors=errors, finished_at=func.now())
            )


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; one process at a time does the work."""
    config = Config()
    config.set_main_option("script_location", str(files("migrations")))
    with engine.begin() as conn:
        conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def hnsw_index_name(collection_id: int) -> str:
    return f"chunks_embedding_hnsw_{collection_id}"


def _create_collection(conn: Connection, name: str, space: dict[str, Any]) -> Collection:
    dims = int(space["dims"])
    collection_id = conn.execute(
        insert(collections).values(name=name, model=space["model"], dims=dims, space=space)
        .returning(collections.c.id)
    ).scalar_one()
    # One partial HNSW index per collection, on the embedding cast to its dimension: the
    # searches of a collection filter on collection_id and cast the same way, so they use it.
    conn.execute(text(
        f"CREATE INDEX {hnsw_index_name(collection_id)} ON chunks "
        f"USING hnsw ((embedding::vector({dims})) vector_cosine_ops) "
        f"WHERE collection_id = {collection_id}"
    ))
    log.info("created collection %r (%s, %d dims)", name, space["model"], dims)
    return Collection(collection_id, name, dims, space)


_COPY_COLUMNS = (
    ("collection_id", "int4"), ("document_id", "int8"), ("ordinal", "int4"), ("text", "text"),
    ("section_path", "text[]"), ("page_start", "int4"), ("page_end", "int4"),
    ("element_types", "text[]"), ("token_count", "int4"), ("content_hash", "text"),
    ("metadata", "jsonb"), ("embedding", "vector"),
)


def _copy_chunks(
    conn: Connection, collection_id: int, document_id: int,
    doc_chunks: Iterable[Chunk], vectors: np.ndarray,
) -> None:
    """Binary COPY of the chunks, on the transaction's own psycopg connection."""
    columns = ", ".join(name for name, _ in _COPY_COLUMNS)
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY chunks ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([kind for _, kind in _COPY_COLUMNS])
        for chunk, vector in zip(doc_chunks, vectors):
            copy.write_row((
                collection_id, document_id, chunk.ordinal, chunk.text, list(chunk.section_path),
                chunk.page_start, chunk.page_end, list(chunk.element_types), chunk.token_count,
                chunk.content_hash, Jsonb(chunk.metadata), np.asarray(vector, dtype=np.float32),
            ))
