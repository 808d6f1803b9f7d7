"""End to end on real parts: generated PDF and DOCX, the embedded PostgreSQL, the offline model."""

import numpy as np
import pytest
from sqlalchemy import event, text

from ingest import ingest
from retrieval import FilterError, KnowledgeBase
from store import Chunk, DocumentRecord, Store, hnsw_index_name


@pytest.fixture
def kb(docs, settings, embedder):
    report = ingest(docs, settings, embedder=embedder)
    with KnowledgeBase(settings) as kb:
        kb.report = report
        yield kb


def test_every_file_gets_an_outcome_and_broken_files_do_not_stop_the_run(kb):
    outcomes = {f.key: f for f in kb.report.files}
    assert set(outcomes) == {"policy.pdf", "handbook.docx", "broken.pdf", "empty.docx", "photo.xyz"}
    assert outcomes["policy.pdf"].outcome == "ingested" and outcomes["policy.pdf"].chunks >= 3
    assert outcomes["handbook.docx"].outcome == "ingested" and outcomes["handbook.docx"].chunks >= 2
    assert outcomes["broken.pdf"].outcome == "failed" and outcomes["broken.pdf"].reason.startswith("corrupt")
    assert outcomes["empty.docx"].outcome == "failed" and outcomes["empty.docx"].reason == "empty file"
    assert outcomes["photo.xyz"].outcome == "skipped"


def test_a_paraphrase_finds_the_chunk_with_file_pages_and_section(kb):
    hits = kb.search("how long after a business trip can I hand in receipts to get my money back", k=3, mode="vector")
    top = hits[0]
    assert top.document_key == "policy.pdf"
    assert "within 30 days" in top.text
    assert top.section_path == ("Travel Policy", "Submitting a claim")
    assert top.page_start == top.page_end == 1
    assert top.citation == "policy.pdf, p. 1, Travel Policy > Submitting a claim"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_pages_and_nested_sections_follow_the_document(kb):
    hit = kb.search("pool car fuel card", k=1)[0]
    assert (hit.section_path, hit.page_start) == (("Travel Policy", "Company cars"), 2)
    table = kb.search("daily allowance in London", k=1)[0]
    assert table.section_path == ("Travel Policy", "Submitting a claim", "Per diem rates")
    assert "London | 80" in table.text


def test_running_footer_is_in_no_chunk(kb):
    with kb.store.engine.connect() as conn:
        texts = conn.execute(text("SELECT text FROM chunks WHERE collection_id = :c"),
                             {"c": kb.collection.id}).scalars().all()
    assert texts and not any("ACME travel policy" in t for t in texts)


def test_a_filter_on_source_narrows_results(kb):
    unfiltered = kb.search("rules for employees", k=10)
    assert {h.document_key for h in unfiltered} == {"policy.pdf", "handbook.docx"}
    filtered = kb.search("rules for employees", k=10, filters={"source": "handbook.docx"})
    assert filtered and {h.document_key for h in filtered} == {"handbook.docx"}
    assert kb.search("rules", filters={"source": {"in": ["policy.pdf"]}, "page": {"gte": 2}})[0].page_start == 2


def test_filter_values_are_values_and_bad_filters_say_why(kb):
    assert kb.search("leave", filters={"source": "'; DROP TABLE chunks; --"}) == []
    with pytest.raises(FilterError, match="unknown operator 'near'"):
        kb.search("leave", filters={"source": {"near": "x"}})
    with pytest.raises(FilterError, match="unknown filter key 'colour'"):
        kb.search("leave", filters={"colour": "red"})


def test_the_hnsw_index_exists_and_the_vector_query_uses_it(settings, embedder):
    # Enough rows that the planner prefers the index to a scan on its own.
    store = Store.open(settings)
    collection = store.collection(settings.collection, embedder.space.to_dict())
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, collection.dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [Chunk("bulk.txt", i, f"chunk {i}", (), None, None, ("NarrativeText",), 3, str(i)) for i in range(3000)]
    record = DocumentRecord("bulk.txt", "/bulk.txt", "0" * 64, 1, None, "text/plain")
    store.write_document(collection, record, chunks, vectors)
    name = hnsw_index_name(collection.id)
    with store.engine.begin() as conn:
        conn.execute(text("ANALYZE chunks"))
        definition = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name}).scalar()
    store.close()
    assert "USING hnsw" in definition and "vector_cosine_ops" in definition

    plans = []

    def explain(conn, cursor, statement, parameters, context, executemany):
        if "vector_leg AS" in statement:
            cursor.execute("EXPLAIN " + statement, parameters)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))

    with KnowledgeBase(settings) as kb:
        event.listen(kb.store.engine, "before_cursor_execute", explain)
        hits = kb.search("expenses", k=5, mode="vector")
    assert len(hits) == 5
    assert plans and f"Index Scan using {name}" in plans[0], plans
