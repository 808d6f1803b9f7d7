"""What the search latency benchmark (bench/search_latency.py) measures on the searched collection.

1. Latency of `KnowledgeBase.search(q, k=10)` (hybrid) without and with the 1% filter, after a
   warm-up with five times as many other queries (a serving system's caches are warm), split
   into the query's embedding (timed inside the call) and the rest, for all queries and per
   language. Every timed search embeds its query afresh: the query cache is emptied before
   each, or a query's second search (with the filter) would skip the model.
2. Recall@10 of the vector leg (mode="vector") against an exact scan (exact=True), without and
   with the filter: as `search` runs it (exact=None, and exact=False, with the exact retries it
   makes when the HNSW index runs dry inside the filter), its statement as planned, and its
   statement forced onto the HNSW index at the largest ef_search.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
from sqlalchemy import event, text

from bench.latency_rows import Query
from embedding import Embedder
from retrieval import KnowledgeBase
from retrieval.filters import compile_filters
from retrieval.statement import Explain, LegWeights, search_statement
from store import hnsw_index_name

K = 10
FORCED_EF_SEARCH = 1000    # pgvector's largest ef_search


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}


class TimedEmbedder:
    """Stands in for a KnowledgeBase's embedder, timing each embed_queries call."""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        self.last_ms = 0.0

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self.embedder.embed_queries(texts)
        finally:
            self.last_ms = (time.perf_counter() - started) * 1000

    def __getattr__(self, name: str) -> Any:
        return getattr(self.embedder, name)


def measure_latency(kb: KnowledgeBase, queries: list[Query], filters: list[dict], warmup: list[str]) -> dict:
    """Milliseconds of `kb.search(q, k=10)` per query, without and with its department filter,
    and of the query's embedding inside it (the rest is SQL and the Python around it), after
    the `warmup` queries (other ones) have brought the server's caches to a steady state;
    for all queries, and per language. Each search embeds its query (see the module's docstring)."""
    import torch

    for warmup_query, where in zip(warmup, itertools.cycle(filters)):
        kb.search(warmup_query, k=K)
        kb.search(warmup_query, k=K, filters=where)
    embedder = kb.embedder
    timed = TimedEmbedder(embedder)
    kb.embedder = cast(Embedder, timed)  # it passes all but the timing through to `embedder`
    total_ms: dict[str, list[float]] = {"no filter": [], "1% filter": []}
    embedding_ms: dict[str, list[float]] = {"no filter": [], "1% filter": []}
    complete_and_matching = 0
    before = os.getloadavg()
    try:
        for query, where in zip(queries, filters):
            for name, condition in (("no filter", None), ("1% filter", where)):
                embedder.query_cache.clear()
                started = time.perf_counter()
                hits = kb.search(query.text, k=K, filters=condition)
                total_ms[name].append((time.perf_counter() - started) * 1000)
                embedding_ms[name].append(timed.last_ms)
                if condition:
                    department = condition["metadata.department"]
                    complete_and_matching += len(hits) == K and all(
                        h.metadata["department"] == department for h in hits)
    finally:
        kb.embedder = embedder
    result: dict[str, Any] = {"queries": len(queries), "torch_threads": torch.get_num_threads(),
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
def counted_search_statements(kb: KnowledgeBase) -> Iterator[list[str]]:
    """The search statements (those binding a query vector) that `kb` sends to the server
    meanwhile: one per search, and one more for each search that retries with an exact scan
    because the HNSW index ran dry inside its filter. Counted at the engine, as they are sent."""
    sent: list[str] = []

    def note(conn: object, cursor: object, statement: str, parameters: object, context: Any,
             executemany: bool) -> None:
        compiled = context.compiled if context is not None else None
        if compiled is not None and "query_vector" in compiled.binds:
            sent.append(statement)

    event.listen(kb.store.engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(kb.store.engine, "before_cursor_execute", note)


def vector_searches(kb: KnowledgeBase, searches: list[tuple[str, dict | None]],
                    exact: bool | None) -> tuple[list[set[int]], int]:
    """The chunk ids each vector search (query, filter) finds, and how many of the searches
    `search` retried with an exact scan."""
    with counted_search_statements(kb) as sent:
        found = [{h.chunk_id for h in kb.search(query, k=K, filters=where, mode="vector", exact=exact)}
                 for query, where in searches]
    return found, len(sent) - len(searches)


def vector_leg(kb: KnowledgeBase, query: str, where: dict | None, ef_search: int,
               force_index: bool) -> tuple[set[int], bool]:
    """The search statement's vector leg run directly (no exact retry) at `ef_search`, with
    sorting disabled when `force_index`, so that only the HNSW index can order the rows.
    Returns the ids found and whether the plan used the collection's HNSW index."""
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


def measure_recall(kb: KnowledgeBase, queries: list[Query], filters: list[dict]) -> dict:
    """Recall@10 of the vector leg against an exact scan: as `search` runs it (exact=None, the
    default, and exact=False), the statement as planned at search's ef_search, and the
    statement forced onto the HNSW index at the largest ef_search."""
    def recall(found: list[set[int]], truth: list[set[int]]) -> float:
        return float(np.mean([len(f & t) / len(t) for f, t in zip(found, truth)]))

    result = {}
    unfiltered: list[dict | None] = [None] * len(queries)
    for name, wheres in (("no filter", unfiltered), ("1% filter", filters)):
        searches = [(q.text, w) for q, w in zip(queries, wheres)]
        truth = [{h.chunk_id for h in kb.search(q, k=K, filters=w, mode="vector", exact=True)} for q, w in searches]
        figures: dict[str, dict[str, Any]] = {}
        for exact in (None, False):
            found, retries = vector_searches(kb, searches, exact)
            figures[f"search, exact={exact}"] = {"recall": recall(found, truth), "exact_retries": retries}
        for label, ef_search, force in (("statement as planned, ef_search=100", 100, False),
                                        (f"forced onto HNSW, ef_search={FORCED_EF_SEARCH}", FORCED_EF_SEARCH, True)):
            legs = [vector_leg(kb, q, w, ef_search, force) for q, w in searches]
            found = [ids for ids, _ in legs]
            figures[label] = {"recall": recall(found, truth), "mean_hits": float(np.mean([len(f) for f in found])),
                              "plans_on_hnsw": sum(on_index for _, on_index in legs)}
        result[name] = figures
    return result
