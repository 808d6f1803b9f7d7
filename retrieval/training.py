"""Training data for fine-tuning the embedding model (`pgkb training-data export`): rows of a
query, a chunk that answers it and chunks that do not, as JSON Lines in the shape
sentence-transformers' datasets take:

    {"anchor": "...", "positive": "...", "negative_1": "...", ..., "negative_N": "..."}

Every line has the same N negatives, so `datasets.load_dataset("json", data_files=...)` reads
the file and MultipleNegativesRankingLoss takes its columns in order. The rows come from

- feedback (store.feedback): a query's "good" and "right" chunks are its positives, one row
  each; its "bad" hits are that row's first negatives;
- label-free pairs drawn from the collection (seeded): a chunk's distinctive section heading
  as the query and the chunk (the heading taken off its start) as the positive, or one of its
  sentences taken out of it as the query and the rest of the chunk as the positive.

The other negatives are hard ones, mined from the collection's own hybrid search for the
query: its best hits, passing over the query's positives, chunks of the positive's section
(which likely answer too), near copies of the positive and chunks holding the query itself. A
row for which not enough negatives are left is not written. Every text is a chunk's text as
stored, masked at ingest; a feedback query was masked when it was recorded.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import select

from pgkb.errors import ConfigurationError, QueryError
from pgkb.settings import Settings
from store import JudgedChunk
from store.tables import chunks, documents

from .evaluation import DISTINCTIVE_HEADING_CHUNKS, is_reasonable_sentence, sentence_spans, word_count
from .search import MAX_K, KnowledgeBase

log = logging.getLogger(__name__)

# The most negatives a row may have, and label-free rows an export may draw.
MAX_NEGATIVES = 100
MAX_LABEL_FREE = 1_000_000
# Hits searched for each row's negatives beyond the ones it needs: room for those passed over.
MINED_SPARE = 20
# Two texts are near copies when this share of the shorter one's 3-character pieces are in the
# other: a chunk repeated in two files, a version of it, or a part of it.
NEAR_COPY = 0.8
# A heading is a query when it says this much (in words; two CJK characters count as one):
# "Purpose" or "概述" could head any section.
HEADING_WORDS = 2
# What is left of a chunk once a sentence is taken out of it must say this much to be its positive.
REST_WORDS = 6
# Chunk texts read from the database at a time while drawing label-free pairs.
DRAW_BATCH = 256


@dataclass(frozen=True)
class Passage:
    """A chunk's text and where it sits."""

    chunk_id: int
    text: str
    document_key: str
    section_path: tuple[str, ...]

    @property
    def section(self) -> tuple[str, tuple[str, ...]]:
        return self.document_key, self.section_path


@dataclass(frozen=True)
class Pair:
    """A query and a chunk that answers it, before its negatives are mined."""

    anchor: str
    positive: Passage
    negatives: tuple[str, ...] = ()  # known ones (feedback's bad hits), before any mined
    answers: frozenset[int] = frozenset()  # chunks that answer the query too: never its negatives


def export_training_data(settings: Settings, collection: str, path: str | os.PathLike[str], *, negatives: int = 3,
                         label_free: int = 0, seed: int = 0) -> int:
    """Write the collection's training rows to the JSON Lines file `path` (replaced whole, once
    written): one per feedback positive, then up to `label_free` label-free ones drawn with
    `seed` (at most one a chunk); each with exactly `negatives` negatives. Returns how many
    rows were written."""
    _check_number("negatives", negatives, MAX_NEGATIVES)
    _check_number("label_free", label_free, MAX_LABEL_FREE)
    counts: Counter = Counter()
    with KnowledgeBase(settings, collection=collection) as kb, _replaced(Path(path)) as out:
        for pair in feedback_pairs(kb.store.judged_chunks(kb.collection.name)):
            counts["feedback" if _write_row(out, kb, pair, negatives) else "left out"] += 1
        if label_free:
            for pair in label_free_pairs(kb, seed):
                counts["label-free" if _write_row(out, kb, pair, negatives) else "left out"] += 1
                if counts["label-free"] == label_free:
                    break
    if counts["left out"]:
        log.warning("%d training row(s) left out: the search found fewer than %d negatives for them",
                    counts["left out"], negatives)
    return counts["feedback"] + counts["label-free"]


def feedback_pairs(judged: list[JudgedChunk]) -> list[Pair]:
    """A pair for each chunk judged good or right for a query, with the query's bad hits
    (those no one judged good or right for it) as its first negatives."""
    by_query: dict[str, list[JudgedChunk]] = {}
    for row in judged:
        by_query.setdefault(row.query, []).append(row)
    pairs = []
    for query, rows in by_query.items():
        positives = {row.chunk_id: row for row in rows if row.verdict in ("good", "right")}
        bad = {row.chunk_id: row.text for row in rows if row.verdict == "bad" and row.chunk_id not in positives}
        for row in positives.values():
            passage = Passage(row.chunk_id, row.text, row.document_key, row.section_path)
            pairs.append(Pair(query, passage, tuple(bad.values()), frozenset(positives)))
    return pairs


def label_free_pairs(kb: KnowledgeBase, seed: int = 0) -> Iterator[Pair]:
    """Pairs from the collection's chunks, drawn in an order `seed` fixes, for as long as the
    caller takes them: for each chunk, its heading as the query where that is distinctive (few
    chunks under it) and says enough, or a sentence of reasonable length taken out of it,
    choosing at random where both are there. Each heading and sentence is a query once."""
    rng = random.Random(seed)
    with kb.store.engine.connect() as conn:
        outline = conn.execute(select(chunks.c.id, chunks.c.section_path)
                               .where(chunks.c.collection_id == kb.collection.id).order_by(chunks.c.id)).all()
    under: dict[str, set[int]] = {}
    for chunk_id, section_path in outline:
        if section_path:
            under.setdefault(section_path[-1].strip(), set()).add(chunk_id)
    order = [chunk_id for chunk_id, _ in outline]
    rng.shuffle(order)
    used: set[str] = set()
    for start in range(0, len(order), DRAW_BATCH):
        for passage in _passages(kb, order[start:start + DRAW_BATCH]):
            options = [pair for pair in (_heading_pair(passage, under, used), _sentence_pair(passage, rng, used))
                       if pair is not None]
            if options:
                pair = rng.choice(options)
                used.add(pair.anchor)
                yield pair


def _heading_pair(passage: Passage, under: dict[str, set[int]], used: set[str]) -> Pair | None:
    """The chunk's heading as the query, the chunk as the positive: without the heading where
    its text starts with it (as the chunker writes it), or the pair would teach only that a
    text matches its own first words."""
    heading = passage.section_path[-1].strip() if passage.section_path else ""
    chunk_ids = under.get(heading, set())
    if (heading in used or len(chunk_ids) > DISTINCTIVE_HEADING_CHUNKS or word_count(heading) < HEADING_WORDS
            or not any(c.isalpha() for c in heading)):
        return None
    rest = passage.text.removeprefix(heading).strip()
    if word_count(rest) < REST_WORDS:
        return None
    return Pair(heading, Passage(passage.chunk_id, rest, passage.document_key, passage.section_path),
                answers=frozenset(chunk_ids))


def _sentence_pair(passage: Passage, rng: random.Random, used: set[str]) -> Pair | None:
    """A sentence out of the chunk as the query, the rest of the chunk (that sentence taken
    out) as the positive."""
    text = passage.text
    candidates = []
    for start, end in sentence_spans(text):
        sentence = " ".join(text[start:end].split())
        rest = (text[:start] + text[end:].lstrip()).strip()
        if is_reasonable_sentence(sentence) and sentence not in used and word_count(rest) >= REST_WORDS:
            candidates.append((sentence, rest))
    if not candidates:
        return None
    sentence, rest = rng.choice(candidates)
    return Pair(sentence, Passage(passage.chunk_id, rest, passage.document_key, passage.section_path),
                answers=frozenset({passage.chunk_id}))


def _passages(kb: KnowledgeBase, chunk_ids: list[int]) -> list[Passage]:
    """The chunks `chunk_ids`, in that order."""
    with kb.store.engine.connect() as conn:
        rows = conn.execute(select(chunks.c.id, chunks.c.text, chunks.c.section_path, documents.c.key)
                            .join(documents, documents.c.id == chunks.c.document_id)
                            .where(chunks.c.id.in_(chunk_ids))).all()
    found = {row.id: Passage(row.id, row.text, row.key, tuple(row.section_path)) for row in rows}
    return [found[chunk_id] for chunk_id in chunk_ids if chunk_id in found]


def _write_row(out: TextIO, kb: KnowledgeBase, pair: Pair, negatives: int) -> bool:
    """Write the pair's row, its negatives mined; False when too few were found for it."""
    found = mine_negatives(kb, pair, negatives)
    if len(found) < negatives:
        return False
    row: dict[str, Any] = {"anchor": pair.anchor, "positive": pair.positive.text}
    row.update({f"negative_{i}": text for i, text in enumerate(found, 1)})
    out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return True


def mine_negatives(kb: KnowledgeBase, pair: Pair, count: int) -> list[str]:
    """Up to `count` texts that do not answer the pair's query: its known negatives first,
    then the best hits of a hybrid search for it that are none of the query's answers, not of
    the positive's section, not near copies of the positive, and do not hold the query."""
    chosen = [text for text in pair.negatives if not near_copies(text, pair.positive.text)][:count]
    if len(chosen) == count:
        return chosen
    try:
        hits = kb.search(pair.anchor, k=min(count + len(pair.answers) + MINED_SPARE, MAX_K))
    except QueryError:  # a stored query search refuses (too many -exclusions): its row is left out
        return chosen
    for hit in hits:
        if (hit.chunk_id in pair.answers or (hit.document_key, hit.section_path) == pair.positive.section
                or hit.text in chosen or near_copies(hit.text, pair.positive.text)
                or _normal(pair.anchor) in _normal(hit.text)):
            continue
        chosen.append(hit.text)
        if len(chosen) == count:
            break
    return chosen


def near_copies(a: str, b: str) -> bool:
    """Whether `a` and `b` are (nearly) the same text, or one is (nearly) part of the other."""
    pieces_a, pieces_b = _pieces(a), _pieces(b)
    shorter = min(len(pieces_a), len(pieces_b))
    return shorter > 0 and len(pieces_a & pieces_b) >= NEAR_COPY * shorter


def _pieces(text: str) -> set[str]:
    normal = _normal(text)
    return {normal[i:i + 3] for i in range(max(len(normal) - 2, 1))} if normal else set()


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def _check_number(name: str, value: int, highest: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= highest:
        raise ConfigurationError(f"{name} must be a whole number from 0 to {highest:,}, not {value!r}")


@contextmanager
def _replaced(path: Path) -> Iterator[TextIO]:
    """A file written in full or not at all: the rows go to FILE.partial, which replaces FILE
    once written; an export that fails leaves FILE as it was."""
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "w", encoding="utf-8") as file:
            yield file
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ConfigurationError(f"cannot write training data to {path}: {exc.strerror}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
