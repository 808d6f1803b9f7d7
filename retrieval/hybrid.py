"""The search statement: a vector leg and a keyword leg, fused in one SQL query.

    WITH query_terms AS (the tsquery, one tsquery per query term, and the tsquery scanned for:
                         the query's rarer alternatives, judged by the planner's statistics)
         vector_leg  AS (top N chunks by cosine distance, on the collection's HNSW index)
         keyword_leg AS (top N chunks by ts_rank among those the GIN index finds)
         candidates  AS (the union, each chunk once, with both scores and both ranks)
    SELECT ... ORDER BY fused score LIMIT k

Filters are applied inside both legs, so each leg ranks only chunks that may be returned.

Two fusions:
- "score" (the default): w_vector * cosine similarity + w_keyword * coverage², where coverage is
  the share of the query's terms the chunk contains. Both are absolute scores, comparable
  across queries; a chunk with every query term gains w_keyword (0.1 by default) of cosine.
  Unlike rank fusion, a weak leg cannot push its noise to the top: its best hit counts only as
  much as it actually matches.
- "rrf": weighted reciprocal rank fusion, w / (60 + rank) summed over the legs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    ARRAY, Boolean, ColumnElement, Float, Select, bindparam, case, cast, column, func, literal,
    literal_column, null, select, text, true, union_all,
)
from sqlalchemy.dialects.postgresql import TSQUERY, array
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable
from sqlalchemy.sql.selectable import CTE

from store import Collection, indexed_embedding
from store.fulltext import KeywordQuery, Term
from store.tables import chunks, documents, hit_metadata

RRF_K = 60
# ts_rank normalisation 1: divide by 1 + log(length), so long chunks do not win by size.
TS_RANK_NORMALIZATION = 1
HEADLINE_OPTIONS = "MaxFragments=2, MaxWords=25, MinWords=8, FragmentDelimiter= … "
FUSIONS = ("score", "rrf")


@dataclass(frozen=True)
class LegWeights:
    vector: float = 1.0
    keyword: float = 1.0


def search_statement(
    collection: Collection, *, query_vector: list[float] | None, keyword_query: KeywordQuery | None,
    conditions: list[ColumnElement], k: int, candidates: int, weights: LegWeights,
    fusion: str = "score", group_by_document: bool = False, keyword_scan_budget: int | None = None,
) -> Select:
    """One SELECT returning the k best chunks with their fused score and each leg's rank/score.

    keyword_scan_budget: scan only for the query's rarer alternatives (see _query_terms); for
    hybrid searches, where the vector leg fills the k hits whatever the keyword leg finds."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
    has_keywords = keyword_query is not None and not keyword_query.empty
    if query_vector is None and not has_keywords:
        raise ValueError("a search needs a query vector or keyword terms")
    terms = _query_terms(keyword_query, keyword_scan_budget) if has_keywords else None
    if query_vector is not None:
        query_vector = bindparam("query_vector", query_vector, type_=indexed_embedding(collection).type)
    legs = []
    if query_vector is not None:
        legs.append(_vector_leg(collection, query_vector, conditions, candidates))
    if terms is not None:
        legs.append(_keyword_leg(collection, terms, conditions, candidates))
    scored = _score_candidates(collection, legs, terms, query_vector)
    ranked = _rank(scored)
    vector_weight = bindparam("vector_weight", weights.vector, type_=Float)
    keyword_weight = bindparam("keyword_weight", weights.keyword, type_=Float)

    if fusion == "rrf":
        fused = sum((func.coalesce(w / (RRF_K + rank), 0.0) for w, rank in
                     ((vector_weight, ranked.c.vector_rank), (keyword_weight, ranked.c.keyword_rank))),
                    start=literal(0.0))
    else:
        vector_part = ranked.c.vector_score if query_vector is not None else literal(0.0)
        fused = vector_weight * vector_part + keyword_weight * ranked.c.coverage * ranked.c.coverage
    snippet = (
        case((ranked.c.keyword_rank.is_not(None),
              func.ts_headline("english", chunks.c.text, terms.c.query, HEADLINE_OPTIONS)), else_=null())
        if terms is not None else null()
    )
    from_clause = ranked.join(chunks, chunks.c.id == ranked.c.chunk_id).join(
        documents, documents.c.id == chunks.c.document_id)
    if terms is not None:
        from_clause = from_clause.join(terms, true())
    statement = select(
        chunks.c.id, chunks.c.text, chunks.c.page_start, chunks.c.page_end, chunks.c.section_path,
        hit_metadata().label("metadata"), chunks.c.document_id, documents.c.key, documents.c.path,
        fused.label("score"), ranked.c.vector_rank, ranked.c.vector_score, ranked.c.keyword_rank,
        ranked.c.keyword_score, snippet.label("snippet"), ranked.c.vector_found,
    ).select_from(from_clause)
    # Ties (a keyword-only search, equal coverage) fall back to each leg's own order.
    order = (literal_column("score").desc(), ranked.c.keyword_score.desc().nulls_last(),
             ranked.c.vector_score.desc().nulls_last(), chunks.c.id)
    if group_by_document:
        # The best chunk of each document, then the best documents.
        best = statement.order_by(chunks.c.document_id, *order).distinct(chunks.c.document_id).subquery()
        return select(best).order_by(best.c.score.desc(), best.c.keyword_score.desc().nulls_last(),
                                     best.c.vector_score.desc().nulls_last(), best.c.id).limit(k)
    return statement.order_by(*order).limit(k)


def statement_shape(collection: Collection, *, has_vector: bool, keyword_query: KeywordQuery | None,
                    k: int, candidates: int, fusion: str, group_by_document: bool,
                    keyword_scan_budget: int | None, filters: str = "") -> tuple:
    """What decides a search statement's SQL (filters: retrieval.filters.Filters.shape): two
    searches of the same shape run one statement (built once) with their own parameters."""
    terms = (tuple((t.function, t.config) for t in group) for group in (
        keyword_query.required, keyword_query.optional, keyword_query.excluded)) if keyword_query else ()
    return (collection.id, has_vector, tuple(terms), k, candidates, fusion, group_by_document,
            keyword_scan_budget is None, filters)


def search_parameters(*, query_vector: list[float] | None, keyword_query: KeywordQuery | None,
                      weights: LegWeights, keyword_scan_budget: int | None) -> dict:
    """The values of a search statement's named parameters."""
    values = {"vector_weight": weights.vector, "keyword_weight": weights.keyword}
    if query_vector is not None:
        values["query_vector"] = query_vector
    if keyword_query is not None:
        values.update({f"term_{i}": t.text for i, t in enumerate(keyword_query.terms)})
        values.update(configs=[t.config for t in keyword_query.optional],
                      texts=[t.text for t in keyword_query.optional], scan_budget=keyword_scan_budget)
    return values


def _scope(collection: Collection, conditions: list[ColumnElement]) -> list[ColumnElement]:
    # The collection id as a literal (an int, so safe): the partial HNSW index's predicate must
    # be provable at plan time.
    return [chunks.c.collection_id == literal_column(str(int(collection.id))), *conditions]


def _chunks_and_documents():
    # Every chunk has its document (document_id is a NOT NULL foreign key), so an outer join
    # gives the rows an inner one would; and PostgreSQL drops an outer join that nothing reads,
    # so a leg with no filter on the documents' columns never visits them.
    return chunks.outerjoin(documents, documents.c.id == chunks.c.document_id)


def _query_terms(keyword_query: KeywordQuery, scan_budget: int | None) -> CTE:
    """The whole tsquery; one tsquery per term, for coverage (stop words give empty ones); and
    the tsquery the keyword leg scans for, which keeps only the rarer alternatives.

    The keyword leg ranks every chunk its tsquery matches, so a question of twelve words, a few
    of them common ("film", "john"), would rank a fifth of the collection. It scans for the
    alternatives in order of rarity while their estimated matches stay within `scan_budget`,
    and always for the rarest; the common ones still count in every candidate's rank and
    coverage. (A chunk holding only common words of the query is a weak keyword match anyway.)
    """
    named = iter(range(len(keyword_query.terms)))  # every text a named parameter (search_parameters)
    required, alternatives, excluded = ([t.tsquery(bindparam(f"term_{next(named)}", t.text)) for t in terms]
                                        for terms in (keyword_query.required, keyword_query.optional,
                                                      keyword_query.excluded))
    query = KeywordQuery.combine(required, alternatives, excluded)
    columns = [query.label("query"), array(required + alternatives, type_=TSQUERY).label("terms")]
    if len(alternatives) < 2 or scan_budget is None:
        return select(*columns, query.label("scanned")).cte("query_terms")
    choice = _rare_alternatives(keyword_query.optional, scan_budget)
    rare = [case((choice.c.chosen[i], a), else_=EMPTY_TSQUERY) for i, a in enumerate(alternatives, 1)]
    scanned = KeywordQuery.combine(required, rare, excluded)
    return select(*columns, scanned.label("scanned")).select_from(choice).cte("query_terms")


# One row: chosen[i] is true for the i-th alternative the keyword leg scans for. Estimates
# come from the planner's statistics on chunks.tsv (the most common lexemes with the share of
# chunks holding each, then the smallest and largest share): a lexeme missing from them is
# rarer than the least common; a term of several words matches at most what its rarest does;
# a term of stop words has no lexeme and no estimate, and is not scanned for (it matches
# nothing). With no statistics yet (a new collection) every alternative counts as rare.
ALTERNATIVE_CHOICE = text("""
    WITH lexeme_statistics AS (
        SELECT most_common_elems::text::text[] AS lexemes, most_common_elem_freqs AS shares,
               (SELECT reltuples FROM pg_class WHERE oid = 'chunks'::regclass) AS chunk_count
        FROM pg_stats
        WHERE schemaname = current_schema() AND tablename = 'chunks' AND attname = 'tsv'
          AND NOT inherited AND most_common_elems IS NOT NULL
    ),
    estimates AS MATERIALIZED (
        SELECT term.i, (
            SELECT min(coalesce(
                       s.shares[coalesce(array_position(s.lexemes, lexeme), cardinality(s.lexemes) + 1)]
                       * s.chunk_count, 0))
            FROM unnest(tsvector_to_array(to_tsvector(term.config::regconfig, term.text))) AS lexeme
                 LEFT JOIN lexeme_statistics s ON true
        ) AS matches
        FROM unnest(CAST(:configs AS text[]), CAST(:texts AS text[])) WITH ORDINALITY AS term(config, text, i)
    )
    SELECT array_agg(chosen ORDER BY i) AS chosen FROM (
        SELECT i, matches IS NOT NULL AND (  -- rarest first; nulls sort last
                      sum(matches) OVER (ORDER BY matches, i) <= :scan_budget
                   OR row_number() OVER (ORDER BY matches, i) = 1) AS chosen
        FROM estimates
    ) AS ranked
""").columns(column("chosen", ARRAY(Boolean)))
EMPTY_TSQUERY = literal_column("''::tsquery")


def _rare_alternatives(optional: tuple[Term, ...], scan_budget: int) -> CTE:
    return ALTERNATIVE_CHOICE.bindparams(
        configs=[t.config for t in optional], texts=[t.text for t in optional], scan_budget=scan_budget,
    ).cte("alternative_choice")


def _vector_leg(collection: Collection, query_vector: list[float], conditions, candidates: int) -> CTE:
    distance = indexed_embedding(collection).cosine_distance(query_vector)
    return (
        select(chunks.c.id.label("chunk_id"), literal(True).label("from_vector"),
               literal(False).label("from_keyword"))
        .select_from(_chunks_and_documents())
        .where(*_scope(collection, conditions))
        .order_by(distance)
        .limit(candidates)
        .cte("vector_leg")
    )


def _keyword_leg(collection: Collection, terms: CTE, conditions, candidates: int) -> CTE:
    rank = func.ts_rank(chunks.c.tsv, terms.c.query, TS_RANK_NORMALIZATION)
    return (
        select(chunks.c.id.label("chunk_id"), literal(False).label("from_vector"),
               literal(True).label("from_keyword"))
        .select_from(_chunks_and_documents().join(terms, true()))
        .where(*_scope(collection, conditions), chunks.c.tsv.op("@@")(terms.c.scanned))
        .order_by(rank.desc(), chunks.c.id)
        .limit(candidates)
        .cte("keyword_leg")
    )


def _score_candidates(collection: Collection, legs: list[CTE], terms: CTE | None,
                      query_vector: list[float] | None):
    """Each candidate once, with its cosine similarity, ts_rank and query-term coverage."""
    union = union_all(*[select(leg.c.chunk_id, leg.c.from_vector, leg.c.from_keyword) for leg in legs]).subquery()
    members = (
        select(union.c.chunk_id, func.bool_or(union.c.from_vector).label("from_vector"),
               func.bool_or(union.c.from_keyword).label("from_keyword"))
        .group_by(union.c.chunk_id).subquery("members")
    )
    similarity = (
        (1 - indexed_embedding(collection).cosine_distance(query_vector)) if query_vector is not None
        else cast(null(), Float)
    )
    if terms is not None:
        matches = chunks.c.tsv.op("@@")(terms.c.query)
        keyword_score = case((matches, func.ts_rank(chunks.c.tsv, terms.c.query, TS_RANK_NORMALIZATION)))
        term = func.unnest(terms.c.terms).table_valued("t").render_derived()
        coverage = (
            select(func.coalesce(func.avg(case((chunks.c.tsv.op("@@")(term.c.t), 1.0), else_=0.0)), 0.0))
            .where(func.numnode(term.c.t) > 0)
            .scalar_subquery()
        )
        source = members.join(chunks, chunks.c.id == members.c.chunk_id).join(terms, true())
    else:
        keyword_score, coverage = cast(null(), Float), literal(0.0)
        source = members.join(chunks, chunks.c.id == members.c.chunk_id)
    vector_found = (
        select(func.count()).select_from(legs[0]).scalar_subquery() if query_vector is not None else null()
    )
    return select(
        members.c.chunk_id, members.c.from_vector, members.c.from_keyword,
        similarity.label("vector_score"), keyword_score.label("keyword_score"),
        coverage.label("coverage"),
        # How many candidates the vector leg found: fewer than asked means the filter starved it.
        vector_found.label("vector_found"),
    ).select_from(source).subquery("scored")


def _rank(scored):
    """Each leg's rank among its own members: vector by similarity; keyword by coverage, then ts_rank."""
    def leg_rank(member, *order):
        return case((member, func.rank().over(partition_by=member, order_by=order)))

    return select(
        scored,
        leg_rank(scored.c.from_vector, scored.c.vector_score.desc()).label("vector_rank"),
        leg_rank(scored.c.from_keyword, scored.c.coverage.desc(), scored.c.keyword_score.desc()).label("keyword_rank"),
    ).subquery("ranked")


class Explain(Executable, ClauseElement):
    """EXPLAIN (FORMAT JSON) of a statement, with its bound parameters processed as usual."""

    inherit_cache = False

    def __init__(self, statement: Select):
        self.statement = statement


@compiles(Explain, "postgresql")
def _compile_explain(element: Explain, compiler, **kw) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.statement, **kw)


def estimate_statement(collection: Collection, conditions: list[ColumnElement]) -> Select:
    """The chunks a filter lets through, for the planner to estimate (EXPLAIN, not run)."""
    return select(literal(1)).select_from(_chunks_and_documents()).where(*_scope(collection, conditions))
