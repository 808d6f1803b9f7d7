"""BM25 in PostgreSQL: scores equal a computation done here, through inserts, replacements,
prunes and a killed transaction; natural-language Chinese questions; statistics kept exact."""

import numpy as np
import psycopg
import pytest
from sqlalchemy import text

from retrieval import KnowledgeBase
from store import Chunk, DocumentRecord, Store, resolve_url
from tests.term_statistics import assert_statistics_exact, bm25_by_hand

TEXTS = {
    "contract-zh.txt": ["甲方未按期付款的，应当承担违约责任，并支付滞纳金。",
                        "本合同自双方签字之日起生效，有效期三年。",
                        "乙方应对其员工的安全负全部责任。乙方的责任包括培训。"],
    "contract-en.txt": ["Either party may request termination of this agreement with ninety days notice.",
                        "A late payment incurs interest of one percent per month; late late late.",
                        "Payment is due late in the month, after the invoice is approved."],
    "handbook.txt": ["Employees receive twenty-five days of paid holiday each year.",
                     "The office is closed on public holidays. 办公室在公共假日关闭。"],
}
QUERIES = ["late payment interest", "违约责任", "乙方的责任是什么？", "holiday 假日", "the days of the month"]


def write(store, collection, key, texts, section=("Contract",)):
    vectors = np.random.default_rng(len(key)).normal(size=(len(texts), collection.dims)).astype(np.float32)
    chunks = [Chunk(key, i, t, section, 1, 1, ("NarrativeText",), len(t.split()), f"{key}-{i}-{t}")
              for i, t in enumerate(texts)]
    record = DocumentRecord(key, f"/docs/{key}", "0" * 64, 1, None, "text/plain", key)
    store.write_document(collection, record, chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


@pytest.fixture
def store(settings, embedder):
    store = Store.open(settings)
    collection = store.collection(settings.collection, embedder.space.to_dict())
    for key, texts in TEXTS.items():
        write(store, collection, key, texts)
    yield store
    store.close()


def assert_scores_match(store, settings, k1=1.2, b=0.75):
    assert_statistics_exact(store.engine, settings.collection)
    with KnowledgeBase(settings) as kb, store.engine.connect() as conn:
        kb.bm25 = type(kb.bm25)(k1, b)
        kb.keyword_scan_budget = 10**9  # score every chunk that holds a word of the query
        for query in QUERIES:
            expected = bm25_by_hand(conn, settings.collection, query, k1, b)
            hits = kb.search(query, k=100, mode="keyword")
            assert {h.chunk_id: h.score for h in hits} == pytest.approx(expected, rel=1e-9), query
            # In BM25's order (sums in another order differ in the last bit).
            assert [h.score for h in hits] == pytest.approx(sorted(expected.values(), reverse=True), rel=1e-9)


def test_bm25_scores_equal_a_computation_by_hand_through_every_kind_of_write(store, settings):
    assert_scores_match(store, settings)
    assert_scores_match(store, settings, k1=1.5, b=0.3)
    collection = store.collection(settings.collection)
    # A replacement: other words, another length, one chunk fewer.
    write(store, collection, "contract-en.txt", ["Late fees: interest of two percent, paid late monthly."])
    assert_scores_match(store, settings)
    # A prune.
    assert store.delete_documents(collection, ["handbook.txt"]) == 1
    assert_scores_match(store, settings)
    # A writer killed in the middle of its transaction: its changes and their counts vanish together.
    url = resolve_url(settings).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as killed, psycopg.connect(url, autocommit=True) as admin:
        killed.execute("DELETE FROM chunks WHERE document_id = (SELECT id FROM documents WHERE key = 'contract-zh.txt' "
                       "AND collection_id = %s)", [collection.id])
        # With a timeout, pg_terminate_backend waits until the backend is gone.
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", [killed.info.backend_pid]).fetchone()[0]
        with pytest.raises(psycopg.OperationalError):
            killed.execute("COMMIT")
    assert_scores_match(store, settings)


def test_an_update_of_a_chunks_words_is_counted(store, settings):
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE chunks SET tsv = to_tsvector('simple', 'zebra zebra') "
                          "WHERE id = (SELECT min(id) FROM chunks)"))
        conn.execute(text("UPDATE chunks SET metadata = '{\"a\": 1}'"))  # not a change of words
    assert_statistics_exact(store.engine, settings.collection)


def test_a_chinese_question_finds_the_chunk_sharing_most_of_its_words_first(store, settings):
    # Shares 甲方, 按期, 付款, 承担, 责任 with the chunk, not 没有, 要, 什么 (nor the question mark).
    with KnowledgeBase(settings) as kb:
        for mode in ("keyword", "hybrid"):
            hits = kb.search("甲方没有按期付款要承担什么责任？", k=3, mode=mode)
            assert hits[0].text == TEXTS["contract-zh.txt"][0], mode
        # Function words count by their rarity: 的 is in several chunks, so it weighs less than 责任.
        hits = kb.search("乙方的责任", k=3, mode="keyword")
        assert hits[0].text == TEXTS["contract-zh.txt"][2]


def test_full_width_text_and_mixed_queries_match(store, settings):
    collection = store.collection(settings.collection)
    write(store, collection, "prices.txt", ["ＡＢＣ型号的价格是６００元，年增长３.５％。"])
    with KnowledgeBase(settings) as kb:
        for query in ("ABC 价格", "600元", "ｐａｙｍｅｎｔ 责任"):
            assert kb.search(query, k=1, mode="keyword"), query
        assert kb.search("600元", k=1, mode="keyword")[0].document_key == "prices.txt"
        assert kb.search('"ABC型号" 价格', k=5, mode="keyword")[0].document_key == "prices.txt"
        assert kb.search('价格 -"ABC"', k=5, mode="keyword") == []


def test_traditional_and_simplified_characters_find_each_other(store, settings):
    collection = store.collection(settings.collection)
    write(store, collection, "traditional.txt", ["員工應遵守資訊安全規定，違者負法律責任。"])
    with KnowledgeBase(settings) as kb:
        # A simplified question finds the traditional chunk, a traditional one the simplified chunk.
        assert kb.search("员工违反信息安全规定要负什么责任", k=1, mode="keyword")[0].document_key == "traditional.txt"
        assert kb.search("甲方未按期付款應當承擔違約責任", k=1, mode="keyword")[0].text == TEXTS["contract-zh.txt"][0]


def test_a_lexeme_of_any_characters_is_scanned_for_as_itself(store):
    # The keyword leg turns each query lexeme into a tsquery of that word alone; quotes,
    # backslashes and tsquery operators inside a lexeme must stay part of it.
    from retrieval.statement import LEXEME_AS_TSQUERY

    with store.engine.connect() as conn:
        for lexeme in ["a\\b'c", "it's", "x:*", "a & b | !c", "\\", "''"]:
            matches = conn.execute(text(
                f"SELECT array_to_tsvector(ARRAY[lexeme]) @@ ({LEXEME_AS_TSQUERY})::tsquery, "
                f"array_to_tsvector(ARRAY['other']) @@ ({LEXEME_AS_TSQUERY})::tsquery "
                "FROM (SELECT CAST(:lexeme AS text) AS lexeme) AS word"), {"lexeme": lexeme}).one()
            assert tuple(matches) == (True, False), lexeme
