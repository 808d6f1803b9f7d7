"""Bulk load speed for the search latency benchmark (bench/search_latency.py), and the searched
collection's rows written with pgkb.

pgkb's `Store.write_document` (binary COPY, one transaction per document) against
langchain-postgres `PGVector.add_embeddings` (one call, so one transaction, per document), same
rows, each into a fresh database, both with an HNSW index present during the load and both
without (HNSW maintenance dominates insert cost). Without: pgkb loads the way `ingest` does into
an empty collection (`Store.bulk_load`), which builds the index once the rows are in, and that
build is timed too: rows then index, against langchain-postgres keeping its index up, is the
like-for-like "load into a searchable index" figure. langchain-postgres is installed in its own
virtualenv (created on first use), never in pgkb's, and runs in a subprocess
(bench/peers/langchain_postgres_load.py) that reads the rows from files. pgkb's time is split by statement
(COPY, the staged INSERT that adds the tsvector, commits...).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import make_url

from bench.latency_rows import Rows
from pgkb.settings import Settings
from store import Chunk, Collection, DocumentRecord, Store
from store.database import BulkLoad
from store.fulltext import analyse
from store.tables import documents

PEER_REQUIREMENTS = ("langchain-postgres", "psycopg[binary]")
PEER_PACKAGES = ("langchain-postgres", "langchain-core", "psycopg", "SQLAlchemy", "pgvector", "torch")
PEER_SCRIPT = Path(__file__).resolve().parent / "peers" / "langchain_postgres_load.py"
SCRATCH_DATABASES = {"pgkb": "bench_load_pgkb", "langchain-postgres": "bench_load_langchain"}
INDEX_BUILT_AT_THE_END = "HNSW index built at the end of the bulk load"


# -- loading with pgkb ---------------------------------------------------------------------

def document_key(document: int) -> str:
    return f"bench/doc-{document:05d}.txt"


def document_fingerprint(rows: Rows, document: int) -> str:
    """A document's rows, hashed: an earlier run's document is reused only if it is the same."""
    digest = hashlib.sha256()
    for row in rows.document_rows(document):
        digest.update(rows.texts[row].encode())
        digest.update(rows.vectors[row].tobytes())
    return digest.hexdigest()


def pgkb_records(rows: Rows, document: int) -> tuple[DocumentRecord, list[Chunk]]:
    """pgkb's DocumentRecord and Chunks for one document."""
    key, metadata, members = document_key(document), rows.metadata(document), rows.document_rows(document)
    record = DocumentRecord(
        key=key, path=key, sha256=document_fingerprint(rows, document),
        size_bytes=sum(len(rows.texts[row].encode()) for row in members), mtime=None,
        media_type="text/plain", title=rows.titles[members[0]], metadata=metadata,
    )
    chunks = [
        Chunk(document_key=key, ordinal=ordinal, text=rows.texts[row],
              section_path=(rows.titles[row],) if rows.titles[row] else (),  # CMRC paragraphs have no title
              page_start=None, page_end=None, element_types=("NarrativeText",),
              token_count=len(rows.texts[row].split()),  # words: the load does not depend on it
              content_hash=hashlib.sha256(rows.texts[row].encode()).hexdigest(), metadata=metadata)
        for ordinal, row in enumerate(members)
    ]
    return record, chunks


def write_documents(store: Store, collection: Collection, rows: Rows, documents: list[int]) -> float:
    """Write `documents` through pgkb's bulk path; returns the seconds the writes took."""
    prepared = [pgkb_records(rows, document) for document in documents]  # not part of the load
    started = time.perf_counter()
    for document, (record, chunks) in zip(documents, prepared):
        store.write_document(collection, record, chunks, rows.vectors[rows.document_rows(document)])
    return time.perf_counter() - started


def statement_kind(query: object) -> str:
    """Which part of `Store.write_document` a statement is, for the load profile."""
    words = " ".join(str(query).split()[:3]).upper()
    for prefix, kind in (("INSERT INTO DOCUMENTS", "document upsert"), ("DELETE FROM CHUNKS", "old chunks delete"),
                         ("CREATE TEMP TABLE", "staging table"), ("INSERT INTO CHUNKS", "staged INSERT"),
                         (";", "pool pre-ping"), ("CREATE INDEX", "index build")):
        if words.startswith(prefix):
            return kind
    return "other"


def timed_cursor_class(seconds: dict[str, float]) -> type[psycopg.Cursor]:
    """A psycopg cursor adding each statement's (and each COPY's) time to `seconds`, by kind."""
    class TimedCursor(psycopg.Cursor):
        def execute(self, query, params=None, **kwargs):
            started = time.perf_counter()
            try:
                return super().execute(query, params, **kwargs)
            finally:
                seconds[statement_kind(query)] += time.perf_counter() - started

        @contextmanager
        def copy(self, statement, params=None, **kwargs):
            started = time.perf_counter()
            with super().copy(statement, params, **kwargs) as copy:
                yield copy
            seconds["COPY"] += time.perf_counter() - started

    return TimedCursor


@dataclass
class LoadResult:
    contender: str
    hnsw: bool                       # an HNSW index was present during the load
    rows: int
    seconds: float
    load_average: tuple[float, float]  # 1-minute load average before and after
    profile: dict[str, float] = field(default_factory=dict)  # seconds by part (pgkb)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def load_pgkb(url: str, space: dict, rows: Rows, hnsw: bool) -> LoadResult:
    """Load every row into a fresh pgkb schema at `url`, timing each part of the writes."""
    store = Store.open(Settings(database_url=url))
    collection = store.collection("bench-load", space)
    seconds: dict[str, float] = defaultdict(float)
    cursor_class = timed_cursor_class(seconds)
    event.listen(store.engine, "connect",
                 lambda dbapi_connection, _: setattr(dbapi_connection, "cursor_factory", cursor_class))
    store.engine.dispose()  # the next connection gets the timed cursors
    before = os.getloadavg()[0]
    # Without the index: pgkb's bulk load (an empty collection), which builds it at the end.
    with store.bulk_load(collection) if not hnsw else nullcontext(BulkLoad()) as load:
        total = write_documents(store, collection, rows, list(range(rows.documents)))
    after = os.getloadavg()[0]
    seconds.pop("index build", None)  # after the writes: load.index_seconds below
    profile = {**seconds, "commit and the rest": total - sum(seconds.values())}

    # Inside those parts: the COPY includes pgkb's text analysis in Python (timed again here,
    # alone); the staged INSERT computes the tsvector (timed here alone, on the stored rows)
    # and maintains the indexes.
    started = time.perf_counter()
    for title, body in zip(rows.titles, rows.texts):
        analyse(title), analyse(body)
    profile["COPY: Python text analysis"] = time.perf_counter() - started
    with store.engine.begin() as conn:
        started = time.perf_counter()
        conn.execute(text(
            "SELECT sum(length(setweight(to_tsvector('english', array_to_string(section_path, ' ')), 'A')"
            " || setweight(to_tsvector('english', text), 'B'))) FROM chunks"
        ))
        profile["staged INSERT: to_tsvector"] = time.perf_counter() - started
    if not hnsw:
        profile[INDEX_BUILT_AT_THE_END] = load.index_seconds
    store.close()
    return LoadResult("pgkb", hnsw, len(rows.texts), total, (before, after), profile)


def build_search_collection(settings: Settings, space: dict, rows: Rows) -> None:
    """The searched collection: written where an earlier run's documents are missing or differ."""
    store = Store.open(settings)
    collection = store.collection(settings.collection, space)
    with store.engine.connect() as conn:
        stored = dict(conn.execute(select(documents.c.key, documents.c.sha256)
                                   .where(documents.c.collection_id == collection.id)).all())
    missing = [d for d in range(rows.documents) if stored.get(document_key(d)) != document_fingerprint(rows, d)]
    if missing:
        print(f"building collection {settings.collection!r} in {settings.data_dir}: "
              f"{len(missing)} documents to write", flush=True)
        with store.bulk_load(collection) as load:
            seconds = write_documents(store, collection, rows, missing)
        seconds += load.index_seconds
        print(f"  {len(missing) * rows.per_document} rows in {seconds:.0f} s", flush=True)
    # Planner statistics, as autovacuum would gather them in time: without them the planner
    # guesses a collection holds a few rows and scans it exactly instead of using its index.
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE chunks")
        conn.exec_driver_sql("ANALYZE documents")
    store.close()


# -- loading with langchain-postgres (in its own virtualenv) -------------------------------

def ensure_peer_env(venv: Path) -> dict[str, str | None]:
    """A virtualenv with langchain-postgres, created on first use; returns its package versions."""
    python = venv / "bin" / "python"
    if not python.exists() or subprocess.run([python, "-c", "import langchain_postgres"],
                                             capture_output=True).returncode != 0:
        print(f"installing {', '.join(PEER_REQUIREMENTS)} into {venv} (apart from pgkb's environment)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        pip = subprocess.run([python, "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], capture_output=True, text=True)
        if pip.returncode:
            raise SystemExit(f"installing langchain-postgres failed:\n{pip.stdout}{pip.stderr}")
    versions = json.loads(subprocess.run(
        [python, "-c", "import importlib.metadata as m, json, sys\n"
                       "def version(name):\n"
                       "    try: return m.version(name)\n"
                       "    except m.PackageNotFoundError: return None\n"
                       "print(json.dumps({name: version(name) for name in sys.argv[1:]}))", *PEER_PACKAGES],
        check=True, capture_output=True, text=True).stdout)
    if versions["torch"]:
        raise SystemExit(f"{venv} holds torch {versions['torch']}: langchain-postgres needs none; remove the folder")
    return versions


def write_peer_rows(rows: Rows, folder: Path) -> None:
    """The rows as files for the peer: vectors.npy, and one JSON line per row with its text and
    metadata (what pgkb keeps in columns: document, section, ordinal; and the department)."""
    np.save(folder / "vectors.npy", rows.vectors)
    with (folder / "rows.jsonl").open("w") as out:
        for document in range(rows.documents):
            for ordinal, row in enumerate(rows.document_rows(document)):
                metadata = {**rows.metadata(document), "source": document_key(document),
                            "section": rows.titles[row], "ordinal": ordinal}
                out.write(json.dumps({"text": rows.texts[row], "metadata": metadata}) + "\n")
    (folder / "layout.json").write_text(json.dumps({"per_document": rows.per_document}))


def load_peer(python: Path, url: str, folder: Path, hnsw: bool) -> LoadResult:
    """The rows written by write_peer_rows into `folder`, loaded by langchain-postgres in its virtualenv."""
    result = folder / "peer-result.json"
    result.unlink(missing_ok=True)
    subprocess.run([python, PEER_SCRIPT, folder, "--url", url, *(["--hnsw"] if hnsw else [])], check=True)
    return LoadResult(**json.loads(result.read_text()))


def run_on_server(admin_url: str, statement: str) -> None:
    """A statement that cannot run in a transaction (CREATE/DROP DATABASE)."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(statement)
    engine.dispose()


def fresh_database(admin_url: str, name: str) -> str:
    """Create (or recreate) database `name` on the server of `admin_url`; returns its URL."""
    drop_database(admin_url, name)
    run_on_server(admin_url, f"CREATE DATABASE {name}")
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    run_on_server(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def compare_loads(admin_url: str, space: dict, rows: Rows, peer_python: Path) -> list[LoadResult]:
    """Each load into a fresh database: langchain-postgres without an HNSW index, pgkb's bulk
    load (the rows, then its index), langchain-postgres keeping an HNSW index up; pgkb between
    the two, so load from other jobs that comes and goes falls on both sides."""
    results = []
    with tempfile.TemporaryDirectory(prefix="pgkb-bench-rows-") as folder:
        write_peer_rows(rows, Path(folder))
        for contender, hnsw in (("langchain-postgres", False), ("pgkb", False), ("langchain-postgres", True)):
            name = SCRATCH_DATABASES[contender]
            url = fresh_database(admin_url, name)
            print(f"loading {len(rows.texts)} rows with {contender}, "
                  f"{'with' if hnsw else 'without'} an HNSW index during the load ...", flush=True)
            if contender == "pgkb":
                result = load_pgkb(url, space, rows, hnsw)
            else:
                result = load_peer(peer_python, url, Path(folder), hnsw)
            drop_database(admin_url, name)
            print(f"  {result.rows_per_second:,.0f} rows/s ({result.seconds:.1f} s)", flush=True)
            results.append(result)
    return results


def load_summary(results: list[LoadResult]) -> dict:
    pgkb = next(r for r in results if r.contender == "pgkb")
    peer = {r.hnsw: r for r in results if r.contender != "pgkb"}
    with_index_seconds = pgkb.seconds + pgkb.profile[INDEX_BUILT_AT_THE_END]
    variants = []
    for index, pgkb_seconds, peer_result, how in (
        ("no HNSW", pgkb.seconds, peer[False],
         "the rows alone: pgkb's writes before its index is built; langchain-postgres with no vector index"),
        ("HNSW at the end", with_index_seconds, peer[True],
         "rows searchable through an HNSW index at the end: pgkb's bulk load builds it after the rows "
         "(Store.bulk_load, as ingest does into an empty collection), langchain-postgres keeps it up "
         "during the load (the index created first, as its documentation shows)"),
    ):
        pgkb_rows_per_second = pgkb.rows / pgkb_seconds
        variants.append({
            "index": index, "pgkb_seconds": pgkb_seconds, "langchain_seconds": peer_result.seconds, "how": how,
            "pgkb_rows_per_second": pgkb_rows_per_second,
            "langchain_rows_per_second": peer_result.rows_per_second,
            "load_average": f"{pgkb.load_average[0]:.1f}-{pgkb.load_average[1]:.1f} / "
                            f"{peer_result.load_average[0]:.1f}-{peer_result.load_average[1]:.1f}",
            "ratio": pgkb_rows_per_second / peer_result.rows_per_second,
        })
    return {
        "fairness": ("same rows (texts, vectors, metadata), one transaction per 100-row document each, "
                     "each into a fresh database on the same server, one writer each; HNSW m=16, "
                     "langchain-postgres' index with pgvector's default ef_construction 64, pgkb's with its "
                     "own 128 (a better graph that takes twice as long to build). Each keeps its own schema: "
                     "pgkb also computes a tsvector and keeps a GIN index on it, langchain-postgres a GIN "
                     "index on its metadata"),
        "variants": variants,
        "pgkb_profile_s": pgkb.profile,
    }

