"""The search statement, built here and nowhere else; this module reads as PostgreSQL runs it.

First, the connection's settings for the vector leg's scan (scan_settings, at the end):
    hnsw.ef_search         how many candidates the HNSW index visits
    enable_indexscan       off for an exact scan (a filter too selective for the index)
    hnsw.iterative_scan    relaxed_order for a filtered search on pgvector >= 0.8, so the
                           index keeps scanning until enough chunks pass the filter
Then one statement (search_statement):
    WITH query_lexemes AS (the query's words as the index holds them, each with its BM25 IDF
                           from the collection's statistics: store.tables.term_statistics)
         query_terms   AS (the tsquery a chunk must match, and the one the keyword leg scans
                           for: the query's rarer words, by their exact chunk counts)
         vector_leg    AS (top N chunks by cosine distance, on the collection's HNSW index)
         keyword_leg   AS (top N chunks by BM25 among those the GIN index finds)
         candidates    AS (the union, each chunk once, with both legs' scores)
    SELECT ... FROM (candidates ranked per leg, z-scores) ORDER BY fused score LIMIT k

Filters (retrieval.filters) are applied inside both legs, so each leg ranks only chunks that
may be returned. Every value is a named parameter (search_parameters): one statement, built
once per shape (statement_shape), serves every query of that shape.

BM25 (Lucene's variant): a chunk's score is the sum over the query's words it holds of
    idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average length))
with idf = ln(1 + (chunks - df + 0.5) / (df + 0.5)), tf the word's occurrences in the chunk
(its section path included) and lengths in indexed words (chunks.term_count).

Two fusions:
- "score" (the default): each leg's scores standardised over the candidates (z-scores:
  how far a chunk stands out from the rest in that leg), each weighted by its leg's weight
  and its leg's confidence in this query (its best z-score, squared), then added. A leg
  whose best hit stands far out (BM25 on a question that reuses a paragraph's words) leads;
  a leg whose scores are flat (an English model on Chinese text) barely moves the order.
  The rule has no parameter fitted to any query set (see the README's search quality).
- "rrf": weighted reciprocal rank fusion, w / (60 + rank) summed over the legs.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    text,
    true,
    union,
)
from sqlalchemy.dialects.postgresql import JSONB, TSQUERY
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable
from sqlalchemy.sql.selectable import CTE, Subquery

from pgkb.errors import ConfigurationError, QueryError
from pgkb.settings import default
from store import Collection, Store, indexed_embedding
from store.tables import chunks, collection_statistics, documents, term_statistics

from .query import KeywordQuery, Term

Fusion = Literal["score", "rrf"]
FUSIONS: tuple[Fusion, ...] = get_args(Fusion)
DEFAULT_FUSION: Fusion = "score"
RRF_K = 60
HEADLINE_OPTIONS = "MaxFragments=2, MaxWords=25, MinWords=8, FragmentDelimiter= … "


@dataclass(frozen=True)
class LegWeights:
    vector: float = 1.0
    keyword: float = 1.0


@dataclass(frozen=True)
class BM25:
    """BM25's parameters (Settings.bm25_k1, bm25_b)."""

    k1: float = default("bm25_k1")
    b: float = default("bm25_b")

    def __post_init__(self):
        if not self.k1 >= 0:
            raise ConfigurationError(f"BM25's k1 (PGKB_BM25_K1) must be 0 or more, not {self.k1}")
        if not 0 <= self.b <= 1:
            raise ConfigurationError(f"BM25's b (PGKB_BM25_B) must be between 0 and 1, not {self.b}")


def search_statement(
    collection: Collection, *, query_vector: list[float] | None, keyword_query: KeywordQuery | None,
    conditions: list[ColumnElement], k: int, candidates: int, weights: LegWeights,
    fusion: Fusion = DEFAULT_FUSION, group_by_document: bool = False, keyword_scan_budget: int | None = None,
) -> Select:
    """One SELECT returning the k best chunks with their fused score and each leg's rank/score.

    keyword_scan_budget: scan only for the query's rarer words (see _query_lexemes)."""
    if fusion not in FUSIONS:
        raise QueryError(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
    has_keywords = keyword_query is not None and not keyword_query.empty
    if query_vector is None and not has_keywords:
        raise QueryError("a search needs a query vector or keyword terms")
    vector = (None if query_vector is None else
              bindparam("query_vector", query_vector, type_=indexed_embedding(collection).type))
    lexemes = terms = None
    if has_keywords:
        assert keyword_query is not None
        lexemes = _query_lexemes(collection, keyword_scan_budget)
        terms = _query_terms(collection, keyword_query, lexemes)
    legs = []
    if vector is not None:
        legs.append(_vector_leg(collection, vector, conditions, candidates))
    if lexemes is not None and terms is not None:
        legs.append(_keyword_leg(collection, lexemes, terms, conditions, candidates))
    ranked = _rank(_candidates(collection, legs, lexemes, terms, vector))
    return _result(ranked, terms, _fused(ranked, fusion, weights), k, group_by_document)


# -- the statement's parts, in the order it runs them ---------------------------------------

def _collection_id(collection: Collection) -> ColumnElement:
    # The collection id as a literal (an int, so safe): the partial HNSW index's predicate must
    # be provable at plan time.
    return literal_column(str(int(collection.id)))


def _scope(collection: Collection, conditions: list[ColumnElement]) -> list[ColumnElement]:
    return [chunks.c.collection_id == _collection_id(collection), *conditions]


def _chunks_and_documents():
    # Every chunk has its document (document_id is a NOT NULL foreign key), so an outer join
    # gives the rows an inner one would; and PostgreSQL drops an outer join that nothing reads,
    # so a leg with no filter on the documents' columns never visits them.
    return chunks.outerjoin(documents, documents.c.id == chunks.c.document_id)


def _query_lexemes(collection: Collection, scan_budget: int | None) -> CTE:
    """WITH query_lexemes: each of the query's words the collection holds, as its lexeme, with
    its chunk count (df), its BM25 IDF, and whether the keyword leg scans for it.

    The keyword leg ranks every chunk it scans for, so a question with a few common words
    ("film", 的, 是) would rank a large share of the collection. It scans for the words in
    order of rarity while their chunk counts add up to at most `scan_budget`, and always for
    the rarest; the common ones still count in every candidate's score. (A chunk holding only
    common words of the query scores little anyway.) Words the collection lacks match nothing
    and are dropped here."""
    words = (func.to_tsvector(literal_column("'english'::regconfig"), bindparam("latin"))
             .op("||")(func.to_tsvector(literal_column("'simple'::regconfig"), bindparam("cjk"))))
    query = func.unnest(func.tsvector_to_array(words)).table_valued("lexeme").render_derived("query")
    df = term_statistics.c.chunk_count
    idf = func.ln(1 + (collection_statistics.c.chunk_count - df + 0.5) / (df + 0.5))
    rarity: dict[str, Any] = dict(order_by=(df, query.c.lexeme))
    scanned = (literal(True) if scan_budget is None else
               (func.sum(df).over(**rarity) <= bindparam("scan_budget")) | (func.row_number().over(**rarity) == 1))
    statistics = query.join(
        term_statistics, (term_statistics.c.collection_id == _collection_id(collection))
        & (term_statistics.c.lexeme == query.c.lexeme),
    ).join(collection_statistics, collection_statistics.c.collection_id == _collection_id(collection))
    return (
        select(query.c.lexeme, df.label("df"), idf.label("idf"), scanned.label("scanned"))
        .select_from(statistics).cte("query_lexemes").prefix_with("MATERIALIZED")
    )


# A lexeme as the tsquery of that one word, exactly: quoted, as tsquery input reads it, with
# its quotes and backslashes doubled (tsquery input does no analysis of its own).
LEXEME_AS_TSQUERY = r"'''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || ''''"


def _query_terms(collection: Collection, keyword_query: KeywordQuery, lexemes: CTE) -> CTE:
    """WITH query_terms, one row: the query's lexemes (an array, for BM25); `matched`, the
    tsquery of the chunks the keyword query matches (any of its words, every required phrase,
    no excluded one); `scanned`, the tsquery the keyword leg looks up in the GIN index (the
    rarer words only); and the collection's average chunk length."""
    named = iter(range(len(keyword_query.required) + len(keyword_query.excluded)))
    required, excluded = ([_tsquery(t, bindparam(f"term_{next(named)}", t.text)) for t in terms]
                          for terms in (keyword_query.required, keyword_query.excluded))
    exclusions = [func.tsquery_not(t) for t in excluded]

    def any_word(scanned_only: bool) -> ColumnElement:
        words = func.string_agg(literal_column(LEXEME_AS_TSQUERY), literal(" | "))
        return cast(words.filter(lexemes.c.scanned) if scanned_only else words, TSQUERY)

    if required:  # the phrases decide which chunks match; the words rank them
        matched = scanned = _combine(func.tsquery_and, [*required, *exclusions])
    else:
        matched, scanned = (_combine(func.tsquery_and, [any_word(scanned_only), *exclusions])
                            for scanned_only in (False, True))
    average_length = (
        select(collection_statistics.c.term_count / cast(collection_statistics.c.chunk_count, Float))
        .where(collection_statistics.c.collection_id == _collection_id(collection)).scalar_subquery()
    )
    return select(
        func.coalesce(func.array_agg(lexemes.c.lexeme), literal_column("'{}'::text[]")).label("lexemes"),
        matched.label("matched"), scanned.label("scanned"), average_length.label("average_length"),
    ).select_from(lexemes).cte("query_terms").prefix_with("MATERIALIZED")


def _tsquery(term: Term, value: ColumnElement) -> ColumnElement:
    """A phrase or exclusion as a tsquery; `value` stands for its text (a named parameter)."""
    return getattr(func, term.function)(literal_column(f"'{term.config}'::regconfig"), value)


def _combine(operator, parts: list[ColumnElement]) -> ColumnElement:
    """Fold with a tsquery operator function (tsquery_and: &&)."""
    combined = parts[0]
    for part in parts[1:]:
        combined = operator(combined, part)
    return combined


def _vector_leg(collection: Collection, query_vector: ColumnElement, conditions, candidates: int) -> CTE:
    """WITH vector_leg: the nearest chunks, ordered by the expression the HNSW index is built on."""
    distance = indexed_embedding(collection).cosine_distance(query_vector)
    return (
        select(chunks.c.id.label("chunk_id"))
        .select_from(_chunks_and_documents())
        .where(*_scope(collection, conditions))
        .order_by(distance)
        .limit(candidates)
        .cte("vector_leg")
    )


def _keyword_leg(collection: Collection, lexemes: CTE, terms: CTE, conditions, candidates: int) -> CTE:
    """WITH keyword_leg: the chunks the GIN index finds for the scanned words, best BM25 first."""
    return (
        select(chunks.c.id.label("chunk_id"))
        .select_from(_chunks_and_documents().join(terms, true()))
        .where(*_scope(collection, conditions), chunks.c.tsv.op("@@")(terms.c.scanned))
        .order_by(_bm25(lexemes, terms).desc(), chunks.c.id)
        .limit(candidates)
        .cte("keyword_leg")
    )


def _bm25(lexemes: CTE, terms: CTE) -> ColumnElement:
    """The chunk's BM25 score for the query (None when it holds none of the query's words).

    Only the query's words are unnested from the chunk's tsvector: setweight marks them
    (weight D: the index writes A and B) and ts_filter keeps what it marked, both in C."""
    k1, b = bindparam("k1", type_=Float), bindparam("b", type_=Float)
    marked = func.ts_filter(func.setweight(chunks.c.tsv, literal_column("'D'::\"char\""), terms.c.lexemes),
                            literal_column("'{d}'::\"char\"[]"))
    held = func.unnest(marked).table_valued("lexeme", "positions", "weights").render_derived("held")
    tf = func.cardinality(held.c.positions)
    length_norm = 1 - b + b * chunks.c.term_count / terms.c.average_length
    return (
        select(func.sum(lexemes.c.idf * tf * (k1 + 1) / (tf + k1 * length_norm)))
        .select_from(held.join(lexemes, lexemes.c.lexeme == held.c.lexeme))
        .scalar_subquery()
    )


def _candidates(collection: Collection, legs: list[CTE], lexemes: CTE | None, terms: CTE | None,
                query_vector: ColumnElement | None) -> CTE:
    """WITH candidates: each chunk either leg found, once, with its cosine similarity and its
    BM25 score: each leg scores every candidate, whichever leg found it. Materialized: the
    scores are read by the ranks, the z-scores and the result, and a subquery would compute
    BM25 again for each."""
    members = union(*[select(leg.c.chunk_id) for leg in legs]).subquery("members")  # each chunk once
    similarity = (
        (1 - indexed_embedding(collection).cosine_distance(query_vector)) if query_vector is not None
        else cast(null(), Float)
    )
    keyword_score: ColumnElement
    if lexemes is not None and terms is not None:
        keyword_score = case((chunks.c.tsv.op("@@")(terms.c.matched), _bm25(lexemes, terms)))
        source = members.join(chunks, chunks.c.id == members.c.chunk_id).join(terms, true())
    else:
        keyword_score = cast(null(), Float)
        source = members.join(chunks, chunks.c.id == members.c.chunk_id)
    vector_found = (
        select(func.count()).select_from(legs[0]).scalar_subquery() if query_vector is not None else null()
    )
    return select(
        members.c.chunk_id, similarity.label("vector_score"), keyword_score.label("keyword_score"),
        # How many candidates the vector leg found: fewer than asked means the filter starved it.
        vector_found.label("vector_found"),
    ).select_from(source).cte("candidates").prefix_with("MATERIALIZED")


def _rank(scored: CTE) -> Subquery:
    """Each leg's rank among the candidates it scores (vector: every candidate, by similarity;
    keyword: those the keyword query matches, by BM25), and each leg's z-score over them all."""
    def leg_rank(score):
        member = score.is_not(None)
        return case((member, func.rank().over(partition_by=member, order_by=score.desc())))

    def z_score(score):
        # A leg with no spread (one candidate, or all equal) standardises to 0.
        value = func.coalesce(score, 0.0)
        return (value - func.avg(value).over()) / func.nullif(func.stddev_pop(value).over(), 0.0)

    return select(
        scored,
        leg_rank(scored.c.vector_score).label("vector_rank"),
        leg_rank(scored.c.keyword_score).label("keyword_rank"),
        z_score(scored.c.vector_score).label("vector_z"), z_score(scored.c.keyword_score).label("keyword_z"),
    ).subquery("ranked")


def _fused(ranked: Subquery, fusion: Fusion, weights: LegWeights) -> ColumnElement:
    """The fused score (see the module's docstring), each leg weighed by a named parameter."""
    vector_weight = bindparam("vector_weight", weights.vector, type_=Float)
    keyword_weight = bindparam("keyword_weight", weights.keyword, type_=Float)
    if fusion == "rrf":
        return sum((func.coalesce(w / (RRF_K + rank), 0.0) for w, rank in
                    ((vector_weight, ranked.c.vector_rank), (keyword_weight, ranked.c.keyword_rank))),
                   start=literal(0.0))
    return sum((w * _confidence(z) * func.coalesce(z, 0.0) for w, z in
                ((vector_weight, ranked.c.vector_z), (keyword_weight, ranked.c.keyword_z))),
               start=literal(0.0))


def _confidence(z_score) -> ColumnElement:
    """How far a leg's best candidate stands out from the rest, squared: a leg that singles one
    chunk out (BM25 on a question that reuses a paragraph's words) speaks loudly; a leg whose
    scores are flat (an English model on Chinese text) barely moves the order. A window over
    every candidate: the same for each row."""
    best = func.greatest(func.max(func.coalesce(z_score, 0.0)).over(), 0.0)
    return best * best


def _result(ranked: Subquery, terms: CTE | None, fused: ColumnElement, k: int, group_by_document: bool) -> Select:
    """The final SELECT: the k best candidates with their chunk, document, scores and snippet."""
    snippet = (
        case((ranked.c.keyword_rank.is_not(None),
              func.ts_headline("english", chunks.c.text, terms.c.matched, HEADLINE_OPTIONS)), else_=null())
        if terms is not None else null()
    )
    from_clause = ranked.join(chunks, chunks.c.id == ranked.c.chunk_id).join(
        documents, documents.c.id == chunks.c.document_id)
    if terms is not None:
        from_clause = from_clause.join(terms, true())
    statement = select(
        chunks.c.id, chunks.c.text, chunks.c.page_start, chunks.c.page_end, chunks.c.section_path,
        _hit_metadata().label("metadata"), chunks.c.document_id, documents.c.key, documents.c.path,
        fused.label("score"), ranked.c.vector_rank, ranked.c.vector_score, ranked.c.keyword_rank,
        ranked.c.keyword_score, snippet.label("snippet"), ranked.c.vector_found,
    ).select_from(from_clause)
    # Ties (equal scores) fall back to each leg's own order.
    order: tuple[ColumnElement, ...] = (literal_column("score").desc(), ranked.c.keyword_score.desc().nulls_last(),
             ranked.c.vector_score.desc().nulls_last(), chunks.c.id)
    if group_by_document:
        # The best chunk of each document, then the best documents.
        best = statement.order_by(chunks.c.document_id, *order).distinct(chunks.c.document_id).subquery()
        return select(best).order_by(best.c.score.desc(), best.c.keyword_score.desc().nulls_last(),
                                     best.c.vector_score.desc().nulls_last(), best.c.id).limit(k)
    return statement.order_by(*order).limit(k)


def _hit_metadata() -> ColumnElement:
    """A chunk's metadata as a hit carries it: the chunk's own, overridden by its document's tags."""
    return chunks.c.metadata.op("||", return_type=JSONB)(documents.c.tags)


# -- the statement's parameters and shape ---------------------------------------------------

def search_parameters(*, query_vector: list[float] | None, keyword_query: KeywordQuery | None,
                      weights: LegWeights, keyword_scan_budget: int | None, bm25: BM25) -> dict[str, Any]:
    """The values of a search statement's named parameters (a filter's come with it)."""
    values: dict[str, Any] = {"vector_weight": weights.vector, "keyword_weight": weights.keyword}
    if query_vector is not None:
        values["query_vector"] = query_vector
    if keyword_query is not None:
        terms = keyword_query.required + keyword_query.excluded
        values.update({f"term_{i}": t.text for i, t in enumerate(terms)})
        values.update(latin=keyword_query.latin, cjk=keyword_query.cjk, scan_budget=keyword_scan_budget,
                      k1=bm25.k1, b=bm25.b)
    return values


def statement_shape(collection: Collection, *, has_vector: bool, keyword_query: KeywordQuery | None,
                    k: int, candidates: int, fusion: Fusion, group_by_document: bool,
                    keyword_scan_budget: int | None, filters: str = "") -> tuple:
    """What decides a search statement's SQL (filters: retrieval.filters.Filters.shape): two
    searches of the same shape run one statement (built once) with their own parameters."""
    terms = tuple(tuple((t.function, t.config) for t in group) for group in (
        keyword_query.required, keyword_query.excluded)) if keyword_query else None
    return (collection.id, has_vector, terms, k, candidates, fusion, group_by_document,
            keyword_scan_budget is None, filters)


# Search statements kept for reuse, by shape.
MAX_STATEMENTS = 256


class StatementCache:
    """Search statements by shape, shared by a knowledge base's threads: building a statement
    costs more than PostgreSQL's planning of it."""

    def __init__(self, size: int = MAX_STATEMENTS):
        self.size = size
        self._statements: dict[Hashable, Select] = {}
        self._lock = threading.Lock()

    def get(self, shape: Hashable | None, build: Callable[[], Select]) -> Select:
        """The statement of this shape, built on first use; None: not shareable, built each time."""
        if shape is None:
            return build()
        with self._lock:
            statement = self._statements.get(shape)
        if statement is None:
            statement = build()  # outside the lock: two threads may both build one, the same
            with self._lock:
                if len(self._statements) >= self.size:  # a long-lived service sees many shapes
                    self._statements.clear()
                statement = self._statements.setdefault(shape, statement)
        return statement


# -- the connection's settings for the vector leg --------------------------------------------

# pgvector's largest useful ef_search; a filter letting fewer chunks through than this
# many candidates' worth is searched exactly instead (on servers without iterative scans).
# The smallest is the collection's own (Collection.min_ef_search).
MAX_EF_SEARCH = 1000
# A filter's estimated share of its collection (and the collection's size, which it is weighed
# against) is asked again after this many seconds: an ingest may have changed both meanwhile.
SIZE_ESTIMATE_SECONDS = 60
# Estimates remembered per collection: a service sees the same filters and the same keys'
# groups again and again, and each estimate is a round trip and a planning of its own.
MAX_ESTIMATES = 1024


def scan_settings(store: Store, collection: Collection, conditions: list[ColumnElement], candidates: int,
                  exact: bool | None, filter_share: Callable[[], float]) -> tuple[dict[str, str], bool]:
    """The session settings that keep a filter from starving the vector leg, and whether its
    scan is exact. filter_share: the share of the collection the filter lets through, asked
    only when needed (FilterShare)."""
    ef_search = min(max(candidates, collection.min_ef_search), MAX_EF_SEARCH)
    iterative = bool(conditions) and not exact and store.has_iterative_scans
    if iterative:  # pgvector >= 0.8 keeps scanning the index until enough rows pass the filter
        exact = False
    elif exact is None and conditions:
        needed = candidates / max(filter_share(), 1e-9) * 1.5  # candidates the index must visit
        exact = needed > MAX_EF_SEARCH
        ef_search = min(max(ef_search, int(needed)), MAX_EF_SEARCH)
    settings = {"hnsw.ef_search": str(int(ef_search)),
                # Bitmap scans (the filters' own indexes) stay on; only the HNSW index scan goes.
                "enable_indexscan": "off" if exact else "on"}
    if store.has_iterative_scans:
        settings["hnsw.iterative_scan"] = "relaxed_order" if iterative else "off"
    return settings, bool(exact)


def set_for_session(conn: Connection, settings: dict[str, str]) -> None:
    """Give the connection these settings, in one statement, if it has not got them already."""
    current = conn.connection.info.setdefault("pgkb_settings", {})
    changed = {name: value for name, value in settings.items() if current.get(name) != value}
    if changed:
        calls = ", ".join(f"set_config(:name{i}, :value{i}, false)" for i in range(len(changed)))
        parameters = {f"{kind}{i}": item for i, pair in enumerate(changed.items())
                      for kind, item in zip(("name", "value"), pair)}
        conn.execute(text(f"SELECT {calls}"), parameters)
        current.update(changed)


class FilterShare:
    """The planner's estimates of how many of a collection's chunks a filter lets through
    (EXPLAIN, not run), against the collection's size; each remembered for
    SIZE_ESTIMATE_SECONDS by the filter's key (its SQL and values; see Filters.key), where it
    has one. Safe to share between threads."""

    def __init__(self, collection: Collection):
        self.collection = collection
        self._estimates: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()  # rows, when asked
        self._lock = threading.Lock()

    def __call__(self, conn: Connection, conditions: list[ColumnElement], key: Hashable | None) -> float:
        return self._estimated_rows(conn, conditions, key) / max(self._estimated_rows(conn, [], ()), 1.0)

    def _estimated_rows(self, conn: Connection, conditions: list[ColumnElement], key: Hashable | None) -> float:
        with self._lock:
            known = self._estimates.get(key) if key is not None else None
        if known is not None and time.monotonic() - known[1] <= SIZE_ESTIMATE_SECONDS:
            return known[0]
        statement = (select(literal(1)).select_from(_chunks_and_documents())
                     .where(*_scope(self.collection, conditions)))
        plan: Any = conn.execute(Explain(statement)).scalar()
        plan = json.loads(plan) if isinstance(plan, str) else plan
        rows = float(plan[0]["Plan"]["Plan Rows"])
        if key is not None:
            with self._lock:
                self._estimates[key] = (rows, time.monotonic())
                self._estimates.move_to_end(key)
                while len(self._estimates) > MAX_ESTIMATES:
                    self._estimates.popitem(last=False)
        return rows


class Explain(Executable, ClauseElement):
    """EXPLAIN (FORMAT JSON) of a statement, with its bound parameters processed as usual."""

    inherit_cache = False

    def __init__(self, statement: Select):
        self.statement = statement


@compiles(Explain, "postgresql")
def _compile_explain(element: Explain, compiler, **kw) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.statement, **kw)
