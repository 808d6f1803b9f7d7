"""Search latency, HNSW recall and bulk-load speed at 100,000 chunks, against langchain-postgres.

    python -m bench.search_latency                  # 100,000 chunks in /tmp/pgkb-search-bench
    python -m bench.search_latency --quick          # 10,000 chunks, a smoke run

The rows: documents of 100 chunks (1,000 of them at 100,000 chunks), each tagged
{"department": "d00".."d99"}, so a department filter lets 1% of the chunks through. Half the
documents, drawn at random, are English, the other half Chinese. Chunk texts are real prose:
a piece of one to three sentences of a DBpedia abstract (--corpus), or of a CMRC 2018
paragraph of Chinese Wikipedia (--chinese-corpus), followed by a piece of another of the same
language, so that 100,000 texts differ although the corpora are small. Embedding 100,000
texts on a CPU takes too long, so only the abstracts and paragraphs are embedded with the
real model (a few thousand, cached in the data directory), and a chunk's vector is the
normalised mixture of its two sources' vectors, in proportion to their characters, plus a
little noise: clustered like real data, and near the text it stands for.

The queries, half English and half Chinese, taken in turn: the English set's own queries
(queries.jsonl beside --corpus) and the Chinese set's training questions (queries-train.jsonl
beside --chinese-corpus, so its test questions stay unseen), then sentences of the corpora cut
to a query's length.

What it measures, in one run on one PostgreSQL server (the embedded one; or DATABASE_URL's,
where the user may create databases):
1. Bulk load: pgkb's `Store.write_document` (binary COPY, one transaction per document)
   against langchain-postgres `PGVector.add_embeddings` (one call, so one transaction, per
   document), same rows, each into a fresh database, both with an HNSW index present during
   the load and both without (HNSW maintenance dominates insert cost). Without: pgkb loads
   the way `ingest` does into an empty collection (`Store.bulk_load`), which builds the index
   once the rows are in, and that build is timed too: rows then index, against
   langchain-postgres keeping its index up, is the like-for-like "load into a searchable
   index" figure. langchain-postgres is installed in its own virtualenv (--peer-venv, created
   on first use), never in pgkb's, and runs in a subprocess that reads the rows from files.
   pgkb's time is split by statement (COPY, the staged INSERT that adds the tsvector, commits...).
2. Latency of `KnowledgeBase.search(q, k=10)` (hybrid) without and with the 1% filter, after
   a warm-up with five times as many other queries (a serving system's caches are warm),
   split into the query's embedding (timed inside the call) and the rest, for all queries and
   per language. Every timed search embeds its query afresh: the query cache is emptied
   before each, or a query's second search (with the filter) would skip the model.
3. Recall@10 of the vector leg (mode="vector") against an exact scan (exact=True), without
   and with the filter: as `search` runs it (exact=None, and exact=False), its statement as
   planned, and its statement forced onto the HNSW index at the largest ef_search.

The searched collection is built once per data directory and reused while its rows match.
Other people's jobs may share this machine's cores: the load average is reported alongside.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# pgkb itself is imported inside the functions of the pgkb side only: the peer side runs this
# file in the peer's virtualenv, which has numpy and langchain-postgres but not pgkb.

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "eval" / "retrieval" / "dbpedia" / "corpus.jsonl"
DEFAULT_CHINESE_CORPUS = ROOT.parent / "shared" / "eval" / "retrieval" / "cmrc2018" / "corpus.jsonl"
DEFAULT_OUT = ROOT / "bench" / "results" / "search_latency.json"
PEER_REQUIREMENTS = ("langchain-postgres", "psycopg[binary]")
PEER_PACKAGES = ("langchain-postgres", "langchain-core", "psycopg", "SQLAlchemy", "pgvector", "torch")
DEPARTMENTS = 100          # a department filter lets 1 / DEPARTMENTS of the chunks through
CHINESE_SHARE = 0.5        # of the documents, and of the queries
NOISE = 0.01               # standard deviation, per dimension, of the noise in a mixed vector
K = 10
# The warm-up: five times as many queries as are timed, other ones (the caches of a server
# that has been answering for a while).
WARMUP_SEED, WARMUP_FACTOR = 99, 5
FORCED_EF_SEARCH = 1000    # pgvector's largest ef_search
SCRATCH_DATABASES = {"pgkb": "bench_load_pgkb", "langchain-postgres": "bench_load_langchain"}


# -- the rows ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Language:
    name: str
    sentence_end: str     # a regular expression: where one sentence ends and the next begins
    separator: str        # what joins two sentences, or two pieces
    query_length: int     # a query cut from a sentence keeps this many words (Chinese: characters)

    def cut(self, sentence: str) -> str:
        """The start of a sentence, as long as a query."""
        words = sentence.split() if self.separator else list(sentence)
        return self.separator.join(words[:self.query_length])


ENGLISH = Language("English", r"(?<=[.!?])\s+", " ", 12)
CHINESE = Language("Chinese", r"(?<=[。！？])", "", 16)  # Chinese sentences end without a space


@dataclass(frozen=True)
class Abstract:
    """A DBpedia abstract or a CMRC 2018 paragraph: what chunk texts are cut from."""

    title: str
    text: str
    sentences: tuple[str, ...]
    language: Language

    @property
    def embedding_text(self) -> str:
        return "\n\n".join(part for part in (self.title, self.text) if part)


@dataclass(frozen=True)
class Query:
    text: str
    language: str


@dataclass
class Rows:
    """What both contenders load: `per_document` consecutive rows make one document."""

    texts: list[str]
    titles: list[str]          # of the abstract a chunk's text starts in: its section heading (or "")
    vectors: np.ndarray        # float32 [n, dims], L2-normalised
    per_document: int

    @property
    def documents(self) -> int:
        return len(self.texts) // self.per_document

    def document_rows(self, document: int) -> range:
        return range(document * self.per_document, (document + 1) * self.per_document)

    def metadata(self, document: int) -> dict:
        return {"department": f"d{document % DEPARTMENTS:02d}"}


def read_abstracts(path: Path, limit: int | None, language: Language) -> list[Abstract]:
    """The first `limit` entries of a BEIR corpus (all of them: None) that hold a sentence."""
    abstracts = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            entry = json.loads(line)
            sentences = tuple(s.strip() for s in re.split(language.sentence_end, entry["text"].strip()) if s.strip())
            if sentences:
                abstracts.append(Abstract(entry.get("title", ""), entry["text"], sentences, language))
            if len(abstracts) == limit:
                break
    return abstracts


def abstract_vectors(abstracts: list[Abstract], embedder, cache_dir: Path) -> np.ndarray:
    """The abstracts embedded with the real model; cached, so every run mixes the same vectors."""
    digest = hashlib.sha256(embedder.space.model.encode())
    for abstract in abstracts:
        digest.update(abstract.embedding_text.encode())
    cache = cache_dir / f"abstract-vectors-{digest.hexdigest()[:16]}.npy"
    if cache.exists():
        return np.load(cache)
    started = time.perf_counter()
    vectors = embedder.embed_documents([abstract.embedding_text for abstract in abstracts])
    print(f"embedded {len(abstracts)} abstracts in {time.perf_counter() - started:.0f} s", flush=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def sentence_pieces(abstracts: list[Abstract]) -> dict[str, list[tuple[int, str]]]:
    """Every run of one to three consecutive sentences of each abstract, with its abstract's
    index, by language."""
    pieces = defaultdict(list)
    for index, abstract in enumerate(abstracts):
        for size in (1, 2, 3):
            for start in range(len(abstract.sentences) - size + 1):
                text = abstract.language.separator.join(abstract.sentences[start:start + size])
                pieces[abstract.language.name].append((index, text))
    return pieces


def make_rows(abstracts: list[Abstract], vectors: np.ndarray, count: int, per_document: int,
              seed: int = 0) -> Rows:
    """`count` texts, each a piece of one abstract then a piece of another of the same language
    (its document's: CHINESE_SHARE of the documents are Chinese), and their vectors: the two
    abstracts' real vectors mixed by the pieces' shares of characters, plus noise."""
    rng = random.Random(seed)
    pieces = sentence_pieces(abstracts)
    for language_pieces in pieces.values():
        rng.shuffle(language_pieces)
    documents = count // per_document
    chinese = set(rng.sample(range(documents), round(documents * CHINESE_SHARE)))
    used = dict.fromkeys(pieces, 0)  # each language's pieces start a text in turn
    texts, titles = [], []
    mixed = np.empty((count, vectors.shape[1]), dtype=np.float32)
    for row in range(count):
        language = CHINESE if row // per_document in chinese else ENGLISH
        pool = pieces[language.name]
        first, first_text = pool[used[language.name] % len(pool)]
        used[language.name] += 1
        second, second_text = pool[rng.randrange(len(pool))]
        while second == first:
            second, second_text = pool[rng.randrange(len(pool))]
        texts.append(language.separator.join((first_text, second_text)))
        titles.append(abstracts[first].title)
        share = len(first_text) / (len(first_text) + len(second_text))
        mixed[row] = share * vectors[first] + (1 - share) * vectors[second]
    mixed += np.random.default_rng(seed).normal(0, NOISE, mixed.shape).astype(np.float32)
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    return Rows(texts, titles, mixed, per_document)


def asked_questions(queries_file: Path) -> list[str]:
    """The questions of a BEIR queries file, if there is one."""
    if not queries_file.exists():
        return []
    return [json.loads(line)["text"] for line in queries_file.open(encoding="utf-8") if line.strip()]


def make_queries(asked: list[str], abstracts: list[Abstract], count: int, seed: int) -> list[str]:
    """The `asked` questions, then the abstracts' sentences cut to a query's length: `count` in all."""
    rng = random.Random(seed)
    queries = asked[:count]
    while len(queries) < count:
        abstract = rng.choice(abstracts)
        queries.append(abstract.language.cut(rng.choice(abstract.sentences)))
    return queries


def timed_and_warmup_queries(asked: list[str], abstracts: list[Abstract],
                             count: int) -> tuple[list[Query], list[str]]:
    """`count` queries to time and WARMUP_FACTOR times as many others to warm up with, all in
    the abstracts' language: the asked questions in a shuffled order (the timed ones first, none
    of them again in the warm-up), then sentences cut to a query's length."""
    asked = random.Random(1).sample(asked, len(asked))
    language = abstracts[0].language.name
    return ([Query(text, language) for text in make_queries(asked, abstracts, count, seed=1)],
            make_queries(asked[count:], abstracts, WARMUP_FACTOR * count, seed=WARMUP_SEED))


def in_turn(first: list, second: list) -> list:
    """One of each list in turn, then the rest of the longer one."""
    return [item for pair in itertools.zip_longest(first, second) for item in pair if item is not None]


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


def pgkb_records(rows: Rows, document: int):
    """pgkb's DocumentRecord and Chunks for one document."""
    from store import Chunk, DocumentRecord

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


def write_documents(store, collection, rows: Rows, documents: list[int]) -> float:
    """Write `documents` through pgkb's bulk path; returns the seconds the writes took."""
    prepared = [pgkb_records(rows, document) for document in documents]  # not part of the load
    started = time.perf_counter()
    for document, (record, chunks) in zip(documents, prepared):
        store.write_document(collection, record, chunks, rows.vectors[rows.document_rows(document)])
    return time.perf_counter() - started


def statement_kind(query) -> str:
    """Which part of `Store.write_document` a statement is, for the load profile."""
    words = " ".join(str(query).split()[:3]).upper()
    for prefix, kind in (("INSERT INTO DOCUMENTS", "document upsert"), ("DELETE FROM CHUNKS", "old chunks delete"),
                         ("CREATE TEMP TABLE", "staging table"), ("INSERT INTO CHUNKS", "staged INSERT"),
                         (";", "pool pre-ping"), ("CREATE INDEX", "index build")):
        if words.startswith(prefix):
            return kind
    return "other"


def timed_cursor_class(seconds: dict[str, float]):
    """A psycopg cursor adding each statement's (and each COPY's) time to `seconds`, by kind."""
    import psycopg

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


INDEX_BUILT_AT_THE_END = "HNSW index built at the end of the bulk load"


def load_pgkb(url: str, space: dict, rows: Rows, hnsw: bool) -> LoadResult:
    """Load every row into a fresh pgkb schema at `url`, timing each part of the writes."""
    from sqlalchemy import event, text

    from pgkb.settings import Settings
    from store import Store
    from store.fulltext import analyse

    store = Store.open(Settings(database_url=url))
    collection = store.collection("bench-load", space)
    seconds: dict[str, float] = defaultdict(float)
    cursor_class = timed_cursor_class(seconds)
    event.listen(store.engine, "connect",
                 lambda dbapi_connection, _: setattr(dbapi_connection, "cursor_factory", cursor_class))
    store.engine.dispose()  # the next connection gets the timed cursors
    before = os.getloadavg()[0]
    # Without the index: pgkb's bulk load (an empty collection), which builds it at the end.
    with store.bulk_load(collection) if not hnsw else nullcontext() as load:
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


def build_search_collection(settings, space: dict, rows: Rows) -> None:
    """The searched collection: written where an earlier run's documents are missing or differ."""
    from sqlalchemy import select

    from store import Store
    from store.tables import documents

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
    result = folder / "peer-result.json"
    result.unlink(missing_ok=True)
    command = [python, __file__, "--peer-load", folder, "--peer-url", url] + (["--peer-hnsw"] if hnsw else [])
    subprocess.run(command, check=True)
    return LoadResult(**json.loads(result.read_text()))


def peer_main(folder: Path, url: str, hnsw: bool) -> None:
    """The peer side, run in the peer's virtualenv: the rows through `PGVector.add_embeddings`."""
    import sqlalchemy
    from langchain_core.embeddings import Embeddings
    from langchain_postgres import PGVector

    class PrecomputedVectors(Embeddings):
        """add_embeddings is handed the vectors: nothing is ever embedded here."""

        def embed_documents(self, texts):
            raise RuntimeError("the benchmark hands over precomputed vectors")

        def embed_query(self, text):
            raise RuntimeError("the benchmark hands over precomputed vectors")

    vectors = np.load(folder / "vectors.npy")
    lines = [json.loads(line) for line in (folder / "rows.jsonl").open()]
    per_document = json.loads((folder / "layout.json").read_text())["per_document"]
    texts, metadatas = [line["text"] for line in lines], [line["metadata"] for line in lines]
    embeddings = vectors.tolist()  # add_embeddings takes lists of floats

    store = PGVector(PrecomputedVectors(), connection=url, embedding_length=vectors.shape[1],
                     collection_name="bench-load", use_jsonb=True)
    engine = sqlalchemy.create_engine(url)
    if hnsw:  # the index langchain-postgres' documentation suggests, pgvector's default m and ef_construction
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(
                "CREATE INDEX ON langchain_pg_embedding USING hnsw (embedding vector_cosine_ops)"))
    before = os.getloadavg()[0]
    started = time.perf_counter()
    for first in range(0, len(texts), per_document):
        rows = slice(first, first + per_document)
        store.add_embeddings(texts[rows], embeddings[rows], metadatas[rows])
    seconds = time.perf_counter() - started
    after = os.getloadavg()[0]
    with engine.connect() as conn:
        stored = conn.execute(sqlalchemy.text("SELECT count(*) FROM langchain_pg_embedding")).scalar()
    if stored != len(texts):
        raise SystemExit(f"langchain-postgres stored {stored} rows of {len(texts)}")
    result = LoadResult("langchain-postgres", hnsw, len(texts), seconds, (before, after))
    (folder / "peer-result.json").write_text(json.dumps(asdict(result)))


def run_on_server(admin_url: str, statement: str) -> None:
    """A statement that cannot run in a transaction (CREATE/DROP DATABASE)."""
    from sqlalchemy import create_engine

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(statement)
    engine.dispose()


def fresh_database(admin_url: str, name: str) -> str:
    """Create (or recreate) database `name` on the server of `admin_url`; returns its URL."""
    from sqlalchemy.engine import make_url

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


# -- searching -----------------------------------------------------------------------------

def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}


class TimedEmbedder:
    """Stands in for a KnowledgeBase's embedder, timing each embed_queries call."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.last_ms = 0.0

    def embed_queries(self, texts):
        started = time.perf_counter()
        try:
            return self.embedder.embed_queries(texts)
        finally:
            self.last_ms = (time.perf_counter() - started) * 1000

    def __getattr__(self, name):
        return getattr(self.embedder, name)


def measure_latency(kb, queries: list[Query], filters: list[dict], warmup: list[str]) -> dict:
    """Milliseconds of `kb.search(q, k=10)` per query, without and with its department filter,
    and of the query's embedding inside it (the rest is SQL and the Python around it), after
    the `warmup` queries (other ones) have brought the server's caches to a steady state;
    for all queries, and per language. Each search embeds its query (see the module's docstring)."""
    import torch

    for query, where in zip(warmup, itertools.cycle(filters)):
        kb.search(query, k=K)
        kb.search(query, k=K, filters=where)
    timed = TimedEmbedder(kb.embedder)
    kb.embedder = timed
    total_ms: dict[str, list[float]] = {"no filter": [], "1% filter": []}
    embedding_ms: dict[str, list[float]] = {"no filter": [], "1% filter": []}
    complete_and_matching = 0
    before = os.getloadavg()
    try:
        for query, where in zip(queries, filters):
            for name, condition in (("no filter", None), ("1% filter", where)):
                kb.embedder.query_cache.clear()
                started = time.perf_counter()
                hits = kb.search(query.text, k=K, filters=condition)
                total_ms[name].append((time.perf_counter() - started) * 1000)
                embedding_ms[name].append(timed.last_ms)
                if condition:
                    department = condition["metadata.department"]
                    complete_and_matching += len(hits) == K and all(
                        h.metadata["department"] == department for h in hits)
    finally:
        kb.embedder = timed.embedder
    result = {"queries": len(queries), "torch_threads": torch.get_num_threads(),
              "load_average_before": before, "load_average_after": os.getloadavg(),
              "filtered_searches_with_k_matching_hits": complete_and_matching}
    languages = dict.fromkeys(query.language for query in queries)
    for name, values in total_ms.items():
        result[name] = {
            "end_to_end_ms": percentiles(values),
            "embedding_ms": percentiles(embedding_ms[name]),
            "without_embedding_ms": percentiles([t - e for t, e in zip(values, embedding_ms[name])]),
            "end_to_end_ms_by_language": {
                language: percentiles([v for v, query in zip(values, queries) if query.language == language])
                for language in languages},
        }
    return result


@contextmanager
def counted_searches(kb):
    """Counts the calls to kb.search, the exact retries it makes on itself included."""
    calls: list[dict] = []
    search = kb.search

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return search(*args, **kwargs)

    kb.search = counting
    try:
        yield calls
    finally:
        del kb.search


def vector_leg(kb, query: str, where: dict | None, ef_search: int, force_index: bool) -> tuple[set[int], bool]:
    """The search statement's vector leg run directly (no exact retry) at `ef_search`, with
    sorting disabled when `force_index`, so that only the HNSW index can order the rows.
    Returns the ids found and whether the plan used the collection's HNSW index."""
    from sqlalchemy import text

    from retrieval.filters import compile_filters
    from retrieval.hybrid import Explain, LegWeights, search_statement
    from store.database import hnsw_index_name

    statement = search_statement(
        kb.collection, query_vector=kb.embedder.embed_queries([query])[0].tolist(), keyword_query=None,
        conditions=compile_filters(where).conditions, k=K, candidates=max(100, K), weights=LegWeights(),
    )
    with kb.store.engine.begin() as conn:
        conn.execute(text(f"SET LOCAL hnsw.ef_search = {int(ef_search)}"))
        if force_index:
            conn.execute(text("SET LOCAL enable_sort = off"))
        plan = conn.execute(Explain(statement)).scalar()
        ids = {row.id for row in conn.execute(statement)}
    return ids, hnsw_index_name(kb.collection.id) in (plan if isinstance(plan, str) else json.dumps(plan))


def measure_recall(kb, queries: list[Query], filters: list[dict]) -> dict:
    """Recall@10 of the vector leg against an exact scan: as `search` runs it (exact=None, the
    default, and exact=False), the statement as planned at search's ef_search, and the
    statement forced onto the HNSW index at the largest ef_search."""
    def recall(found: list[set[int]], truth: list[set[int]]) -> float:
        return float(np.mean([len(f & t) / len(t) for f, t in zip(found, truth)]))

    result = {}
    for name, wheres in (("no filter", [None] * len(queries)), ("1% filter", filters)):
        truth = [{h.chunk_id for h in kb.search(q.text, k=K, filters=w, mode="vector", exact=True)}
                 for q, w in zip(queries, wheres)]
        figures = {}
        for exact in (None, False):
            with counted_searches(kb) as calls:
                found = [{h.chunk_id for h in kb.search(q.text, k=K, filters=w, mode="vector", exact=exact)}
                         for q, w in zip(queries, wheres)]
            figures[f"search, exact={exact}"] = {"recall": recall(found, truth),
                                                 "exact_retries": len(calls) - len(queries)}
        for label, ef_search, force in (("statement as planned, ef_search=100", 100, False),
                                        (f"forced onto HNSW, ef_search={FORCED_EF_SEARCH}", FORCED_EF_SEARCH, True)):
            legs = [vector_leg(kb, q.text, w, ef_search, force) for q, w in zip(queries, wheres)]
            found = [ids for ids, _ in legs]
            figures[label] = {"recall": recall(found, truth), "mean_hits": float(np.mean([len(f) for f in found])),
                              "plans_on_hnsw": sum(on_index for _, on_index in legs)}
        result[name] = figures
    return result


# -- the report ----------------------------------------------------------------------------

def server_facts(store) -> dict:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return {
            "postgresql": conn.execute(text("SHOW server_version")).scalar(),
            "pgvector": ".".join(map(str, store.pgvector_version)),
            "shared_buffers": conn.execute(text("SHOW shared_buffers")).scalar(),
        }


def print_report(report: dict) -> None:
    machine, server, rows = report["machine"], report["server"], report["rows"]
    print()
    print(f"machine: {machine['processor']}, {machine['cpus']} CPUs; server: PostgreSQL {server['postgresql']}, "
          f"pgvector {server['pgvector']}, shared_buffers {server['shared_buffers']}")
    print(f"rows: {rows['chunks']:,} chunks ({rows['documents']} documents x {rows['per_document']}), "
          f"{rows['dims']} dims; {rows['vectors']}")
    loads = report.get("load")
    if loads:
        print(f"\nbulk load, {loads['fairness']}")
        print(f"{'index':22} {'pgkb rows/s':>12} {'langchain rows/s':>17} {'ratio':>7}   load average")
        for variant in loads["variants"]:
            print(f"{variant['index']:22} {variant['pgkb_rows_per_second']:12,.0f} "
                  f"{variant['langchain_rows_per_second']:17,.0f} {variant['ratio']:6.1f}x   "
                  f"{variant['load_average']}   ({variant['how']})")
        print("target: pgkb >= 10x langchain-postgres add_embeddings")
        parts = ", ".join(f"{part} {seconds:.1f} s" for part, seconds in loads["pgkb_profile_s"].items())
        print(f"pgkb's seconds: {parts}")
    print(f"\nhybrid search, k={K}, {report['queries']} queries after {WARMUP_FACTOR} times as many other ones "
          f"(target: p50 <= 20 ms, p95 <= 50 ms); milliseconds, end to end, then split into the query's "
          f"embedding and the rest (SQL and the Python around it)")
    print(f"{'search':16} {'filter':10} {'p50':>7} {'p95':>7}   {'embed p50':>9} {'p95':>7}   "
          f"{'rest p50':>8} {'p95':>7}   load average")
    for setting, latency in report["latency"].items():
        for name in ("no filter", "1% filter"):
            total, embedding, rest = (latency[name][part] for part in
                                      ("end_to_end_ms", "embedding_ms", "without_embedding_ms"))
            print(f"{setting:16} {name:10} {total['p50']:7.1f} {total['p95']:7.1f}   {embedding['p50']:9.1f} "
                  f"{embedding['p95']:7.1f}   {rest['p50']:8.1f} {rest['p95']:7.1f}   "
                  f"{latency['load_average_before'][0]:.1f} -> {latency['load_average_after'][0]:.1f}")
    for setting, latency in report["latency"].items():
        for name in ("no filter", "1% filter"):
            by_language = ", ".join(f"{language} {values['p50']:.1f} / {values['p95']:.1f}" for language, values
                                    in latency[name]["end_to_end_ms_by_language"].items())
            print(f"{setting}, {name}, p50 / p95 by the query's language: {by_language}")
    for setting, latency in report["latency"].items():
        print(f"filtered searches returning {K} hits, all in the department ({setting}): "
              f"{latency['filtered_searches_with_k_matching_hits']}/{latency['queries']}")
    print(f"\nrecall@{K} of the vector leg against an exact scan ({report['queries']} queries; target >= 0.98)")
    for name, figures in report["recall"].items():
        for variant, values in figures.items():
            notes = []
            if "exact_retries" in values:
                notes.append(f"{values['exact_retries']} exact retries")
            if "mean_hits" in values:
                notes.append(f"{values['mean_hits']:.1f} hits on average, "
                             f"{values['plans_on_hnsw']}/{report['queries']} plans on the HNSW index")
            print(f"{name:12} {variant:38} {values['recall']:.3f}   {'; '.join(notes)}")


def load_summary(results: list[LoadResult]) -> dict:
    pgkb = next(r for r in results if r.contender == "pgkb")
    peer = {r.hnsw: r for r in results if r.contender != "pgkb"}
    with_index_seconds = pgkb.seconds + pgkb.profile[INDEX_BUILT_AT_THE_END]
    variants = [
        {"index": "no HNSW", "pgkb_seconds": pgkb.seconds, "langchain_seconds": peer[False].seconds,
         "how": "the rows alone: pgkb's writes before its index is built; langchain-postgres with no vector index"},
        {"index": "HNSW at the end", "pgkb_seconds": with_index_seconds, "langchain_seconds": peer[True].seconds,
         "how": "rows searchable through an HNSW index at the end: pgkb's bulk load builds it after the rows "
                "(Store.bulk_load, as ingest does into an empty collection), langchain-postgres keeps it up "
                "during the load (the index created first, as its documentation shows)"},
    ]
    for variant, peer_result in zip(variants, (peer[False], peer[True])):
        variant.update({
            "pgkb_rows_per_second": pgkb.rows / variant["pgkb_seconds"],
            "langchain_rows_per_second": peer_result.rows_per_second,
            "load_average": f"{pgkb.load_average[0]:.1f}-{pgkb.load_average[1]:.1f} / "
                            f"{peer_result.load_average[0]:.1f}-{peer_result.load_average[1]:.1f}",
        })
        variant["ratio"] = variant["pgkb_rows_per_second"] / variant["langchain_rows_per_second"]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="10,000 chunks, 1,000 abstracts, 250 Chinese paragraphs, 100 queries")
    parser.add_argument("--chunks", type=int, help="chunks to load and search (default 100,000)")
    parser.add_argument("--per-document", type=int, default=100, help="chunks per document")
    parser.add_argument("--abstracts", type=int, help="English abstracts embedded with the model (default 5,000)")
    parser.add_argument("--chinese-paragraphs", type=int,
                        help="Chinese paragraphs embedded with the model (default: all of --chinese-corpus)")
    parser.add_argument("--queries", type=int, help="queries timed, half of them Chinese (default 200)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="a BEIR corpus.jsonl of English texts")
    parser.add_argument("--chinese-corpus", type=Path, default=DEFAULT_CHINESE_CORPUS,
                        help="a BEIR corpus.jsonl of Chinese texts")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/pgkb-search-bench"),
                        help="the embedded server's data folder, kept for later runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the figures go, as JSON")
    parser.add_argument("--peer-venv", type=Path, default=Path("/tmp/pgkb-bench-peers"),
                        help="virtualenv for langchain-postgres (created when missing)")
    parser.add_argument("--no-load-comparison", action="store_true", help="measure search only")
    # The peer side, run by this script in the peer's virtualenv.
    parser.add_argument("--peer-load", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--peer-url", help=argparse.SUPPRESS)
    parser.add_argument("--peer-hnsw", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_load:
        peer_main(args.peer_load, args.peer_url, args.peer_hnsw)
        return 0
    for corpus, option in ((args.corpus, "--corpus"), (args.chinese_corpus, "--chinese-corpus")):
        if not corpus.is_file():
            print(f"no corpus at {corpus}: give a BEIR corpus.jsonl with {option}", file=sys.stderr)
            return 2
    chunks = args.chunks or (10_000 if args.quick else 100_000)
    abstract_count = args.abstracts or (1_000 if args.quick else 5_000)
    paragraph_count = args.chinese_paragraphs or (250 if args.quick else None)
    query_count = args.queries or (100 if args.quick else 200)

    sys.path.insert(0, str(ROOT))
    from embedding import load_embedder
    from pgkb.settings import Settings
    from retrieval import KnowledgeBase
    from store import Store
    from store.database import resolve_url

    settings = Settings.from_env(data_dir=args.data_dir, collection=f"bench-{chunks}")
    embedder = load_embedder(settings.model, device=settings.device, batch_tokens=settings.batch_tokens)
    english = read_abstracts(args.corpus, abstract_count, ENGLISH)
    chinese = read_abstracts(args.chinese_corpus, paragraph_count, CHINESE)
    abstracts = english + chinese
    rows = make_rows(abstracts, abstract_vectors(abstracts, embedder, args.data_dir), chunks, args.per_document)
    chinese_queries = round(query_count * CHINESE_SHARE)
    english_timed, english_warmup = timed_and_warmup_queries(
        asked_questions(args.corpus.parent / "queries.jsonl"), english, query_count - chinese_queries)
    chinese_timed, chinese_warmup = timed_and_warmup_queries(
        asked_questions(args.chinese_corpus.parent / "queries-train.jsonl"), chinese, chinese_queries)
    queries, warmup = in_turn(english_timed, chinese_timed), in_turn(english_warmup, chinese_warmup)
    departments, present = random.Random(2), min(DEPARTMENTS, rows.documents)
    filters = [{"metadata.department": f"d{departments.randrange(present):02d}"} for _ in queries]  # one each
    space = embedder.space.to_dict()
    build_search_collection(settings, space, rows)

    store = Store.open(settings)  # holds the embedded server up for the peer's connections
    report = {
        "command": " ".join(["python -m bench.search_latency", *sys.argv[1:]]),
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_average_at_start": os.getloadavg()},
        "server": server_facts(store),
        "rows": {"chunks": chunks, "documents": rows.documents, "per_document": rows.per_document,
                 "dims": int(rows.vectors.shape[1]), "model": embedder.space.model,
                 "filter_share": 1 / present,
                 "texts": (f"pieces of {len(english)} abstracts of {args.corpus} and of {len(chinese)} paragraphs "
                           f"of {args.chinese_corpus}; {CHINESE_SHARE:.0%} of the documents Chinese"),
                 "vectors": (f"{len(abstracts)} abstracts and paragraphs embedded with the model; each chunk's "
                             f"vector a normalised mixture of its two sources' vectors plus noise (sd {NOISE})")},
    }
    if not args.no_load_comparison:
        versions = ensure_peer_env(args.peer_venv)
        results = compare_loads(resolve_url(settings), space, rows, args.peer_venv / "bin" / "python")
        report["load"] = {**load_summary(results), "peer_versions": versions}
    report["queries"] = len(queries)
    report["queries_by_language"] = {"English": len(english_timed), "Chinese": len(chinese_timed)}
    with KnowledgeBase(settings) as kb:
        # As pgkb runs: the process keeps torch's threads, queries are embedded on one.
        report["latency"] = {"pgkb (default)": measure_latency(kb, queries, filters, warmup)}
        report["recall"] = measure_recall(kb, queries, filters)
    store.close()

    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfigures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
