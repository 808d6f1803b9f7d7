"""Hybrid, filtered search on the real database: Chinese and English full text, fusion, filters."""

import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import literal, select, text

from retrieval import FilterError, KnowledgeBase, LegWeights, QueryError
from store import Chunk, DocumentRecord, Store, StoreError
from store.tables import documents


def _unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


def write(store, collection, key, texts, vectors, section=("Contract",), metadata=None):
    chunks = [Chunk(key, i, t, section, 1, 1, ("NarrativeText",), len(t.split()), f"{key}-{i}")
              for i, t in enumerate(texts)]
    record = DocumentRecord(key, f"/docs/{key}", "0" * 64, 1, None, "text/plain", key, metadata or {})
    store.write_document(collection, record, chunks, np.asarray(vectors, dtype=np.float32))


@pytest.fixture
def kb(settings, embedder):
    """A collection of real-embedded chunks in Chinese and English."""
    store = Store.open(settings)
    collection = store.collection(settings.collection, embedder.space.to_dict())
    texts = {
        "contract-zh.txt": ["甲方未按期付款的，应当承担违约责任，并支付滞纳金。",
                            "本合同自双方签字之日起生效，有效期三年。",
                            "乙方应对其员工的安全负全部责任。"],
        "contract-en.txt": ["Either party may request termination of this agreement with ninety days notice.",
                            "A late payment incurs interest of one percent per month.",
                            "Payment is due late in the month, after the invoice is approved."],
        "handbook.txt": ["Employees receive twenty-five days of paid holiday each year.",
                         "The office is closed on public holidays."],
    }
    for key, chunk_texts in texts.items():
        write(store, collection, key, chunk_texts, embedder.embed_documents(chunk_texts),
              metadata={"department": "legal" if "contract" in key else "hr", "tags": ["2026", key[:8]]})
    store.close()
    with KnowledgeBase(settings) as kb:
        yield kb


def test_a_chinese_query_finds_the_chunk_that_contains_it_and_no_other(kb):
    hits = kb.search("违约责任", mode="keyword")
    assert [h.text for h in hits] == ["甲方未按期付款的，应当承担违约责任，并支付滞纳金。"]
    assert hits[0].keyword_rank == 1 and hits[0].vector_rank is None
    assert "<b>违约责任</b>" in hits[0].snippet


def test_english_words_are_stemmed(kb):
    hits = kb.search("terminated", mode="keyword")
    assert len(hits) == 1 and "termination" in hits[0].text
    assert "<b>termination</b>" in hits[0].snippet


def test_a_quoted_phrase_must_appear_as_a_phrase(kb):
    phrase = kb.search('"late payment"', mode="keyword")
    assert [h.text for h in phrase] == ["A late payment incurs interest of one percent per month."]
    both_words = kb.search("late payment", mode="keyword")
    assert len(both_words) == 2  # the words apart match too, without quotes
    assert kb.search('"late payment" -interest', mode="keyword") == []


def test_hybrid_carries_both_legs_and_fuses_them(kb):
    hits = kb.search("how many days of holiday do employees get", k=3, fusion="rrf", weights=LegWeights(1.0, 0.5))
    top = hits[0]
    assert top.document_key == "handbook.txt"
    assert top.vector_rank == 1 and top.keyword_rank is not None
    assert top.score == pytest.approx(1.0 / 61 + 0.5 / (60 + top.keyword_rank))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_hybrid_leans_on_keywords_where_the_model_does_not_know_the_language(kb):
    # all-MiniLM-L6-v2 reads most Chinese characters as [UNK]: its vector leg says little here.
    assert kb.embedder.known_share("违约责任") < 0.5 < kb.embedder.known_share("breach of contract")
    hits = kb.search("违约责任", k=3)
    assert hits[0].text == "甲方未按期付款的，应当承担违约责任，并支付滞纳金。"
    assert hits[0].keyword_rank == 1


def test_score_fusion_adds_each_legs_standardised_scores(kb):
    hits = kb.search("late payment interest", k=100)  # every candidate: the collection is small
    assert hits[0].text == "A late payment incurs interest of one percent per month."
    weights = kb.default_weights("late payment interest", "score")

    def standardised(scores):
        scores = np.array([s or 0.0 for s in scores])
        return (scores - scores.mean()) / scores.std()

    vector, keyword = standardised([h.vector_score for h in hits]), standardised([h.keyword_score for h in hits])
    # Each leg weighs as far as its best candidate stands out, squared.
    expected = weights.vector * vector.max() ** 2 * vector + weights.keyword * keyword.max() ** 2 * keyword
    assert [h.score for h in hits] == pytest.approx(expected.tolist(), rel=1e-6)


def test_filters_apply_inside_both_legs(kb):
    hits = kb.search("payment 付款", k=10, filters={"metadata.department": "hr"})
    assert hits and {h.document_key for h in hits} == {"handbook.txt"}
    hits = kb.search("payment", k=10, filters={"metadata.tags": {"contains": "contract"},
                                               "source": {"in": ["contract-en.txt"]}})
    assert {h.document_key for h in hits} == {"contract-en.txt"}
    assert kb.search("payment", filters={"metadata.reviewed": {"exists": True}}) == []


def test_searches_of_one_shape_share_a_statement_but_not_its_values(kb, settings):
    kb.search("late payment interest")  # three English words: the statement of that shape is built
    reused = kb.search("paid public holidays")  # the same shape, run with its own values
    with KnowledgeBase(settings) as fresh:
        built = fresh.search("paid public holidays")
    assert [(h.chunk_id, round(h.score, 6)) for h in reused] == [(h.chunk_id, round(h.score, 6)) for h in built]
    assert reused[0].document_key == "handbook.txt"


def test_filtered_searches_of_one_shape_share_a_statement_but_each_keeps_its_values(kb, settings):
    searches = [("payment", {"metadata.department": "hr"}), ("payment", {"metadata.department": "legal"}),
                ("payment", {"source": {"in": ["handbook.txt"]}}),
                ("payment", {"source": {"in": ["contract-en.txt", "contract-zh.txt"]}}),
                ("payment", {"metadata.tags": {"exists": True}}), ("payment", {"metadata.tags": {"exists": False}}),
                ("payment", {"page": {"in": [1]}}), ("payment", {"page": {"in": [2, 3]}})]
    reused = [kb.search(query, filters=where) for query, where in searches]
    for (query, where), hits in zip(searches, reused):
        with KnowledgeBase(settings) as fresh:  # each statement built for its own filter
            built = fresh.search(query, filters=where)
        assert [(h.chunk_id, round(h.score, 6)) for h in hits] == [(h.chunk_id, round(h.score, 6)) for h in built]
    assert {h.document_key for h in reused[0]} == {"handbook.txt"}
    assert {h.document_key for h in reused[1]} == {"contract-en.txt", "contract-zh.txt"}
    assert reused[4] and reused[5] == [] and reused[6] and reused[7] == []


def test_every_operator_binds_its_values_with_the_right_types(kb):
    def documents_found(where):
        return {h.document_key for h in kb.search("payment holiday contract", k=10, filters=where)}

    everything = {"contract-zh.txt", "contract-en.txt", "handbook.txt"}
    assert documents_found({"ingested": {"gte": "2020-01-01"}}) == everything
    assert documents_found({"ingested": {"lt": "2020-01-01T00:00:00"}}) == set()
    assert documents_found({"section": "Contract"}) == everything
    assert documents_found({"section": {"in": ["Annex", "Contract"]}}) == everything
    assert documents_found({"section": {"contains": ["Contract", "Annex"]}}) == set()
    assert documents_found({"metadata.department": {"gte": "i"}}) == {"contract-zh.txt", "contract-en.txt"}
    assert documents_found({"metadata.department": {"gt": 3}}) == set()  # a number never matches text
    assert documents_found({"source": {"in": []}}) == set()
    assert documents_found({"title": "handbook.txt", "page": {"lte": 1}}) == {"handbook.txt"}


def test_a_filter_value_is_only_a_value_and_bad_filters_say_why(kb):
    assert kb.search("payment", filters={"source": "'; DROP TABLE chunks; --"}) == []
    with kb.store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM chunks")).scalar() > 0
    with pytest.raises(FilterError, match="unknown operator 'near'"):
        kb.search("payment", filters={"source": {"near": "x"}})
    with pytest.raises(FilterError, match="unknown filter key 'colour'"):
        kb.search("payment", filters={"colour": "red"})


def test_group_by_document_returns_each_document_once(kb):
    hits = kb.search("payment contract holiday", k=10, group_by="document")
    keys = [h.document_key for h in hits]
    assert sorted(keys) == sorted(set(keys)) == ["contract-en.txt", "contract-zh.txt", "handbook.txt"]


def test_sqlalchemy_expressions_are_filters_too(kb):
    hits = kb.search("payment", filters=documents.c.key.like("contract-en%"))
    assert hits and {h.document_key for h in hits} == {"contract-en.txt"}


@pytest.fixture(scope="module")
def big(data_dir, embedder):
    """20,000 chunks in 200 documents, vectors random: each document holds 0.5% of them."""
    from pgkb.settings import Settings

    settings = Settings(data_dir=data_dir, collection="twenty-thousand")
    store = Store.open(settings)
    collection = store.collection(settings.collection, embedder.space.to_dict())
    rng = np.random.default_rng(7)
    with store.bulk_load(collection):  # the index built once at the end: 10x faster than row by row
        for d in range(200):
            vectors = _unit(rng.normal(size=(100, collection.dims)))
            write(store, collection, f"doc{d:03}.txt", [f"record {i} of ledger {d}" for i in range(100)], vectors)
    store.close()
    return settings


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_a_filter_matching_one_percent_of_20000_chunks_still_returns_k_hits(big, mode):
    wanted = {"doc017.txt", "doc123.txt"}
    with KnowledgeBase(big) as kb:
        for exact in (None, False):  # the planner's choice, and the index forced
            hits = kb.search("ledger record", k=10, mode=mode, exact=exact, filters={"source": {"in": sorted(wanted)}})
            assert len(hits) == 10 and {h.document_key for h in hits} <= wanted


def test_a_filters_share_of_the_collection_is_estimated_once_per_filter(big):
    """Each estimate is an EXPLAIN round trip before the search: a service asks the same
    filters (and the same keys' groups) again and again, so each filter's is remembered."""
    from sqlalchemy import event

    with KnowledgeBase(big) as kb:
        explained: list[str] = []
        event.listen(kb.store.engine, "before_cursor_execute",
                     lambda conn, cursor, statement, *rest: explained.append(statement)
                     if statement.startswith("EXPLAIN") else None)
        one, other = {"source": {"in": ["doc017.txt"]}}, {"source": {"in": ["doc017.txt", "doc123.txt"]}}
        first = kb.search("ledger record", k=10, filters=one)
        assert len(explained) == 2  # the filter's rows and the collection's
        assert kb.search("ledger record", k=10, filters=one) == first and len(explained) == 2
        assert {h.document_key for h in kb.search("ledger", k=10, filters=other)} <= {"doc017.txt", "doc123.txt"}
        assert len(explained) == 3  # another filter, its own estimate


def test_hybrid_ranks_a_keyword_only_and_a_vector_only_chunk(big, embedder):
    query = "turbine maintenance schedule"
    query_vector = embedder.embed_queries([query])[0]
    store = Store.open(big)
    collection = store.collection(big.collection)
    # Words of the query but a vector pointing away from it; a vector equal to the query's but
    # none of its words.
    write(store, collection, "words-only.txt", ["turbine maintenance schedule, see annex"], [-query_vector])
    write(store, collection, "meaning-only.txt", ["When to service the wind generators"], [query_vector])
    store.close()
    with KnowledgeBase(big) as kb:
        hits = kb.search(query, k=5, fusion="rrf", weights=LegWeights(1.0, 1.0))
    by_key = {h.document_key: h for h in hits}
    # Each leg ranks every candidate it can score: the words-only chunk is the vector leg's last.
    assert by_key["words-only.txt"].keyword_rank == 1 and by_key["words-only.txt"].vector_rank == 101
    assert by_key["meaning-only.txt"].vector_rank == 1 and by_key["meaning-only.txt"].keyword_rank is None


def test_the_keyword_leg_scans_for_the_rare_words_of_a_query(big, embedder):
    store = Store.open(big)
    collection = store.collection(big.collection)
    write(store, collection, "zebra.txt", ["the zebra ledger"], embedder.embed_documents(["the zebra ledger"]))
    store.close()
    query = "the ledger zebra"  # "ledger" is in every chunk, "zebra" in one, "the" a stop word
    with KnowledgeBase(big) as kb:
        kb.keyword_scan_budget = 1000
        narrowed = kb.search(query, k=10, mode="keyword")
        hybrid = kb.search(query, k=10)
        kb.keyword_scan_budget = 10**9
        everything = kb.search(query, k=10, mode="keyword")
    # Only the chunk with the rare word was scanned for; its score still counts "ledger".
    assert [h.document_key for h in narrowed] == ["zebra.txt"]
    assert hybrid[0].document_key == "zebra.txt"
    # With room for every word, every chunk holding one is ranked: k hits, both words first.
    assert len(everything) == 10 and everything[0].document_key == "zebra.txt"
    assert everything[0].score == narrowed[0].score > everything[1].score


def test_vectors_above_2000_dims_are_refused_with_the_way_out_on_pgvector_0_6(settings):
    store = Store.open(settings)
    assert store.pgvector_version < (0, 7)  # the embedded server; 0.8 is tested on PGlite
    with pytest.raises(StoreError, match="--dims"):
        store.collection("wide", {"model": "Qwen/Qwen3-Embedding-4B", "dims": 2560, "pooling": "last_token",
                                  "normalize": True})
    store.close()


# -- the statement, shown (issue 25) ----------------------------------------------------------

def run_explained(engine, explanation) -> list[int]:
    """The chunk ids the explained statement returns, run directly: its settings for this
    transaction only (the pool's connections keep theirs), then the SQL with its parameters."""
    with engine.begin() as conn:
        for name, value in explanation.settings.items():
            conn.execute(text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})
        return [row.id for row in conn.exec_driver_sql(explanation.sql, explanation.parameters)]


def test_the_explained_statement_returns_the_searchs_hits(kb):
    cases = [("late payment interest", {}), ("违约责任", {"mode": "keyword"}),
             ("holiday for employees", {"mode": "vector"}),
             ("payment contract", {"filters": {"metadata.department": "legal"}}),
             ('"late payment" -days', {"mode": "keyword", "filters": {"page": {"gte": 1}}}),
             ("payment holiday", {"fusion": "rrf", "group_by": "document"}),
             ("late payment", {"filters": documents.c.key == "contract-en.txt"})]  # values of its own
    for query, options in cases:
        hits = kb.search(query, k=5, **options)
        assert hits, (query, options)
        explanation = kb.explain(query, k=5, **options)
        assert run_explained(kb.store.engine, explanation) == [h.chunk_id for h in hits], (query, options)
    assert kb.search("late payment", k=5) == kb.search("late payment", k=5)  # the pool's settings untouched


def test_an_explanation_shows_the_sql_parameters_and_plan_but_no_secrets(kb):
    from store import resolve_url

    explanation = kb.explain("late payment", k=3, filters={"metadata.department": "legal"}, plan=True)
    assert "WITH query_lexemes AS MATERIALIZED" in explanation.sql and "%(query_vector)s" in explanation.sql
    assert explanation.parameters["latin"] == "late payment" and explanation.parameters["k1"] == 1.2
    assert explanation.parameters["query_vector"].count(",") == kb.embedder.space.dims - 1  # in full
    assert explanation.settings["hnsw.ef_search"].isdigit()
    shown = str(explanation)
    assert "query_vector = '[" in shown and "characters)" in shown  # the vector shortened
    assert "plan:" in shown and "Limit" in explanation.plan and "actual time" not in explanation.plan
    assert "actual time" in kb.explain("late payment", analyze=True).plan
    assert resolve_url(kb.settings) not in shown and str(kb.settings.data_dir) not in shown


def test_search_explain_prints_the_statement_and_plan(kb, capsys):
    from retrieval import cli

    arguments = ["late payment", "--data-dir", str(kb.settings.data_dir), "--collection", kb.settings.collection,
                 "--where", '{"metadata.department": "legal"}', "--explain"]
    assert cli.main(arguments) == 0
    shown = capsys.readouterr().out
    assert "SET hnsw.ef_search" in shown and "SELECT" in shown and "filter_0 = " in shown and "plan:" not in shown
    assert cli.main([*arguments, "--plan"]) == 0
    assert "actual time" in capsys.readouterr().out
    assert cli.main([*arguments, "--json"]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert set(explained) == {"sql", "parameters", "settings", "plan"}
    hits = kb.search("late payment", filters={"metadata.department": "legal"})
    assert run_explained(kb.store.engine, SimpleNamespace(**explained)) == [h.chunk_id for h in hits]


@pytest.mark.parametrize(("name", "value"), [("mode", "fuzzy"), ("fusion", "max"), ("group_by", "page")])
def test_an_unknown_option_is_a_query_error_naming_it(kb, name, value):
    with pytest.raises(QueryError, match=f"^{name} must be one of .*, not '{value}'"):
        kb.search("late payment", **{name: value})


def test_retrieval_exports_its_public_names_sorted():
    import retrieval

    assert retrieval.__all__ == sorted(retrieval.__all__)
    assert {"KnowledgeBase", "KnowledgeBases", "search", "Hit", "Mode", "Fusion", "GroupBy", "LegWeights",
            "Explanation", "QueryError", "FilterError"} <= set(retrieval.__all__)
    assert all(hasattr(retrieval, name) for name in retrieval.__all__)


# -- shared between threads (issue 25) ---------------------------------------------------------

def test_knowledge_bases_open_one_per_collection_for_threads_and_close(kb):
    from retrieval import KnowledgeBases

    expected = [h.chunk_id for h in kb.search("late payment", k=3)]
    start, opened, found = threading.Barrier(6), [], []

    def run(bases):
        start.wait()
        base = bases.get(kb.settings)
        opened.append(base)
        found.append([h.chunk_id for h in base.search("late payment", k=3)])

    with KnowledgeBases() as bases:
        threads = [threading.Thread(target=run, args=(bases,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len({id(base) for base in opened}) == 1 and found == [expected] * 6
    assert opened[0].store.engine.pool.checkedin() == 0  # closed on leaving the block


def test_the_statement_cache_is_shared_by_threads():
    from retrieval.statement import StatementCache

    cache, built, start = StatementCache(size=4), [], threading.Barrier(8)

    def build(shape):
        built.append(shape)
        return select(literal(shape))

    def run(i):
        start.wait()
        for round_ in range(50):
            shape = (i + round_) % 6
            assert cache.get(shape, lambda shape=shape: build(shape)).compile().params == {"param_1": shape}

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(built) == set(range(6))
    statement = cache.get(None, lambda: select(literal(1)))
    assert cache.get(None, lambda: select(literal(1))) is not statement  # no shape: not shared
