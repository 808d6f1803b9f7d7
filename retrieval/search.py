"""Search a collection: hybrid (vector + full text, fused in one SQL statement), vector or
keyword; narrowed by filters; every hit citing its file, pages and section.

    query.py        the query language ("phrases", -exclusions, Chinese words)
    filters.py      the filter language, compiled to SQL conditions
    statement.py    the one SQL statement a search runs, and the connection's settings for it
    explanation.py  that statement shown (KnowledgeBase.explain, `search --explain`)
"""

from __future__ import annotations

import atexit
import dataclasses
import re
import threading
import unicodedata
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, Select
from sqlalchemy.engine import Connection

from embedding import Embedder, EmbeddingSpace, Reranker, load_embedder_for_space, load_reranker
from pgkb.errors import QueryError
from pgkb.settings import Settings
from store import Feedback, Store, Verdict, citation, pages_label
from store.fulltext import unstorable

from .explanation import Explanation, driver_statement
from .feedback import QueryMasker, check_feedback
from .filters import compile_filters
from .query import KeywordQuery, parse_query
from .statement import (
    BM25,
    DEFAULT_FUSION,
    FUSIONS,
    FilterShare,
    Fusion,
    LegWeights,
    StatementCache,
    scan_settings,
    search_parameters,
    search_statement,
    set_for_session,
    statement_shape,
)

Mode = Literal["vector", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = get_args(Mode)
DEFAULT_MODE: Mode = "hybrid"
GroupBy = Literal["document"]  # or None: every chunk on its own
GROUP_BYS: tuple[GroupBy, ...] = get_args(GroupBy)

# The longest query searched, in characters: a few pages of text, more than an embedding
# model reads (all-MiniLM-L6-v2 reads 256 tokens). Segmenting Chinese costs about 0.1 ms a
# character (jieba), and one caller's megabyte must not hold up a service (it took minutes).
MAX_QUERY_CHARACTERS = 10_000
# The hits a search returns unless asked for another number, in Python and on the command line.
DEFAULT_K = 10
# The most hits a search returns (as Elasticsearch's index.max_result_window).
MAX_K = 10_000
# Each leg ranks this many candidates for fusion (more when hits are grouped by document).
CANDIDATES = 100
# The keyword leg scans for the query's rarer words while the chunks holding them add up to
# at most this many (each is fetched and scored by BM25, about 10 microseconds a chunk); see
# statement._query_lexemes. A keyword search ranks by BM25 alone, so it looks further; in a
# hybrid search the vector leg also brings candidates. At 100,000 chunks a hybrid search's
# SQL took 19.0 / 16.3 / 13.2 ms (p50, English) at 1,000 / 500 / 300; on the dev sets
# nDCG@10 was the same at 300 as at 2,000 (bench/retrieval_quality.py).
KEYWORD_SCAN_BUDGET = 2000
HYBRID_SCAN_BUDGET = 500


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    text: str
    score: float                  # fused score in hybrid mode; else the leg's own score
    document_key: str             # the file, relative to the ingested folder
    path: str
    page_start: int | None
    page_end: int | None
    section_path: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    vector_rank: int | None = None      # rank among the candidates by similarity (1 is nearest)
    vector_score: float | None = None   # cosine similarity
    keyword_rank: int | None = None     # rank among the candidates holding a query word, by BM25
    keyword_score: float | None = None  # BM25; None if no query word matched
    snippet: str | None = None          # the matching passages, terms in <b>...</b>
    rerank_score: float | None = None   # the reranker's relevance (search(rerank=N)); None when not reranked

    @property
    def pages(self) -> str:
        return pages_label(self.page_start, self.page_end)

    @property
    def citation(self) -> str:
        """'policy.pdf, pp. 2-3, Travel > Per diem'."""
        return citation(self.document_key, self.page_start, self.page_end, self.section_path)


@dataclass(frozen=True)
class _Prepared:
    """A search ready to run: its statement, parameters and what the vector leg's scan needs."""

    statement: Select
    parameters: dict[str, Any]
    conditions: list[ColumnElement]
    filter_key: Hashable | None  # the filters' (Filters.key), for remembering their share of the collection
    candidates: int
    has_vector_leg: bool
    keyword_query: KeywordQuery | None


class KnowledgeBase:
    """A connection and the collection's model, for many queries against one collection. Safe
    to share between threads. The model loads at the first search that embeds its query: a
    keyword search, or a command that only reads the store, never spends the seconds it takes."""

    keyword_scan_budget = KEYWORD_SCAN_BUDGET
    hybrid_scan_budget = HYBRID_SCAN_BUDGET

    def __init__(self, settings: Settings | None = None, *, collection: str | None = None):
        self.settings = settings or Settings.from_env()
        self.store = Store.open(self.settings)
        self.collection = self.store.collection(collection or self.settings.collection)
        self._embedder: Embedder | None = None
        self._embedder_lock = threading.Lock()
        self._reranker: Reranker | None = None
        self._reranker_lock = threading.Lock()
        self.bm25 = BM25(self.settings.bm25_k1, self.settings.bm25_b)
        self._statements = StatementCache()
        self._filter_share = FilterShare(self.collection)
        self._query_masker = QueryMasker(self.settings, self.collection.name)

    @property
    def embedder(self) -> Embedder:
        """The collection's model, loaded on first use: queries are embedded into the
        collection's own space (its model, dims and instruction)."""
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = load_embedder_for_space(EmbeddingSpace.from_dict(self.collection.space),
                                                         **self.settings.embedder_options())
            return self._embedder

    @embedder.setter
    def embedder(self, embedder: Embedder) -> None:
        self._embedder = embedder

    @property
    def reranker(self) -> Reranker:
        """The settings' reranking model (PGKB_RERANK_MODEL or PGKB_RERANK_URL), loaded by the
        first search that reranks."""
        with self._reranker_lock:
            if self._reranker is None:
                self._reranker = load_reranker(**self.settings.reranker_options())
            return self._reranker

    @reranker.setter
    def reranker(self, reranker: Reranker) -> None:
        self._reranker = reranker

    def search(self, query: str, k: int = DEFAULT_K,
               filters: dict[str, Any] | ColumnElement | None = None, *,
               mode: Mode = DEFAULT_MODE, fusion: Fusion = DEFAULT_FUSION, weights: LegWeights | None = None,
               exact: bool | None = None, group_by: GroupBy | None = None,
               principals: Sequence[str] | None = None, rerank: int | None = None) -> list[Hit]:
        """The k best chunks for `query`.

        mode: "hybrid" fuses both legs; "vector" or "keyword" runs one.
        fusion: "score" (each leg's z-scores weighted by its confidence; see statement.py) or
            "rrf" (reciprocal rank, k=60).
        weights: per leg; by default the vector leg counts as much as the model knows the
            query's tokens (an English model on Chinese text counts for little), the keyword leg 1.
        exact: True for an exact vector scan, False for the HNSW index; None decides from the filter.
        group_by: "document" returns the best chunk of each of the k best documents.
        principals: the caller's groups: only chunks of documents they may read are searched
            (store.access), inside both legs, so k readable hits come back when k match;
            None searches every document.
        rerank: the reranker (`reranker`) rescores the best `rerank` hits (at least k), and the
            k it scores highest come back, best first, each with its `rerank_score`.
        """
        _check_rerank(rerank, k)
        search = self._prepare(query, rerank or k, filters, mode, fusion, weights, group_by, principals)
        with self._connection() as conn:
            rows, exact = self._run(conn, search, exact)
            if (search.has_vector_leg and search.conditions and not exact
                    and (not rows or rows[0].vector_found < search.candidates)):
                # The index ran dry inside the filter (the planner's estimate was off): scan exactly.
                rows, _ = self._run(conn, search, True)
        words = search.keyword_query.highlighted_words if search.keyword_query else []
        hits = [_hit(row, mode, words) for row in rows]
        return reranked(self.reranker, query, hits, k) if rerank else hits

    def explain(self, query: str, k: int = DEFAULT_K,
                filters: dict[str, Any] | ColumnElement | None = None, *,
                mode: Mode = DEFAULT_MODE, fusion: Fusion = DEFAULT_FUSION, weights: LegWeights | None = None,
                exact: bool | None = None, group_by: GroupBy | None = None,
                principals: Sequence[str] | None = None, plan: bool = False, analyze: bool = False) -> Explanation:
        """The statement search() runs for these arguments, with its parameters and the
        connection's settings; plan=True adds PostgreSQL's plan (EXPLAIN), analyze=True runs
        the statement for the plan's actual rows and times (EXPLAIN ANALYZE, BUFFERS)."""
        search = self._prepare(query, k, filters, mode, fusion, weights, group_by, principals)
        with self._connection() as conn:
            settings, _ = self._scan_settings(conn, search, exact)
            sql, parameters = driver_statement(search.statement, search.parameters, conn.dialect)
            shown_plan = None
            if plan or analyze:
                set_for_session(conn, settings)
                options = "ANALYZE, BUFFERS, " if analyze else ""
                rows = conn.exec_driver_sql(f"EXPLAIN ({options}FORMAT TEXT) {sql}", parameters).scalars()
                shown_plan = "\n".join(rows)
        return Explanation(sql, parameters, settings, shown_plan)

    def feedback(self, query: str, chunk_id: int, verdict: Verdict, rank: int | None = None,
                 given_by: str | None = None, *, principals: Sequence[str] | None = None) -> Feedback:
        """Record a verdict on chunk `chunk_id` (a hit's) for `query`: "good" or "bad" (a hit
        that answers it or not, `rank` its place in the hits), or "right" (the chunk that
        answers it). `given_by` says who gave it (a label, never a secret). The query is
        stored masked (retrieval.feedback); the chunk's text is not copied.
        principals: the caller's groups; a chunk they may not read is refused as one that
        does not exist (store.UnknownChunk)."""
        check_query(query)
        check_feedback(chunk_id, verdict, rank, given_by)
        return self.store.record_feedback(self.collection.name, self._query_masker.mask(query), chunk_id, verdict,
                                          rank, given_by, principals)

    def default_weights(self, query: str, fusion: Fusion) -> LegWeights:
        """The vector leg weighs what share of the query the model can read; see search()."""
        return LegWeights(vector=self.embedder.known_share(query), keyword=1.0)

    def _prepare(self, query: str, k: int, filters: dict[str, Any] | ColumnElement | None, mode: Mode,
                 fusion: Fusion, weights: LegWeights | None, group_by: GroupBy | None,
                 principals: Sequence[str] | None) -> _Prepared:
        """Check the arguments and make the statement and its parameters."""
        check_query(query)
        _check_count("k", k)
        _check_choice("mode", mode, MODES)
        _check_choice("fusion", fusion, FUSIONS)
        _check_choice("group_by", group_by, (*GROUP_BYS, None))
        compiled = compile_filters(filters)
        if principals is not None:
            compiled = compiled.readable_by(principals, self.collection.id)
        parsed = parse_query(query)  # in every mode: a query one mode refuses, every mode refuses
        keyword_query = parsed if mode != "vector" else None
        query_vector = self.embedder.embed_queries([query])[0].tolist() if mode != "keyword" else None
        candidates = max(CANDIDATES, k) * (5 if group_by else 1)
        # A weight counts only beside the other leg's, so a one-leg search takes 1 (and a
        # keyword search loads no model).
        weights = weights or (self.default_weights(query, fusion) if mode == "hybrid" else LegWeights())
        scan_budget = self.keyword_scan_budget if mode == "keyword" else self.hybrid_scan_budget
        shape: dict[str, Any] = dict(k=k, candidates=candidates, fusion=fusion,
                                     group_by_document=group_by == "document", keyword_scan_budget=scan_budget)
        parameters = {**search_parameters(query_vector=query_vector, keyword_query=keyword_query,
                                          weights=weights, keyword_scan_budget=scan_budget, bm25=self.bm25),
                      **compiled.values}
        # One statement per shape (filters' included) serves every query, each with its own
        # parameters; a filter holding values of its own (an SQLAlchemy expression) has none.
        key = None if compiled.shape is None else statement_shape(
            self.collection, has_vector=query_vector is not None, keyword_query=keyword_query,
            filters=compiled.shape, **shape)
        statement = self._statements.get(key, lambda: search_statement(
            self.collection, query_vector=query_vector, keyword_query=keyword_query,
            conditions=compiled.conditions, weights=weights, **shape))
        return _Prepared(statement, parameters, compiled.conditions, compiled.key, candidates,
                         query_vector is not None, keyword_query)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A search only reads, so it runs outside a transaction, usually in one round trip:
        the scan settings are the connection's, changed only when a search needs others. It runs
        on a replica where one is up to date with the collection (store.replicas)."""
        engine = self.store.replicas.engine_for(self.collection.id)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn

    def _run(self, conn: Connection, search: _Prepared, exact: bool | None) -> tuple[list, bool]:
        """The statement's rows, and whether the vector scan was exact."""
        if search.has_vector_leg:
            settings, exact = self._scan_settings(conn, search, exact)
            set_for_session(conn, settings)
        return list(conn.execute(search.statement, search.parameters).all()), bool(exact)

    def _scan_settings(self, conn: Connection, search: _Prepared, exact: bool | None) -> tuple[dict[str, str], bool]:
        if not search.has_vector_leg:
            return {}, False
        return scan_settings(self.store, self.collection, search.conditions, search.candidates, exact,
                             lambda: self._filter_share(conn, search.conditions, search.filter_key))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_count(name: str, count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_K:
        raise QueryError(f"{name} must be a whole number from 1 to {MAX_K:,}, not {count!r}")


def _check_rerank(rerank: int | None, k: int) -> None:
    if rerank is None:
        return
    _check_count("k", k)
    _check_count("rerank", rerank)
    if rerank < k:
        raise QueryError(f"rerank={rerank} rescores fewer candidates than the k={k} hits asked for: "
                         "give rerank >= k")


def reranked(reranker: Reranker, query: str, hits: list[Hit], k: int) -> list[Hit]:
    """The k of `hits` the reranker scores highest, best first; equal scores keep their order."""
    scores = reranker.score(query, [rerank_text(hit) for hit in hits])
    order = sorted(range(len(hits)), key=lambda i: -scores[i])
    return [dataclasses.replace(hits[i], rerank_score=float(scores[i])) for i in order[:k]]


def rerank_text(hit: Hit) -> str:
    """What the reranker reads of a hit: its section path, as the embedder read it, then its text."""
    if not hit.section_path:
        return hit.text
    return " > ".join(hit.section_path) + "\n" + hit.text


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise QueryError(f"{name} must be one of {', '.join(map(repr, choices))}, not {value!r}")


def check_query(query: str) -> None:
    """Refuse a query that is not text PostgreSQL takes, is empty, or is too long to search."""
    if not isinstance(query, str):
        raise QueryError(f"the query must be a string, not {type(query).__name__}")
    if not query.strip():  # a vector search would still rank every chunk: arbitrary hits
        raise QueryError("the query is empty: give the words to search for")
    problem = unstorable(query)
    if problem:
        raise QueryError(f"the query holds {problem}")
    # Measured as searched: compatibility characters (ligatures, ㌀) spell out to several.
    length = len(query) if len(query) > MAX_QUERY_CHARACTERS else len(unicodedata.normalize("NFKC", query))
    if length > MAX_QUERY_CHARACTERS:
        raise QueryError(f"the query is too long: {length:,} characters, at most {MAX_QUERY_CHARACTERS:,}")


def _hit(row, mode: str, cjk_words: list[str]) -> Hit:
    score = {"hybrid": row.score, "vector": row.vector_score, "keyword": row.keyword_score}[mode]
    return Hit(
        chunk_id=row.id, text=row.text, score=float(score), document_key=row.key, path=row.path,
        page_start=row.page_start, page_end=row.page_end, section_path=tuple(row.section_path),
        metadata=row.metadata, vector_rank=row.vector_rank,
        vector_score=None if row.vector_score is None else float(row.vector_score),
        keyword_rank=row.keyword_rank,
        keyword_score=None if row.keyword_score is None else float(row.keyword_score),
        snippet=_highlight(row.snippet, row.text, cjk_words) if row.keyword_rank else row.snippet,
    )


def _highlight(snippet: str | None, chunk_text: str, cjk_words: list[str]) -> str | None:
    """ts_headline marks English terms; Chinese ones (not words to PostgreSQL's parser) are
    marked here, in a window of the chunk around the first match."""
    if not cjk_words or (snippet and "<b>" in snippet):
        return snippet
    pattern = re.compile("|".join(re.escape(w) for w in sorted(set(cjk_words), key=len, reverse=True)))
    first = pattern.search(chunk_text)
    if first is None:
        return snippet
    start = max(first.start() - 40, 0)
    window = chunk_text[start:first.end() + 80]
    return ("…" if start else "") + pattern.sub(lambda m: f"<b>{m.group(0)}</b>", window)


class KnowledgeBases:
    """Open knowledge bases, one per settings and collection, opened by their first search and
    closed together (close(), or leaving a `with` block). Safe to share between threads: a
    thread searching a knowledge base that another is opening waits for it, while searches of
    the others go on."""

    def __init__(self) -> None:
        self._open: dict[tuple[Settings, str], KnowledgeBase] = {}
        self._opening: dict[tuple[Settings, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, settings: Settings, collection: str | None = None) -> KnowledgeBase:
        """The knowledge base of this collection (by default the settings' own)."""
        key = (settings, collection or settings.collection)
        kb = self._open.get(key)
        if kb is None:
            with self._lock:
                opening = self._opening.setdefault(key, threading.Lock())
            with opening:
                kb = self._open.get(key)
                if kb is None:
                    kb = KnowledgeBase(settings, collection=key[1])
                    with self._lock:
                        self._open[key] = kb
        return kb

    def close(self) -> None:
        """Close every knowledge base opened; a later get() opens anew."""
        with self._lock:
            opened, self._open, self._opening = list(self._open.values()), {}, {}
        for kb in opened:
            kb.close()

    def __enter__(self) -> KnowledgeBases:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# The knowledge bases search() opens, closed when the interpreter exits (or by its close()).
knowledge_bases = KnowledgeBases()
atexit.register(knowledge_bases.close)


def search(query: str, k: int = DEFAULT_K, filters: dict[str, Any] | ColumnElement | None = None, *,
           mode: Mode = DEFAULT_MODE, fusion: Fusion = DEFAULT_FUSION, collection: str | None = None,
           weights: LegWeights | None = None,
           exact: bool | None = None, group_by: GroupBy | None = None,
           principals: Sequence[str] | None = None, rerank: int | None = None,
           settings: Settings | None = None) -> list[Hit]:
    """Search with the configured settings; the connection and models stay loaded for the next
    call (in `knowledge_bases`)."""
    kb = knowledge_bases.get(settings or Settings.from_env(), collection)
    return kb.search(query, k=k, filters=filters, mode=mode, fusion=fusion, weights=weights, exact=exact,
                     group_by=group_by, principals=principals, rerank=rerank)
