"""pgkb on a current pgvector: PostgreSQL 18 with pgvector 0.8.7 (PGlite, tests/pglite), the
paths the embedded server (pgvector 0.6.2) cannot take: halfvec HNSW indexes above 2,000
dimensions and iterative index scans under filters. And a server without pgvector at all.

The models are small randomly initialised Qwen3s built here; PGlite takes no COPY FROM STDIN,
so the rows are loaded by INSERT (`load`), as pgkb's writer would leave them.
"""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import bindparam, event, func, insert, text

from embedding import load_embedder
from pgkb.settings import Settings
from retrieval import KnowledgeBase
from retrieval.search import CANDIDATES
from store import Store, StoreError, hnsw_index_name
from store.tables import chunks, documents
from tests import pglite

WORDS = "record ledger invoice payment holiday contract turbine schedule claim travel of the and".split()
QUERY = "ledger record"


@pytest.fixture(scope="module")
def servers():
    with pglite.serve() as urls:
        yield urls


@pytest.fixture(scope="module")
def settings(servers, tmp_path_factory) -> Settings:
    return Settings(database_url=servers["vector"], data_dir=tmp_path_factory.mktemp("unused-data-dir"))


def random_qwen3(folder, hidden_size: int):
    """A one-layer Qwen3 with random weights and a word-level tokenizer over WORDS; its folder
    name makes pgkb run it with Qwen3-Embedding's rules (last-token pooling, query instruction)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

    vocab = {"<|endoftext|>": 0, "<|im_end|>": 1, "[UNK]": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                            unk_token="[UNK]").save_pretrained(folder)
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=len(vocab), hidden_size=hidden_size, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         max_position_embeddings=512, initializer_range=0.2)
    Qwen3Model(config).save_pretrained(folder)
    return load_embedder(str(folder), device="cpu", precision="float32")


def load(store: Store, collection, key: str, texts: list[str], vectors: np.ndarray, page: int = 1) -> None:
    """One document and its chunks, by INSERT (PGlite has no COPY FROM STDIN)."""
    with store.engine.begin() as conn:
        document_id = conn.execute(insert(documents).values(
            collection_id=collection.id, key=key, path=f"/docs/{key}", sha256="0" * 64, size_bytes=1,
            media_type="text/plain", title=key, metadata={}, pii_counts={}, status="ingested",
        ).returning(documents.c.id)).scalar_one()
        conn.execute(insert(chunks).values(tsv=func.to_tsvector("english", bindparam("words"))), [
            dict(collection_id=collection.id, document_id=document_id, ordinal=i, text=t, words=t,
                 section_path=[key], page_start=page, page_end=page, element_types=["NarrativeText"],
                 token_count=len(t.split()), content_hash=f"{key}-{i}", metadata={}, embedding=vector)
            for i, (t, vector) in enumerate(zip(texts, np.asarray(vectors, dtype=np.float32)))
        ])


def unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


def recorded_statements(engine) -> list[tuple[str, object]]:
    """Every statement pgkb sends through `engine` from now on, with its parameters."""
    sent: list[tuple[str, object]] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, statement, parameters, context, many: sent.append((statement, parameters)))
    return sent


def session_settings(sent: list[tuple[str, object]]) -> dict[str, str]:
    """The settings a search gave its connection (set_config calls), by name."""
    found = {}
    for statement, parameters in sent:
        if statement.startswith("SELECT set_config("):
            for i in range(statement.count("set_config(")):
                found[parameters[f"name{i}"]] = parameters[f"value{i}"]
    return found


def test_migrations_run_and_pgvector_0_8_is_detected(settings):
    config = Config()
    config.set_main_option("script_location", str(files("migrations")))
    store = Store.open(settings)
    try:
        assert store.pgvector_version >= (0, 8) and store.has_iterative_scans
        with store.engine.connect() as conn:
            assert "PostgreSQL 18" in conn.execute(text("SELECT version()")).scalar()
            assert (conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                    == ScriptDirectory.from_config(config).get_current_head())
    finally:
        store.close()


def test_a_collection_above_2000_dims_gets_a_halfvec_index_that_searches_use(settings, tmp_path):
    embedder = random_qwen3(tmp_path / "Qwen3-Embedding-random-2560", hidden_size=2560)
    store = Store.open(settings)
    collection = store.collection("wide", embedder.space.to_dict())
    assert (collection.dims, collection.vector_type) == (2560, "halfvec")
    with store.engine.connect() as conn:
        definition = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                                  {"name": hnsw_index_name(collection.id)}).scalar()
    assert "USING hnsw (((embedding)::halfvec(2560)) halfvec_cosine_ops)" in definition
    texts = [" ".join(np.random.default_rng(i).choice(WORDS, 6)) for i in range(20)]
    load(store, collection, "ledger.txt", texts, embedder.embed_documents(texts))

    with KnowledgeBase(settings, collection="wide") as kb:
        query = "holiday travel claim"
        load(store, collection, "answer.txt", ["the one chunk whose vector is the query's"],
             kb.embedder.embed_queries([query]))
        sent = recorded_statements(kb.store.engine)
        hits = kb.search(query, k=3, mode="vector")
        assert hits[0].document_key == "answer.txt" and hits[0].vector_score == pytest.approx(1.0, abs=2e-3)
        assert [h.vector_rank for h in hits] == [1, 2, 3]
        # On 21 rows the planner may prefer a plain scan; it must be able to take the index.
        search_sql, parameters = sent[-1]
        with kb.store.engine.begin() as conn:
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + search_sql, parameters).scalars())
    store.close()
    assert f"Index Scan using {hnsw_index_name(collection.id)}" in plan



@pytest.fixture(scope="module")
def ledgers(settings, tmp_path_factory) -> tuple[str, set[str]]:
    """5,000 chunks in 20 ledgers: the 10 wanted ones on page 2, pointing away from QUERY's
    vector; the others on page 1, towards it. A filter on page 2 lets half the chunks through,
    so the planner takes the HNSW index, whose nearest chunks the filter all turns away."""
    embedder = random_qwen3(tmp_path_factory.mktemp("models") / "Qwen3-Embedding-random-32", hidden_size=32)
    query_vector = embedder.embed_queries([QUERY])[0]
    store = Store.open(settings)
    collection = store.collection("ledgers", embedder.space.to_dict())
    rng = np.random.default_rng(7)
    wanted = set()
    for d in range(20):
        direction = -1 if d % 2 else 1
        vectors = unit(direction * query_vector + 0.3 * rng.normal(size=(250, collection.dims)))
        key = f"ledger{d:02}.txt"
        load(store, collection, key, [f"record {i} of ledger {d}" for i in range(250)], vectors,
             page=2 if direction < 0 else 1)
        if direction < 0:
            wanted.add(key)
    with store.engine.begin() as conn:
        conn.execute(text("ANALYZE"))  # as autovacuum would on a server (PGlite runs none)
    store.close()
    return collection.name, wanted


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
@pytest.mark.parametrize("exact", [None, False])  # the planner's choice, and the index asked for
def test_a_filtered_query_scans_the_index_iteratively_and_returns_k_hits(settings, ledgers, mode, exact):
    name, wanted = ledgers
    with KnowledgeBase(settings, collection=name) as kb:
        sent = recorded_statements(kb.store.engine)
        hits = kb.search(QUERY, k=10, mode=mode, exact=exact, filters={"page": 2})
        assert len(hits) == 10 and {h.document_key for h in hits} <= wanted
        scan = session_settings(sent)
        assert scan["hnsw.iterative_scan"] == "relaxed_order"
        assert scan["enable_indexscan"] == "on"  # no fall back to an exact scan

        # The same statement without iterative scans finds none of the wanted chunks among the
        # index's ef_search nearest: the iterative scan is what found them.
        search_sql, parameters = sent[-1]
        found = {}
        for iterative in ("off", "relaxed_order"):
            with kb.store.engine.begin() as conn:
                for name, value in scan.items():
                    conn.exec_driver_sql(f"SET LOCAL {name} = {value}")
                conn.exec_driver_sql(f"SET LOCAL hnsw.iterative_scan = {iterative}")
                # A small ef_search, and the index whatever the planner thinks: without
                # iterative scans, the index's 100 nearest are all turned away by the filter.
                conn.exec_driver_sql("SET LOCAL hnsw.ef_search = 100")
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                best = conn.exec_driver_sql(search_sql, parameters).first()
                found[iterative] = best.vector_found if best else 0
    assert found == {"off": 0, "relaxed_order": CANDIDATES}


def test_a_server_without_pgvector_is_told_how_to_get_it(servers, tmp_path):
    plain = Settings(database_url=servers["plain"], data_dir=tmp_path)
    with pytest.raises(StoreError, match=r"no pgvector extension.*install it"):
        Store.open(plain)
