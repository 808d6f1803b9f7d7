"""The query embedding cache, with the real default model: a repeated query skips the model."""

import dataclasses
import sys
import threading
import time

import numpy as np
import pytest

from embedding import EmbeddingSpace
from embedding.query_cache import DEFAULT_MAX_QUERIES, QueryCache

QUERY = "how do I claim travel expenses"


@pytest.fixture
def counted(embedder, monkeypatch):
    """The session's embedder with an empty query cache of its own; returns the lists of texts
    that reached the model, one list per model call."""
    calls: list[list[str]] = []
    model = embedder._embed

    def embed(texts):
        calls.append(list(texts))
        return model(texts)

    monkeypatch.setattr(embedder, "_embed", embed)
    monkeypatch.setattr(embedder, "query_cache", QueryCache())
    return calls


def test_a_repeated_query_does_not_reach_the_model(embedder, counted):
    assert embedder.query_cache.max_queries == DEFAULT_MAX_QUERIES
    first = embedder.embed_queries([QUERY])
    assert counted == [[QUERY]]
    again = embedder.embed_queries([QUERY])
    assert counted == [[QUERY]]
    np.testing.assert_array_equal(again, first)
    assert again.shape == (1, embedder.space.dims) and again.dtype == np.float32

    # In a batch, only the new query is embedded, once however often it appears.
    mixed = embedder.embed_queries([QUERY, "parking at the office", QUERY, "parking at the office"])
    assert counted == [[QUERY], ["parking at the office"]]
    np.testing.assert_array_equal(mixed[0], first[0])
    np.testing.assert_array_equal(mixed[2], first[0])
    np.testing.assert_array_equal(mixed[1], mixed[3])
    # What the cache gave is what the model gives.
    np.testing.assert_allclose(mixed[:2], embedder.embed_documents([QUERY, "parking at the office"]), atol=1e-6)


def test_callers_cannot_change_what_the_cache_hands_out(embedder, counted):
    vectors = embedder.embed_queries([QUERY])
    expected = vectors.copy()
    vectors[:] = 0.0
    np.testing.assert_array_equal(embedder.embed_queries([QUERY]), expected)
    kept = embedder.query_cache.get(embedder.space, QUERY)
    assert not kept.flags.writeable
    with pytest.raises(ValueError):
        kept[0] = 1.0


def test_other_texts_and_other_spaces_are_other_entries(embedder, counted, monkeypatch):
    embedder.embed_queries(["Expenses"])
    embedder.embed_queries(["expenses"])
    assert counted == [["Expenses"], ["expenses"]]
    plain = embedder.embed_queries(["expenses"])

    # The same words in a space with a query instruction: another vector, from the model.
    instructed = dataclasses.replace(embedder.space, query_instruction="query: ")
    monkeypatch.setattr(embedder, "space", instructed)
    with_instruction = embedder.embed_queries(["expenses"])
    assert counted[-1] == ["query: expenses"]
    assert not np.allclose(with_instruction, plain)
    assert len(embedder.query_cache) == 3


def test_the_bound_holds_and_the_least_recently_used_query_goes_first(embedder, counted, monkeypatch):
    monkeypatch.setattr(embedder, "query_cache", QueryCache(max_queries=3))
    for query in ["trains", "flights", "hotels"]:
        embedder.embed_queries([query])
    embedder.embed_queries(["trains"])  # used again: now the most recent
    embedder.embed_queries(["taxis"])  # one over the bound: "flights" goes
    assert len(embedder.query_cache) == 3
    counted.clear()
    embedder.embed_queries(["trains"])
    embedder.embed_queries(["flights"])
    assert counted == [["flights"]]


def test_threads_share_the_cache_safely():
    """Threads reading and writing a small cache for a second: no error, the bound held, every
    vector the one stored for its query."""
    cache = QueryCache(max_queries=12)
    # A real space: its hash is Python code, so threads also take turns inside the cache's dict operations.
    space = EmbeddingSpace("a model", 4, "mean", True, None, 128)
    errors = []
    until = time.monotonic() + 1.0

    def work(worker: int) -> None:
        i = worker * 7
        try:
            while time.monotonic() < until and not errors:
                i += 1
                number = i % 20
                vector = cache.get(space, f"query {number}")
                if vector is None:
                    cache.put(space, f"query {number}", np.full(4, float(number), dtype=np.float32))
                elif vector[0] != number:
                    errors.append(f"query {number} got {vector}")
        except Exception as exc:  # without the lock: a KeyError, a query evicted between get and move
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns between any two bytecodes, not every 5 ms
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch_interval)
    assert not errors, errors[:5]
    assert len(cache) <= 12
