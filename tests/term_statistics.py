"""BM25 worked out in the test, independently of the store's statistics and the search SQL:
from each chunk's words as its tsvector holds them, counted here in Python."""

from __future__ import annotations

import math
from collections import Counter

from sqlalchemy import text

from retrieval.query import parse_query


def chunk_words(conn, collection: str) -> dict[int, Counter]:
    """Each chunk's words (lexemes) with their occurrences, by chunk id."""
    rows = conn.execute(text(
        "SELECT k.id, w.lexeme, cardinality(w.positions) FROM chunks k JOIN collections c ON c.id = k.collection_id, "
        "unnest(k.tsv) AS w WHERE c.name = :name"), {"name": collection}).all()
    ids = conn.execute(text("SELECT k.id FROM chunks k JOIN collections c ON c.id = k.collection_id "
                            "WHERE c.name = :name"), {"name": collection}).scalars().all()
    words = {chunk_id: Counter() for chunk_id in ids}
    for chunk_id, lexeme, count in rows:
        words[chunk_id][lexeme] = count
    return words


def recounted_statistics(conn, collection: str) -> tuple[tuple[int, int], dict[str, int]]:
    """(chunks, total length) and each word's chunk count, recounted from the chunks."""
    words = chunk_words(conn, collection)
    frequencies = Counter(lexeme for counts in words.values() for lexeme in counts)
    return (len(words), sum(sum(counts.values()) for counts in words.values())), dict(frequencies)


def stored_statistics(conn, collection: str) -> tuple[tuple[int, int], dict[str, int]]:
    """The statistics the store keeps for the collection."""
    totals = conn.execute(text(
        "SELECT s.chunk_count, s.term_count FROM collection_statistics s JOIN collections c ON c.id = s.collection_id "
        "WHERE c.name = :name"), {"name": collection}).first()
    frequencies = dict(conn.execute(text(
        "SELECT s.lexeme, s.chunk_count FROM term_statistics s JOIN collections c ON c.id = s.collection_id "
        "WHERE c.name = :name"), {"name": collection}).all())
    return (tuple(totals) if totals else (0, 0)), frequencies


def assert_statistics_exact(engine, collection: str) -> None:
    with engine.connect() as conn:
        (chunks, length), frequencies = stored_statistics(conn, collection)
        (recounted_chunks, recounted_length), recounted = recounted_statistics(conn, collection)
    assert (chunks, length) == (recounted_chunks, recounted_length)
    assert {w: n for w, n in frequencies.items() if n} == recounted
    assert all(n > 0 for n in frequencies.values()), "words no chunk holds are kept"


def bm25_by_hand(conn, collection: str, query: str, k1: float, b: float) -> dict[int, float]:
    """Every chunk's BM25 score for `query` (Lucene's IDF), from the chunks' words alone."""
    keyword_query = parse_query(query)
    lexemes = set(conn.execute(text(
        "SELECT tsvector_to_array(to_tsvector('english', :latin) || to_tsvector('simple', :cjk))"),
        {"latin": keyword_query.latin, "cjk": keyword_query.cjk}).scalar())
    words = chunk_words(conn, collection)
    count = len(words)
    average = sum(sum(c.values()) for c in words.values()) / count
    frequency = Counter(lexeme for counts in words.values() for lexeme in counts)
    scores = {}
    for chunk_id, counts in words.items():
        length = sum(counts.values())
        matched = lexemes & counts.keys()
        if matched:
            scores[chunk_id] = sum(
                math.log(1 + (count - frequency[w] + 0.5) / (frequency[w] + 0.5))
                * counts[w] * (k1 + 1) / (counts[w] + k1 * (1 - b + b * length / average))
                for w in matched)
    return scores
