"""Issue 28: huge documents, interrupted parses and odd text encodings (items 4, 11 and two low ones).

Real files, the shared embedded PostgreSQL and real `ingest` processes.
"""

from __future__ import annotations

import numpy as np
import pytest

from store import Chunk, DocumentRecord, Store

SPACE = {"model": "test/random", "dims": 8, "pooling": "mean", "normalize": True}
# More than PostgreSQL's protocol allows as parameters of one statement (65,535).
OVER_PARAMETER_LIMIT = 70_000


@pytest.fixture
def store(settings):
    store = Store.open(settings)
    yield store
    store.close()


def test_a_document_of_more_chunks_than_a_statement_takes_parameters_is_written_and_found(store, settings):
    collection = store.collection(settings.collection, SPACE)
    count = OVER_PARAMETER_LIMIT
    chunks = [Chunk("big.txt", i, f"line {i}", (), None, None, ("NarrativeText",), 2, f"hash-{i}")
              for i in range(count)]
    vectors = np.random.default_rng(0).normal(size=(count, 8)).astype(np.float32)
    record = DocumentRecord("big.txt", "/docs/big.txt", "0" * 64, 1, None, "text/plain")
    with store.bulk_load(collection) as load:
        store.write_document(collection, record, chunks, vectors)
        # The embedding cache's lookup of every chunk of such a document (what failed).
        found = store.stored_vectors(collection, (c.content_hash for c in chunks))
        assert len(found) == count and np.allclose(found["hash-7"], vectors[7])
        load.deferred = False  # no HNSW index: building it over these rows takes longer than the rest
    # Pruning more files than a statement takes parameters.
    gone = ["big.txt", *(f"gone-{i}.txt" for i in range(OVER_PARAMETER_LIMIT))]
    assert store.delete_documents(collection, gone) == 1
    assert store.stored_vectors(collection, (c.content_hash for c in chunks)) == {}
