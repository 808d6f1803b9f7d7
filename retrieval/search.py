"""Search a collection: hybrid (vector + full text, fused in one SQL statement), vector or
keyword; narrowed by filters; every hit citing its file, pages and section."""

from __future__ import annotations

import json
import re
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, text
from sqlalchemy.engine import Connection

from embedding import EmbeddingSpace, load_embedder_for_space
from pgkb.settings import Settings
from store import Store
from store.fulltext import QueryError, parse_query, unstorable

from .filters import compile_filters
from .hybrid import (
    BM25,
    Explain,
    LegWeights,
    estimate_statement,
    search_parameters,
    search_statement,
    statement_shape,
)

Mode = Literal["hybrid", "vector", "keyword"]
MODES = ("hybrid", "vector", "keyword")

# The longest query searched, in characters: a few pages of text, more than an embedding
# model reads (all-MiniLM-L6-v2 reads 256 tokens). Segmenting Chinese costs about 0.1 ms a
# character (jieba), and one caller's megabyte must not hold up a service (it took minutes).
MAX_QUERY_CHARACTERS = 10_000
# The most hits a search returns (as Elasticsearch's index.max_result_window).
MAX_K = 10_000
# Each leg ranks this many candidates for fusion (more when hits are grouped by document).
CANDIDATES = 100
# The keyword leg scans for the query's rarer words while the chunks holding them add up to
# at most this many (each is fetched and scored by BM25, about 10 microseconds a chunk); see
# hybrid._query_lexemes. A keyword search ranks by BM25 alone, so it looks further; in a
# hybrid search the vector leg also brings candidates. At 100,000 chunks a hybrid search's
# SQL took 19.0 / 16.3 / 13.2 ms (p50, English) at 1,000 / 500 / 300; on the dev sets
# nDCG@10 was the same at 300 as at 2,000 (bench/retrieval_quality.py).
KEYWORD_SCAN_BUDGET = 2000
HYBRID_SCAN_BUDGET = 500
# Search statements kept for reuse, by shape (see search()).
MAX_STATEMENTS = 256
# pgvector's largest useful ef_search; a filter letting fewer chunks through than this
# many candidates' worth is searched exactly instead (on servers without iterative scans).
# The smallest is the collection's own (Collection.min_ef_search).
MAX_EF_SEARCH = 1000
# The collection's estimated size, which filtered searches weigh their filter's against, is
# asked again after this many seconds (an ingest may have grown it meanwhile).
SIZE_ESTIMATE_SECONDS = 60


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

    @property
    def pages(self) -> str:
        if self.page_start is None:
            return ""
        if self.page_end in (None, self.page_start):
            return f"p. {self.page_start}"
        return f"pp. {self.page_start}-{self.page_end}"

    @property
    def citation(self) -> str:
        """'policy.pdf, pp. 2-3, Travel > Per diem'."""
        parts = [self.document_key, self.pages, " > ".join(self.section_path)]
        return ", ".join(p for p in parts if p)


class KnowledgeBase:
    """A connection and a loaded model, for many queries against one collection."""

    keyword_scan_budget = KEYWORD_SCAN_BUDGET
    hybrid_scan_budget = HYBRID_SCAN_BUDGET

    def __init__(self, settings: Settings | None = None, *, collection: str | None = None):
        self.settings = settings or Settings.from_env()
        self.store = Store.open(self.settings)
        self.collection = self.store.collection(collection or self.settings.collection)
        # Queries are embedded into the collection's own space: its model, dims and instruction.
        self.embedder = load_embedder_for_space(EmbeddingSpace.from_dict(self.collection.space),
                                                **self.settings.embedder_options())
        self.bm25 = BM25(self.settings.bm25_k1, self.settings.bm25_b)
        self._statements: dict[tuple, object] = {}  # search statements by shape (hybrid.statement_shape)
        self._size_estimate: tuple[float, float] | None = None  # (chunks, time.monotonic() when asked)

    def search(self, query: str, k: int = 10,
               filters: dict[str, Any] | ColumnElement | None = None, *,
               mode: Mode = "hybrid", fusion: str = "score", weights: LegWeights | None = None,
               exact: bool | None = None, group_by: str | None = None) -> list[Hit]:
        """The k best chunks for `query`.

        mode: "hybrid" fuses both legs; "vector" or "keyword" runs one.
        fusion: "score" (each leg's z-scores weighted by its confidence; see hybrid.py) or
            "rrf" (reciprocal rank, k=60).
        weights: per leg; by default the vector leg counts as much as the model knows the
            query's tokens (an English model on Chinese text counts for little), the keyword leg 1.
        exact: True for an exact vector scan, False for the HNSW index; None decides from the filter.
        group_by: "document" returns the best chunk of each of the k best documents.
        """
        _check_query(query)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise QueryError(f"k must be a whole number from 1 to {MAX_K:,}, not {k!r}")
        if mode not in MODES:
            raise QueryError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if group_by not in (None, "document"):
            raise QueryError(f"group_by takes 'document' or None, not {group_by!r}")
        compiled = compile_filters(filters)
        conditions = compiled.conditions
        parsed = parse_query(query)  # in every mode: a query one mode refuses, every mode refuses
        keyword_query = parsed if mode != "vector" else None
        query_vector = self.embedder.embed_queries([query])[0].tolist() if mode != "keyword" else None
        candidates = max(CANDIDATES, k) * (5 if group_by else 1)
        weights = weights or self.default_weights(query, fusion)
        scan_budget = self.keyword_scan_budget if mode == "keyword" else self.hybrid_scan_budget
        shape = dict(k=k, candidates=candidates, fusion=fusion, group_by_document=group_by == "document",
                     keyword_scan_budget=scan_budget)
        parameters = {**search_parameters(query_vector=query_vector, keyword_query=keyword_query,
                                          weights=weights, keyword_scan_budget=scan_budget, bm25=self.bm25),
                      **compiled.values}
        # Building the statement costs more than PostgreSQL's planning of it: one statement per
        # shape (filters' included) serves every query, each with its own parameters.
        key = None if compiled.shape is None else statement_shape(
            self.collection, has_vector=query_vector is not None, keyword_query=keyword_query,
            filters=compiled.shape, **shape)
        statement = self._statements.get(key) if key else None
        if statement is None:
            statement = search_statement(self.collection, query_vector=query_vector, keyword_query=keyword_query,
                                         conditions=conditions, weights=weights, **shape)
            if key:
                if len(self._statements) >= MAX_STATEMENTS:  # a long-lived service sees many shapes
                    self._statements.clear()
                self._statements[key] = statement
        rows, exact = self._execute(statement, parameters, query_vector is not None, conditions, candidates, exact)
        if query_vector is not None and conditions and not exact and (not rows or rows[0].vector_found < candidates):
            # The index ran dry inside the filter (the planner's estimate was off): scan exactly.
            rows, _ = self._execute(statement, parameters, True, conditions, candidates, True)
        return [_hit(row, mode, keyword_query.highlighted_words if keyword_query else []) for row in rows]

    def default_weights(self, query: str, fusion: str) -> LegWeights:
        """The vector leg weighs what share of the query the model can read; see search()."""
        return LegWeights(vector=self.embedder.known_share(query), keyword=1.0)

    def _execute(self, statement, parameters: dict, has_vector_leg: bool, conditions: list, candidates: int,
                 exact: bool | None) -> tuple[list, bool]:
        """Run the search statement; returns its rows and whether the vector scan was exact.

        A search only reads, so it runs outside a transaction and usually in one round trip:
        the scan settings are the connection's, changed only when a search needs others."""
        with self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if has_vector_leg:
                exact = self._prepare_vector_scan(conn, conditions, candidates, exact)
            return conn.execute(statement, parameters).all(), bool(exact)

    def _prepare_vector_scan(self, conn: Connection, conditions: list, candidates: int,
                             exact: bool | None) -> bool:
        """Set up the vector leg so a filter never starves it; returns whether the scan is exact."""
        ef_search = min(max(candidates, self.collection.min_ef_search), MAX_EF_SEARCH)
        iterative = bool(conditions) and not exact and self.store.has_iterative_scans
        if iterative:  # pgvector >= 0.8 keeps scanning the index until enough rows pass the filter
            exact = False
        elif exact is None and conditions:
            share = self._filter_share(conn, conditions)
            needed = candidates / max(share, 1e-9) * 1.5  # candidates the index must visit
            exact = needed > MAX_EF_SEARCH
            ef_search = min(max(ef_search, int(needed)), MAX_EF_SEARCH)
        scan = {"hnsw.ef_search": str(int(ef_search)),
                # Bitmap scans (the filters' own indexes) stay on; only the HNSW index scan goes.
                "enable_indexscan": "off" if exact else "on"}
        if self.store.has_iterative_scans:
            scan["hnsw.iterative_scan"] = "relaxed_order" if iterative else "off"
        _set_for_session(conn, scan)
        return bool(exact)

    def _filter_share(self, conn: Connection, conditions: list) -> float:
        """The planner's estimate of the share of the collection's chunks the filter lets through."""
        def estimated_rows(conds) -> float:
            plan = conn.execute(Explain(estimate_statement(self.collection, conds))).scalar()
            plan = json.loads(plan) if isinstance(plan, str) else plan
            return float(plan[0]["Plan"]["Plan Rows"])

        if self._size_estimate is None or time.monotonic() - self._size_estimate[1] > SIZE_ESTIMATE_SECONDS:
            self._size_estimate = (estimated_rows([]), time.monotonic())
        return estimated_rows(conditions) / max(self._size_estimate[0], 1.0)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_query(query: str) -> None:
    """Refuse a query that is not text PostgreSQL takes, or is too long to search."""
    if not isinstance(query, str):
        raise QueryError(f"the query must be a string, not {type(query).__name__}")
    problem = unstorable(query)
    if problem:
        raise QueryError(f"the query holds {problem}")
    # Measured as searched: compatibility characters (ligatures, ㌀) spell out to several.
    length = len(query) if len(query) > MAX_QUERY_CHARACTERS else len(unicodedata.normalize("NFKC", query))
    if length > MAX_QUERY_CHARACTERS:
        raise QueryError(f"the query is too long: {length:,} characters, at most {MAX_QUERY_CHARACTERS:,}")


def _set_for_session(conn: Connection, settings: dict[str, str]) -> None:
    """Give the connection these settings, in one statement, if it has not got them already."""
    current = conn.connection.info.setdefault("pgkb_settings", {})
    changed = {name: value for name, value in settings.items() if current.get(name) != value}
    if changed:
        calls = ", ".join(f"set_config(:name{i}, :value{i}, false)" for i in range(len(changed)))
        parameters = {f"{kind}{i}": item for i, pair in enumerate(changed.items())
                      for kind, item in zip(("name", "value"), pair)}
        conn.execute(text(f"SELECT {calls}"), parameters)
        current.update(changed)


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


_default: dict[tuple, KnowledgeBase] = {}
# One lock per knowledge base, taken while it opens: threads searching it at once, cold, wait
# for the first one's, while searches of the others go on.
_opening: dict[tuple, threading.Lock] = {}
_opening_lock = threading.Lock()


def search(query: str, k: int = 10, filters: dict[str, Any] | ColumnElement | None = None, *,
           mode: Mode = "hybrid", fusion: str = "score", collection: str | None = None,
           weights: LegWeights | None = None,
           exact: bool | None = None, group_by: str | None = None,
           settings: Settings | None = None) -> list[Hit]:
    """Search with the configured settings; the connection and model stay loaded for the next call."""
    settings = settings or Settings.from_env()
    name = collection or settings.collection
    return _knowledge_base(settings, name).search(query, k=k, filters=filters, mode=mode, fusion=fusion,
                                                  weights=weights, exact=exact, group_by=group_by)


def _knowledge_base(settings: Settings, collection: str) -> KnowledgeBase:
    """The process's knowledge base for this collection, opened by the first caller."""
    key = (settings, collection)
    kb = _default.get(key)
    if kb is None:
        with _opening_lock:
            lock = _opening.setdefault(key, threading.Lock())
        with lock:
            kb = _default.get(key)
            if kb is None:
                kb = _default[key] = KnowledgeBase(settings, collection=collection)
    return kb
