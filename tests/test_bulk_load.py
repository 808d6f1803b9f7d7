"""A load into an empty collection builds its HNSW index once, at the end."""

import numpy as np
import pytest
from sqlalchemy import func, select, text

from store import Chunk, DocumentRecord, hnsw_index_name

SPACE = {"model": "test/random", "dims": 8, "pooling": "mean", "normalize": True}


def _write(store, collection, key, count=20, seed=0):
    vectors = np.random.default_rng(seed).normal(size=(count, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [Chunk(key, i, f"chunk {i} of {key}", ("Body",), 1, 1, ("NarrativeText",), 4, f"{key}-{i}")
              for i in range(count)]
    record = DocumentRecord(key, f"/docs/{key}", "0" * 64, 1, None, "text/plain", key, {})
    store.write_document(collection, record, chunks, vectors)


def _has_index(store, collection) -> bool:
    with store.engine.connect() as conn:
        return conn.execute(select(func.to_regclass(hnsw_index_name(collection.id)))).scalar() is not None


def test_a_load_into_an_empty_collection_builds_the_index_at_the_end(store, settings):
    collection = store.collection(settings.collection, SPACE)
    with store.bulk_load(collection) as load:
        assert load.deferred and not _has_index(store, collection)
        _write(store, collection, "a.txt")
    assert _has_index(store, collection) and load.index_seconds > 0
    # A load into a collection that has rows and its index keeps the index up.
    with store.bulk_load(collection) as load:
        assert not load.deferred and _has_index(store, collection)
        _write(store, collection, "b.txt", seed=1)
    with store.engine.connect() as conn:  # the index holds every row
        conn.execute(text("SET enable_seqscan = off"))
        count = conn.execute(text(
            f"SELECT count(*) FROM (SELECT id FROM chunks WHERE collection_id = {collection.id} "
            f"ORDER BY embedding::vector(8) <=> '[1,0,0,0,0,0,0,0]' LIMIT 100) found")).scalar()
    assert count == 40


def test_a_load_cut_short_leaves_the_build_to_the_next_one(store, settings):
    collection = store.collection(settings.collection, SPACE)
    with pytest.raises(KeyboardInterrupt), store.bulk_load(collection):
        _write(store, collection, "a.txt")
        raise KeyboardInterrupt
    assert not _has_index(store, collection)
    with store.bulk_load(collection) as load:  # rows there, index missing: this one builds it
        assert load.deferred
    assert _has_index(store, collection)


def test_one_load_at_a_time_defers(store, settings):
    collection = store.collection(settings.collection, SPACE)
    with store.bulk_load(collection) as first:
        with store.bulk_load(collection) as second:
            _write(store, collection, "a.txt")
        assert first.deferred and not second.deferred
        assert not _has_index(store, collection)  # the first load builds it
    assert _has_index(store, collection)
