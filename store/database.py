"""The connection to PostgreSQL and every write pgkb makes to it."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.resources import files
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import psutil
import psycopg
from alembic import command
from alembic.config import Config
from pgvector.psycopg import register_vector
from pgvector.sqlalchemy import HALFVEC, Vector
from psycopg.types.json import Jsonb
from sqlalchemy import (
    ColumnElement,
    and_,
    any_,
    cast,
    create_engine,
    event,
    exists,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from pgkb.settings import Settings

from . import feedback, keys
from .access import DEFAULT_UNLABELLED, UNLABELLED, Unlabelled
from .catalog import (
    ChunkView,
    CollectionSummary,
    DocumentSummary,
    DroppedCollection,
    Removal,
    chunk_neighbourhood,
    collection_summaries,
    document_count,
    document_summaries,
    readable_counts,
)
from .embedded import embedded_database_url
from .errors import SpaceMismatch, StoreError, UnknownDocuments
from .feedback import Feedback, JudgedChunk, Verdict
from .fulltext import analyse
from .keys import ApiKey, NewKey
from .records import (
    COMPLETE_RUNS,
    SPACE_IDENTITY,
    Chunk,
    Collection,
    DocumentRecord,
    DocumentState,
    DocumentStatus,
    RunStatus,
)
from .replicas import CONNECT_TIMEOUT_SECONDS, Replicas
from .tables import chunks, collections, documents, hnsw_index_name, ingest_runs

log = logging.getLogger(__name__)

# Arbitrary constants naming pgkb's advisory locks (one number space per database).
MIGRATION_LOCK = 0x70676B62_01
COLLECTION_LOCK = 0x70676B62_02
# With a collection's id, the two-key lock of a bulk load (two-key locks never meet one-key ones).
BULK_LOAD_LOCK = 0x706B62
# HNSW graphs are built with twice pgvector's default care: the index takes twice as long to
# build, and searches reach the same recall visiting a quarter of the nodes (Collection.min_ef_search).
EF_CONSTRUCTION = 128
# Opening a store runs the migrations, and Alembic's `op` and `context` are process globals:
# threads opening stores together take turns.
_OPENING = threading.Lock()


def resolve_url(settings: Settings) -> str:
    """DATABASE_URL if set (any PostgreSQL with pgvector), else the embedded server."""
    if settings.database_url:
        return _sqlalchemy_url(settings.database_url)
    return embedded_database_url(settings.data_dir)


def replica_urls(settings: Settings) -> list[str]:
    """DATABASE_URL_REPLICAS, each as SQLAlchemy takes it."""
    return [_sqlalchemy_url(url.strip()) for url in (settings.database_url_replicas or "").split(",") if url.strip()]


def _sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
    return _quote_credentials(url)


def _quote_credentials(url: str) -> str:
    """The URL with its user name and password percent-encoded.

    A password holding `@`, `:` or `/` written as is splits the URL in the wrong place, and the
    error then names part of the password as the host. The host starts after the last `@`.
    """
    scheme, separator, rest = url.partition("://")
    credentials, at, address = rest.rpartition("@")
    if not at:
        return url
    user, colon, password = credentials.partition(":")
    quoted = quote(unquote(user), safe="") + colon + quote(unquote(password), safe="")
    return f"{scheme}{separator}{quoted}@{address}"


class Store:
    """pgkb's tables in one PostgreSQL database. Open with `Store.open(settings)`."""

    def __init__(self, engine: Engine, pgvector_version: tuple[int, ...], replicas: list[Engine] | None = None):
        self.engine = engine  # the primary: every write, and searches when no replica may answer
        self.replicas = Replicas(engine, replicas or [])
        # What the server can do: halfvec indexes from 0.7, iterative index scans from 0.8.
        self.pgvector_version = pgvector_version

    @classmethod
    def open(cls, settings: Settings) -> Store:
        with _OPENING:
            return cls._open(settings)

    @classmethod
    def _open(cls, settings: Settings) -> Store:
        url = resolve_url(settings)
        # No server-side prepared statements: a generic plan cannot prove a collection's partial
        # HNSW index applies, and would silently fall back to a full scan.
        engine = create_engine(url, pool_pre_ping=True, connect_args={"prepare_threshold": None})
        try:
            migrate(engine)
        except DBAPIError as exc:
            # PostgreSQL 16+ says the extension is "not available", older servers cannot open
            # vector.control (an OperationalError), a user without the right is refused.
            statement = exc.statement or ""
            if "CREATE EXTENSION" in statement and "vector" in statement:
                reason = exc.orig.diag.message_primary if isinstance(exc.orig, psycopg.Error) else exc.orig
                raise StoreError(
                    f"the PostgreSQL server has no pgvector extension ({reason}); "
                    "install it (the pgvector/pgvector image, or your distribution's postgresql-NN-pgvector "
                    "package) and connect as a user allowed to CREATE EXTENSION vector"
                ) from None
            if isinstance(exc, OperationalError):
                where = "DATABASE_URL" if settings.database_url else f"the embedded server in {settings.data_dir}"
                raise StoreError(f"cannot reach PostgreSQL ({where}): {exc.orig}") from None
            raise
        with engine.connect() as conn:
            version = conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar_one()
        # The vector type exists now, so every new connection can learn it.
        _register_vector(engine)
        engine.dispose()
        replicas = [_register_vector(create_engine(url, pool_pre_ping=True, connect_args={
            "prepare_threshold": None, "connect_timeout": CONNECT_TIMEOUT_SECONDS})) for url in replica_urls(settings)]
        return cls(engine, tuple(int(part) for part in version.split(".")), replicas)

    @property
    def has_iterative_scans(self) -> bool:
        return self.pgvector_version >= (0, 8)

    def close(self) -> None:
        self.engine.dispose()
        self.replicas.close()

    # -- collections ---------------------------------------------------------------------

    def collection(self, name: str, space: dict[str, Any] | None = None,
                   unlabelled: Unlabelled = DEFAULT_UNLABELLED) -> Collection:
        """The collection `name`; created with `space` (and its HNSW index) if it does not exist,
        its documents without an access tag read by `unlabelled` (see store.access).

        Raises SpaceMismatch when `space` differs from the one the collection was made with.
        """
        with self.engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(COLLECTION_LOCK)))
            found = self._find_collection(conn, name)
            if found is None:
                if space is None:
                    raise _no_such_collection(conn, name)
                return self._create_collection(conn, name, space, unlabelled)
        if space is not None:
            found.check_space({k: space.get(k) for k in SPACE_IDENTITY})
        return found

    def find_collection(self, name: str) -> Collection | None:
        """The collection `name`, or None if there is none yet."""
        with self.engine.connect() as conn:
            return self._find_collection(conn, name)

    @staticmethod
    def _find_collection(conn: Connection, name: str) -> Collection | None:
        row = conn.execute(select(collections).where(collections.c.name == name)).first()
        if row is None:
            return None
        return Collection(row.id, row.name, row.dims, row.space, row.settings.get("vector_type", "vector"),
                          row.settings.get("ef_construction", 64), tuple(row.settings.get("roots", ())))

    def add_root(self, collection: Collection, root: str) -> Collection:
        """Remember that the collection holds documents ingested from the folder `root` (as
        stored); the collection with its roots now."""
        with self.engine.begin() as conn:
            settings = conn.execute(select(collections.c.settings).where(collections.c.id == collection.id)
                                    .with_for_update()).scalar_one()
            roots = list(dict.fromkeys([*settings.get("roots", ()), root]))
            conn.execute(update(collections).where(collections.c.id == collection.id)
                         .values(settings={**settings, "roots": roots}))
        log.info("collection %r: root %s added", collection.name, root)
        return replace(collection, roots=tuple(roots))

    def move_root(self, collection: Collection, old: str, new: str) -> Collection:
        """The collection's root `old` (as stored) is now `new`: its documents' paths follow, in
        one transaction, so that they keep their keys and the next run finds them unchanged."""
        with self.engine.begin() as conn:
            settings = conn.execute(select(collections.c.settings).where(collections.c.id == collection.id)
                                    .with_for_update()).scalar_one()
            roots = [new if root == old else root for root in settings.get("roots", ())]
            conn.execute(update(collections).where(collections.c.id == collection.id)
                         .values(settings={**settings, "roots": roots}))
            under_old = and_(documents.c.collection_id == collection.id,
                             func.starts_with(documents.c.path, old + "/"))
            conn.execute(update(documents).where(under_old)
                         .values(path=new + func.substr(documents.c.path, len(old) + 1)))
        return replace(collection, roots=tuple(roots))

    def _create_collection(self, conn: Connection, name: str, space: dict[str, Any],
                           unlabelled: Unlabelled) -> Collection:
        dims = int(space["dims"])
        vector_type = self._index_vector_type(dims)
        collection_id = conn.execute(
            insert(collections).values(name=name, model=space["model"], dims=dims, space=space,
                                       settings={"vector_type": vector_type, "ef_construction": EF_CONSTRUCTION,
                                                 "unlabelled": unlabelled})
            .returning(collections.c.id)
        ).scalar_one()
        collection = Collection(collection_id, name, dims, space, vector_type, EF_CONSTRUCTION)
        _create_hnsw_index(conn, collection)
        log.info("created collection %r (%s, %d dims, %s index)", name, space["model"], dims, vector_type)
        return collection

    def _index_vector_type(self, dims: int) -> str:
        """vector indexes up to 2,000 dims; halfvec (pgvector >= 0.7) up to 4,000."""
        if dims <= 2000:
            return "vector"
        if self.pgvector_version >= (0, 7) and dims <= 4000:
            return "halfvec"
        version = ".".join(map(str, self.pgvector_version))
        raise StoreError(
            f"{dims}-dimensional vectors cannot be indexed by this server's pgvector {version} "
            f"(HNSW takes at most 2000 dims, 4000 as halfvec from pgvector 0.7): choose a smaller "
            f"Matryoshka size with --dims (e.g. --dims 1024), or use PostgreSQL with pgvector >= 0.7 "
            f"(the docker compose database)"
        )

    @contextmanager
    def bulk_load(self, collection: Collection) -> Iterator[BulkLoad]:
        """Write a collection's first chunks without its HNSW index, then build the index once.

        Every chunk written into an HNSW index costs more than the rest of its write together,
        and building the index over all the rows at the end costs a fraction of that
        (bench/search_latency.py). So a load into an empty collection (or one whose index is
        missing: a load that did not finish) drops the index and builds it when the load
        finishes; searches meanwhile scan exactly. Other loads keep the index up. One load at
        a time defers: a concurrent one writes as usual and leaves the build to it.
        """
        load = BulkLoad()
        index = hnsw_index_name(collection.id)
        # Its own connection, in autocommit: the lock is held for the whole load.
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            locked = conn.execute(select(func.pg_try_advisory_lock(BULK_LOAD_LOCK, collection.id))).scalar()
            if locked:
                empty = conn.execute(select(~exists().where(chunks.c.collection_id == collection.id))).scalar()
                indexed = conn.execute(select(func.to_regclass(index))).scalar() is not None
                load.deferred = empty or not indexed
                if load.deferred and indexed:
                    conn.execute(text(f"DROP INDEX {index}"))
            try:
                yield load
                if load.deferred:  # a load cut short (a crash, a second Ctrl-C) leaves it to the next
                    started = time.perf_counter()
                    _create_hnsw_index(conn, collection)
                    load.index_seconds = time.perf_counter() - started
                    log.info("built the HNSW index of collection %r in %.1f s", collection.name, load.index_seconds)
            finally:
                if locked:
                    conn.execute(select(func.pg_advisory_unlock(BULK_LOAD_LOCK, collection.id)))

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
        upsert = _document_upsert(collection, document, "ingested", None)
        with self.engine.begin() as conn:
            # Each document stays atomic; a crash may only lose the last few commits, which a
            # rerun writes again. Saves an fsync per document.
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            # Concurrent writers of the same key queue on the row lock this takes.
            document_id = conn.execute(upsert.returning(documents.c.id)).scalar_one()
            _stage_chunks(conn, collection.id, document_id, doc_chunks, vectors)
            # From the first change to its chunks until the commit, the transaction holds its
            # collection's statistics lock (the chunks' triggers take it): staging went first.
            conn.execute(chunks.delete().where(chunks.c.document_id == document_id))
            _insert_staged_chunks(conn)
        return document_id

    def document_states(self, collection: Collection) -> dict[str, DocumentState]:
        """What the collection holds of each document, by key: enough to tell an unchanged file."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(documents.c.key, documents.c.sha256, documents.c.fingerprint, documents.c.tags,
                       documents.c.status, documents.c.error, documents.c.path)
                .where(documents.c.collection_id == collection.id)
            )
            return {row.key: DocumentState(row.sha256, row.fingerprint, row.tags, row.status, row.error, row.path)
                    for row in rows}

    def record_failure(self, collection: Collection, document: DocumentRecord, error: str) -> None:
        """Remember a file that could not be read, so that the next run need not try it again
        while it is unchanged. A document already stored from an earlier version is kept as it is."""
        upsert = _document_upsert(collection, document, "failed", error, only_over=documents.c.status == "failed")
        with self.engine.begin() as conn:
            conn.execute(upsert)

    def update_tags(self, collection: Collection, key: str, tags: dict[str, Any]) -> None:
        """A metadata-only change: one row updated, nothing parsed or embedded again."""
        with self.engine.begin() as conn:
            conn.execute(
                update(documents).where(documents.c.collection_id == collection.id, documents.c.key == key)
                .values(tags=tags, updated_at=func.now())
            )

    def delete_documents(self, collection: Collection, keys: Iterable[str]) -> int:
        """Remove documents and their chunks, in one transaction; returns how many were there."""
        keys = sorted(set(keys))
        if not keys:
            return 0
        with self.engine.begin() as conn:
            doomed = _lock_documents(conn, collection, keys)
            return conn.execute(documents.delete().where(_any_of(documents.c.id, list(doomed.values())))).rowcount

    def stored_vectors(self, collection: Collection, content_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """The vectors the collection already holds for these chunk content hashes: the
        embedding cache (a collection is bound to one embedding space, so they are reusable)."""
        hashes = sorted(set(content_hashes))
        if not hashes:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(chunks.c.content_hash, chunks.c.embedding)
                .where(chunks.c.collection_id == collection.id, _any_of(chunks.c.content_hash, hashes))
                .distinct(chunks.c.content_hash)
            )
            return {row.content_hash: np.asarray(row.embedding, dtype=np.float32) for row in rows}

    def analyze(self) -> None:
        """Fresh planner statistics after a load: filtered searches decide index or exact scan
        from them, and the embedded server may stop before autovacuum would have run."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE documents, chunks"))

    # -- managing what is stored -----------------------------------------------------------

    def list_collections(self) -> list[CollectionSummary]:
        """Every collection, by name, with what it holds and its last ingest run."""
        with self.engine.connect() as conn:
            return collection_summaries(conn)

    def collection_summary(self, name: str) -> CollectionSummary:
        """What the collection `name` holds; StoreError naming the existing ones if there is none."""
        with self.engine.connect() as conn:
            return collection_summaries(conn, _existing_collection(conn, name))[0]

    def list_documents(self, name: str, *, failed_only: bool = False, principals: Sequence[str] | None = None,
                       keys: Sequence[str] | None = None, limit: int | None = None,
                       offset: int = 0) -> list[DocumentSummary]:
        """The documents of collection `name` by key (only the failed ones with `failed_only`;
        only those `principals` may read, when given; only `keys`, when given; `limit` of them
        from `offset`, when given)."""
        with self.engine.connect() as conn:
            return document_summaries(conn, _existing_collection(conn, name), failed_only, principals, keys,
                                      limit, offset)

    def count_documents(self, name: str, *, failed_only: bool = False,
                        principals: Sequence[str] | None = None) -> int:
        """How many documents list_documents lists for the same arguments, over all pages."""
        with self.engine.connect() as conn:
            return document_count(conn, _existing_collection(conn, name), failed_only, principals)

    def chunk_neighbourhood(self, name: str, chunk_id: int, before: int = 1, after: int = 1,
                            principals: Sequence[str] | None = None) -> list[ChunkView]:
        """A chunk of collection `name` with its neighbours in its document (see catalog.chunk_neighbourhood)."""
        with self.engine.connect() as conn:
            return chunk_neighbourhood(conn, _existing_collection(conn, name), chunk_id, before, after, principals)

    def readable_counts(self, name: str, principals: Sequence[str]) -> tuple[int, int]:
        """The ingested documents of collection `name`, and their chunks, that `principals` may read."""
        with self.engine.connect() as conn:
            return readable_counts(conn, _existing_collection(conn, name), principals)

    def remove_documents(self, name: str, keys: Iterable[str], principals: Sequence[str] | None = None) -> Removal:
        """Remove documents of collection `name` by key, with their chunks, in one transaction.

        All or nothing: if any key is unknown (a typo, removed already, or not readable by
        `principals` when given), UnknownDocuments names them and nothing is removed. The BM25
        statistics change in the same transaction (the chunks' triggers keep them).
        """
        wanted = sorted(set(keys))
        with self.engine.begin() as conn:
            collection = _existing_collection(conn, name)
            found = _lock_documents(conn, collection, wanted)
            if principals is not None:
                readable = {d.key for d in document_summaries(conn, collection, principals=principals, keys=wanted)}
                found = {key: id_ for key, id_ in found.items() if key in readable}
            unknown = [key for key in wanted if key not in found]
            if unknown:
                raise UnknownDocuments(collection.name, unknown)
            ids = list(found.values())
            chunk_count = conn.execute(select(func.count()).where(_any_of(chunks.c.document_id, ids))).scalar_one()
            conn.execute(documents.delete().where(_any_of(documents.c.id, ids)))
        return Removal(collection.name, tuple(wanted), chunk_count)

    def drop_collection(self, name: str) -> DroppedCollection:
        """Delete collection `name` with its documents, chunks, BM25 statistics, ingest runs and
        HNSW index, in one transaction.

        The rows go first, while searches of other collections go on; dropping the index then
        locks the chunks table, and searches wait for the commit that follows at once.
        """
        with self.engine.begin() as conn:
            collection = _existing_collection(conn, name)
            counted = collection_summaries(conn, collection)[0]
            runs = conn.execute(ingest_runs.delete().where(ingest_runs.c.collection_id == collection.id)).rowcount
            # Documents, chunks and statistics follow by ON DELETE CASCADE; the statistics
            # triggers see their collection gone and leave the cascade to it.
            conn.execute(collections.delete().where(collections.c.id == collection.id))
            conn.execute(text(f"DROP INDEX IF EXISTS {hnsw_index_name(collection.id)}"))
        log.info("dropped collection %r", name)
        return DroppedCollection(collection.name, counted.documents + counted.failed_documents, counted.chunks, runs)

    def set_unlabelled(self, name: str, unlabelled: Unlabelled) -> None:
        """Who reads the collection's documents that have no `access` tag: everyone or no one."""
        if unlabelled not in UNLABELLED:
            raise StoreError(f"unlabelled documents are read by {' or '.join(UNLABELLED)}, not {unlabelled!r}")
        with self.engine.begin() as conn:
            collection = _existing_collection(conn, name)
            conn.execute(update(collections).where(collections.c.id == collection.id)
                         .values(settings=collections.c.settings.op("||")(func.jsonb_build_object("unlabelled",
                                                                                                 unlabelled))))

    # -- API keys (store.keys) -------------------------------------------------------------

    def create_key(self, name: str, scope: str, collections: Sequence[str], groups: Sequence[str]) -> NewKey:
        """A new key; its secret is in the result only (the database keeps its hash)."""
        with self.engine.begin() as conn:
            return keys.create_key(conn, name, scope, collections, groups)

    def list_keys(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            return keys.list_keys(conn)

    def revoke_key(self, key_id: str) -> ApiKey:
        with self.engine.begin() as conn:
            return keys.revoke_key(conn, key_id)

    def authenticate(self, presented: str) -> ApiKey | None:
        """The live key `presented` is, or None."""
        with self.engine.connect() as conn:
            return keys.authenticate(conn, presented)

    # -- feedback on search hits (store.feedback) ---------------------------------------------

    def record_feedback(self, name: str, query: str, chunk_id: int, verdict: Verdict, rank: int | None = None,
                        given_by: str | None = None, principals: Sequence[str] | None = None) -> Feedback:
        """Store a verdict on chunk `chunk_id` of collection `name` for `query`, which the caller
        masked. UnknownChunk when there is no such chunk, or none `principals` (when given) may read."""
        with self.engine.begin() as conn:
            return feedback.record_feedback(conn, _existing_collection(conn, name), query, chunk_id, verdict, rank,
                                            given_by, principals)

    def list_feedback(self, name: str, limit: int | None = None, offset: int = 0) -> tuple[list[Feedback], int]:
        """Collection `name`'s feedback, oldest first (`limit` rows from `offset`), and how many rows it has."""
        with self.engine.connect() as conn:
            collection = _existing_collection(conn, name)
            return (feedback.list_feedback(conn, collection, limit, offset),
                    feedback.count_feedback(conn, collection))

    def judged_chunks(self, name: str) -> list[JudgedChunk]:
        """Collection `name`'s feedback with each row's chunk as it holds it now (store.feedback.judged_chunks)."""
        with self.engine.connect() as conn:
            return feedback.judged_chunks(conn, _existing_collection(conn, name))

    # -- ingest runs -----------------------------------------------------------------------

    def start_run(self, collection: Collection, options: dict[str, Any]) -> int:
        """Record a run's start, with the process running it. Runs of this machine still
        `running` whose process is gone (killed outright, or the database went away before
        they could record their end) are marked aborted first."""
        process = _this_process()
        with self.engine.begin() as conn:
            unfinished = conn.execute(
                select(ingest_runs.c.id, ingest_runs.c.options["process"])
                .where(ingest_runs.c.collection_id == collection.id, ingest_runs.c.status == "running",
                       ingest_runs.c.options["process"]["host"].astext == process["host"])
            ).all()
            gone = [run_id for run_id, ran_by in unfinished if not _still_running(ran_by)]
            if gone:
                conn.execute(update(ingest_runs).where(ingest_runs.c.id.in_(gone)).values(
                    status="aborted", finished_at=func.now(),
                    errors=[{"key": None, "reason": "the run ended without recording its end (killed, or the "
                                                    "database went away)"}]))
            return conn.execute(
                insert(ingest_runs).values(collection_id=collection.id, options={**options, "process": process})
                .returning(ingest_runs.c.id)
            ).scalar_one()

    def finish_run(self, run_id: int, status: RunStatus, counts: dict[str, Any], errors: list[dict]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(ingest_runs).where(ingest_runs.c.id == run_id)
                .values(status=status, counts=counts, errors=errors, finished_at=func.now())
            )


    def last_complete_run_errors(self, collection: Collection, path: str) -> list[dict[str, Any]]:
        """The failures recorded by the collection's last run over `path` that went through every
        file (succeeded, partial or failed), as `finish_run` was given them; none if there was no such run."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(ingest_runs.c.errors)
                .where(ingest_runs.c.collection_id == collection.id, ingest_runs.c.status.in_(COMPLETE_RUNS),
                       ingest_runs.c.options["path"].astext == path)
                .order_by(ingest_runs.c.id.desc()).limit(1)
            ).scalar() or []


def _this_process() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}


def _still_running(ran_by: dict[str, Any] | None) -> bool:
    """Whether the process a run recorded (pid and start time, so a reused pid is not it) lives."""
    if ran_by is None:
        return False
    try:
        return psutil.Process(ran_by["pid"]).create_time() == ran_by["started"]
    except (psutil.Error, KeyError, TypeError):
        return False


def _register_vector(engine: Engine) -> Engine:
    event.listen(engine, "connect", lambda dbapi_connection, _: register_vector(dbapi_connection))
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; one process at a time does the work."""
    config = Config()
    config.set_main_option("script_location", str(files("migrations")))
    with engine.begin() as conn:
        conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _existing_collection(conn: Connection, name: str) -> Collection:
    found = Store._find_collection(conn, name)
    if found is None:
        raise _no_such_collection(conn, name)
    return found


def _no_such_collection(conn: Connection, name: str) -> StoreError:
    """The error for a collection that does not exist, naming those that do."""
    names = conn.execute(select(collections.c.name).order_by(collections.c.name)).scalars().all()
    there = f"the collections are {', '.join(map(repr, names))}" if names else "there are no collections yet"
    return StoreError(f"collection {name!r} does not exist ({there}): ingest documents into it first")


def _lock_documents(conn: Connection, collection: Collection, keys: list[str]) -> dict[str, int]:
    """The ids of the collection's documents with these keys, by key, locked for this
    transaction. Row locks are taken in one order (by key), so two transactions removing
    documents at once cannot deadlock."""
    locked = (select(documents.c.key, documents.c.id)
              .where(documents.c.collection_id == collection.id, _any_of(documents.c.key, keys))
              .order_by(documents.c.key).with_for_update())
    return dict(conn.execute(locked).tuples().all())


def _document_upsert(collection: Collection, document: DocumentRecord, status: DocumentStatus, error: str | None,
                     only_over: ColumnElement | None = None):
    """INSERT the document's row, or UPDATE the one with its key (where `only_over` holds)."""
    row = {
        "collection_id": collection.id, "key": document.key, "path": document.path,
        "sha256": document.sha256, "size_bytes": document.size_bytes, "mtime": document.mtime,
        "media_type": document.media_type, "title": document.title,
        "metadata": document.metadata, "tags": document.tags, "fingerprint": document.fingerprint,
        "pii_counts": document.pii_counts, "status": status, "error": error,
    }
    upsert = pg_insert(documents).values(row)
    return upsert.on_conflict_do_update(
        index_elements=[documents.c.collection_id, documents.c.key],
        set_={**{k: upsert.excluded[k] for k in row if k not in ("collection_id", "key")}, "updated_at": func.now()},
        where=only_over,
    )


def _any_of(column: ColumnElement, values: list) -> ColumnElement:
    """`column = ANY(array)`: the values travel as one array parameter however many they are
    (an IN list takes a parameter each, and a statement at most 65,535)."""
    return column == any_(literal(values, ARRAY(column.type)))


@dataclass
class BulkLoad:
    deferred: bool = False     # whether the HNSW index is built after the load
    index_seconds: float = 0.0  # how long that took


def _create_hnsw_index(conn: Connection, collection: Collection) -> None:
    """One partial HNSW index per collection, on the embedding cast to its dimension: the
    searches of a collection filter on collection_id and cast the same way, so they use it."""
    vector_type, dims = collection.vector_type, collection.dims
    conn.execute(text(
        f"CREATE INDEX IF NOT EXISTS {hnsw_index_name(collection.id)} ON chunks "
        f"USING hnsw ((embedding::{vector_type}({dims})) {vector_type}_cosine_ops) "
        f"WITH (m = 16, ef_construction = {int(collection.ef_construction)}) WHERE collection_id = {collection.id}"
    ))


def indexed_embedding(collection: Collection):
    """The expression a collection's HNSW index is built on; queries must order by the same."""
    kind = HALFVEC if collection.vector_type == "halfvec" else Vector
    return cast(chunks.c.embedding, kind(collection.dims))


_COPY_COLUMNS = (
    ("collection_id", "int4"), ("document_id", "int8"), ("ordinal", "int4"), ("text", "text"),
    ("section_path", "text[]"), ("page_start", "int4"), ("page_end", "int4"),
    ("element_types", "text[]"), ("token_count", "int4"), ("content_hash", "text"),
    ("metadata", "jsonb"), ("embedding", "vector"),
)
# The text analysed for full-text search (store.fulltext), turned into the tsvector on insert.
_ANALYSED_COLUMNS = (
    ("title_latin", "text"), ("title_cjk", "text"), ("body_latin", "text"), ("body_cjk", "text"),
)
_STAGE_DDL = "CREATE TEMP TABLE IF NOT EXISTS pgkb_chunk_stage ({}) ON COMMIT DELETE ROWS".format(
    ", ".join(f"{name} {kind}" for name, kind in _COPY_COLUMNS + _ANALYSED_COLUMNS)
)
_TSVECTOR = (
    "setweight(to_tsvector('english', title_latin) || to_tsvector('simple', title_cjk), 'A')"
    " || setweight(to_tsvector('english', body_latin) || to_tsvector('simple', body_cjk), 'B')"
)


def _stage_chunks(
    conn: Connection, collection_id: int, document_id: int,
    doc_chunks: Iterable[Chunk], vectors: np.ndarray,
) -> None:
    """Binary COPY of the chunks, with their text analysed for full-text search, into a
    per-connection staging table."""
    staged = ", ".join(name for name, _ in _COPY_COLUMNS + _ANALYSED_COLUMNS)
    cursor = _psycopg(conn).cursor()
    cursor.execute(_STAGE_DDL)
    with cursor.copy(f"COPY pgkb_chunk_stage ({staged}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([kind for _, kind in _COPY_COLUMNS + _ANALYSED_COLUMNS])
        for chunk, vector in zip(doc_chunks, vectors):
            title, body = analyse(" ".join(chunk.section_path)), analyse(chunk.text)
            copy.write_row((
                collection_id, document_id, chunk.ordinal, chunk.text, list(chunk.section_path),
                chunk.page_start, chunk.page_end, list(chunk.element_types), chunk.token_count,
                chunk.content_hash, Jsonb(chunk.metadata), np.asarray(vector, dtype=np.float32),
                title.latin, title.cjk, body.latin, body.cjk,
            ))


def _insert_staged_chunks(conn: Connection) -> None:
    """One INSERT of the staged chunks that adds the tsvector."""
    columns = ", ".join(name for name, _ in _COPY_COLUMNS)
    _psycopg(conn).execute(
        f"INSERT INTO chunks ({columns}, tsv) SELECT {columns}, {_TSVECTOR} FROM pgkb_chunk_stage")


def _psycopg(conn: Connection) -> psycopg.Connection:
    """The psycopg connection under SQLAlchemy's, for COPY and statements sent as written."""
    driver = conn.connection.driver_connection
    if driver is None:  # only after the connection was closed or invalidated
        raise StoreError("the database connection is closed")
    return driver
