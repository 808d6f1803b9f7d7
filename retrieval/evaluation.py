"""Judging search on a set of queries with known answers: nDCG@10, recall@k, MRR and latency.

A judgment says which documents (by key) or chunks (by id) answer a query, with a grade
(1 = relevant; higher = more relevant, as in BEIR's qrels). Judgments come from a BEIR folder,
a CSV or a JSONL file (`load_judgments`), or from the collection itself (`health_check`).
`evaluate` runs every query in each search mode and scores the rankings; with `rerank=N`,
each mode again with the reranker rescoring its N best hits (a row "hybrid+rerank"...).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import random
import re
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
from sqlalchemy import select

from pgkb.errors import ConfigurationError, StoreError
from store.tables import chunks

from .search import MODES

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .search import KnowledgeBase, Mode

Level = Literal["document", "chunk"]

# The health check draws this many queries unless asked for another number.
HEALTH_QUERIES = 50
# A heading is a query only when at most this many chunks sit under it: one that many
# documents share ("Introduction", "Summary") has no one answer.
DISTINCTIVE_HEADING_CHUNKS = 3
# A sentence is a query when it is this long, in words (two CJK characters count as one):
# shorter ones say too little to have one answer, longer ones are paragraphs.
SENTENCE_WORDS = (6, 40)
# Chunk texts read to find sentences, per sentence wanted: some chunks have none of a
# reasonable length (tables, lists), and reading the whole collection would cost too much.
CHUNKS_READ_PER_SENTENCE = 4

# Sentences end at . ! ? before a space, at Chinese 。！？ (no space follows those), and at
# line ends (a heading or a table row is not part of the next line's sentence).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\n")
# A stretch of text from its first non-space character to its last.
_TRIMMED = re.compile(r"\S(?:.*\S)?", re.DOTALL)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Judged:
    """One query and what answers it: document keys or chunk ids (`level`), each with its grade."""

    query_id: str
    query: str
    relevant: dict[str, int]
    level: Level = "document"


class JudgmentsError(ConfigurationError):
    """Judgments that cannot be read; the message names the file, the line and the field."""


# --- Metrics: of one ranking (document keys or chunk ids, best first) against one query's judgments.

def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """Normalised discounted cumulative gain of the first k results (graded, exponential gain)."""
    dcg = sum((2 ** relevant.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], relevant: dict[str, int], k: int = 100) -> float:
    """The share of the relevant results (grade > 0) among the first k."""
    wanted = {d for d, g in relevant.items() if g > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def reciprocal_rank(ranked: list[str], relevant: dict[str, int]) -> float:
    """1 / the rank of the first relevant result; 0 when none is ranked."""
    for i, d in enumerate(ranked, 1):
        if relevant.get(d, 0) > 0:
            return 1.0 / i
    return 0.0


# --- Results.

@dataclass(frozen=True)
class ModeScores:
    """One search mode over a set of judged queries: metric means and latency percentiles."""

    ndcg_at_10: float
    recall_at_10: float
    recall_at_k: float
    mrr: float
    latency_p50_ms: float
    latency_p95_ms: float
    queries: int

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Evaluation:
    """Scores per mode ("vector", "keyword", "hybrid", and "hybrid+rerank"... where reranked) for
    one collection; recall_at_k is at `k`."""

    collection: str
    k: int
    modes: dict[str, ModeScores]

    def to_dict(self) -> dict:
        return {"collection": self.collection, "k": self.k,
                "modes": {mode: scores.to_dict() for mode, scores in self.modes.items()}}


# --- Evaluating.

def evaluate(kb: KnowledgeBase, judged: Sequence[Judged], modes: Sequence[str] = MODES, k: int = 100,
             exact: bool | None = None, rerank: int | None = None) -> Evaluation:
    """Search every judged query in each mode, k results, and score the rankings.

    Document-keyed judgments rank documents (each document's best chunk, `group_by="document"`);
    chunk-id judgments rank chunks. `exact` as in `KnowledgeBase.search`. `rerank`: each mode
    is also scored with the reranker rescoring its `rerank` best hits (at least k and 10), as
    the mode's name followed by "+rerank".
    """
    if not judged:
        raise JudgmentsError("no judged queries to evaluate")
    if rerank is not None and rerank < _depth(k):
        raise ConfigurationError(f"--rerank {rerank} rescores fewer hits than the {_depth(k)} ranked per query: "
                                 f"give --rerank {_depth(k)} or more, or a smaller --k")
    scores: dict[str, ModeScores] = {}
    for mode in modes:
        scores[mode] = _evaluate_mode(kb, judged, mode, k, exact)
        if rerank is not None:
            scores[f"{mode}+rerank"] = _evaluate_mode(kb, judged, mode, k, exact, rerank)
    return Evaluation(kb.collection.name, k, scores)


def _depth(k: int) -> int:
    """Hits ranked per query: nDCG@10 and recall@10 need ten even when k is smaller."""
    return max(k, 10)


def _evaluate_mode(kb: KnowledgeBase, judged: Sequence[Judged], mode: str, k: int,
                   exact: bool | None, rerank: int | None = None) -> ModeScores:
    depth = _depth(k)
    search_mode = cast("Mode", mode)  # a name from the command line: KnowledgeBase.search refuses others

    def ranking(j: Judged) -> list[str]:
        if j.level == "document":
            return [h.document_key for h in kb.search(j.query, k=depth, mode=search_mode, exact=exact,
                                                      group_by="document", rerank=rerank)]
        return [str(h.chunk_id) for h in kb.search(j.query, k=depth, mode=search_mode, exact=exact, rerank=rerank)]

    # Untimed: the first search of a mode builds its SQL statement. Then each query is embedded
    # afresh, as a new question would be, not found in the query cache an earlier mode filled.
    ranking(judged[0])
    kb.embedder.query_cache.clear()
    rankings, latencies = [], []
    for j in judged:
        started = time.perf_counter()
        rankings.append(ranking(j))
        latencies.append((time.perf_counter() - started) * 1000)
    return ModeScores(
        ndcg_at_10=_mean(ndcg_at(r, j.relevant, 10) for r, j in zip(rankings, judged)),
        recall_at_10=_mean(recall_at(r, j.relevant, 10) for r, j in zip(rankings, judged)),
        recall_at_k=_mean(recall_at(r, j.relevant, k) for r, j in zip(rankings, judged)),
        mrr=_mean(reciprocal_rank(r[:k], j.relevant) for r, j in zip(rankings, judged)),
        latency_p50_ms=float(np.percentile(latencies, 50)),
        latency_p95_ms=float(np.percentile(latencies, 95)),
        queries=len(judged),
    )


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# --- Health check: queries drawn from the collection itself.

def health_check(kb: KnowledgeBase, queries: int = HEALTH_QUERIES, seed: int = 0,
                 modes: Sequence[str] = MODES, k: int = 100, rerank: int | None = None) -> Evaluation:
    """Search for the collection's own headings and sentences, each answered by the chunks it
    came from. Needs no judgments: near-zero scores in a mode point at broken ingestion (text
    not indexed) or a wrong model (vectors that find nothing), not at hard questions."""
    judged = collection_queries(kb, queries, seed)
    if not judged:
        raise StoreError(f"collection {kb.collection.name!r} has no headings or sentences to draw queries from")
    return evaluate(kb, judged, modes, k, rerank=rerank)


def collection_queries(kb: KnowledgeBase, count: int, seed: int = 0) -> list[Judged]:
    """Up to `count` chunk-level queries from the collection, the same ones for the same seed and
    collection: about half distinctive section headings, the rest sentences out of chunk texts."""
    rng = random.Random(seed)
    headings = _heading_queries(kb, count // 2, rng)
    return headings + _sentence_queries(kb, count - len(headings), rng)


def _heading_queries(kb: KnowledgeBase, count: int, rng: random.Random) -> list[Judged]:
    """Headings (a chunk's innermost section) that few chunks sit under; those chunks answer."""
    with kb.store.engine.connect() as conn:
        rows = conn.execute(select(chunks.c.id, chunks.c.section_path)
                            .where(chunks.c.collection_id == kb.collection.id).order_by(chunks.c.id)).all()
    under: dict[str, list[str]] = defaultdict(list)
    for chunk_id, section_path in rows:
        if section_path and section_path[-1].strip():
            under[section_path[-1].strip()].append(str(chunk_id))
    distinctive = [heading for heading, ids in under.items()
                   if len(ids) <= DISTINCTIVE_HEADING_CHUNKS and any(c.isalpha() for c in heading)]
    picked = rng.sample(distinctive, min(count, len(distinctive)))
    return [Judged(f"heading-{i}", heading, dict.fromkeys(under[heading], 1), "chunk")
            for i, heading in enumerate(picked, 1)]


def _sentence_queries(kb: KnowledgeBase, count: int, rng: random.Random) -> list[Judged]:
    """One sentence of reasonable length from each of `count` chunks drawn at random."""
    with kb.store.engine.connect() as conn:
        ids = conn.execute(select(chunks.c.id).where(chunks.c.collection_id == kb.collection.id)
                           .order_by(chunks.c.id)).scalars().all()
        drawn = rng.sample(ids, min(len(ids), count * CHUNKS_READ_PER_SENTENCE))
        texts = dict(conn.execute(select(chunks.c.id, chunks.c.text).where(chunks.c.id.in_(drawn))).all())
    judged: list[Judged] = []
    used: set[str] = set()
    for chunk_id in drawn:
        if len(judged) == count:
            break
        candidates = [s for s in split_sentences(texts[chunk_id]) if is_reasonable_sentence(s) and s not in used]
        if candidates:
            sentence = rng.choice(candidates)
            used.add(sentence)
            judged.append(Judged(f"sentence-{len(judged) + 1}", sentence, {str(chunk_id): 1}, "chunk"))
    return judged


def split_sentences(text: str) -> list[str]:
    """Sentences of English-like and Chinese text, whitespace made single spaces."""
    return [" ".join(text[start:end].split()) for start, end in sentence_spans(text)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Where each sentence of `text` starts and ends, the whitespace around it left out."""
    bounds = [0, *(bound for end in _SENTENCE_END.finditer(text) for bound in end.span()), len(text)]
    trimmed = (_TRIMMED.search(text, start, end) for start, end in zip(bounds[::2], bounds[1::2]))
    return [sentence.span() for sentence in trimmed if sentence]


def word_count(text: str) -> int:
    """Words of English-like text, two CJK characters counting as one."""
    cjk = len(_CJK.findall(text))
    return len(_CJK.sub(" ", text).split()) + cjk // 2


def is_reasonable_sentence(sentence: str) -> bool:
    """Long enough to have one answer, short enough not to be a paragraph (SENTENCE_WORDS)."""
    return SENTENCE_WORDS[0] <= word_count(sentence) <= SENTENCE_WORDS[1]


# --- Loading judgments.

@dataclass(frozen=True)
class _Answer:
    """One line of a CSV or JSONL judgments file."""

    line: int
    query: str
    answer: str  # a document key or a chunk id
    level: Level
    grade: int


def load_judgments(path: Path, split: str = "test") -> list[Judged]:
    """Judged queries from a BEIR folder (queries of `split`), a .csv or a .jsonl file.

    CSV columns and JSONL fields: `query`; `document` (a document key) or `chunk_id`; `grade`
    (optional, default 1). Lines with the same query text are one query with several answers.
    """
    path = Path(path)
    if not path.exists():
        raise JudgmentsError(f"{path}: no such file or folder")
    if path.is_dir():
        judged = load_beir(path, split)
    elif path.suffix.lower() == ".csv":
        judged = _group(path, _csv_answers(path))
    elif path.suffix.lower() == ".jsonl":
        judged = _group(path, (_answer(path, line, fields) for line, fields in _json_lines(path)))
    else:
        raise JudgmentsError(f"{path}: judgments are a BEIR folder, a .csv or a .jsonl file")
    if not judged:
        raise JudgmentsError(f"{path}: no queries")
    return judged


def load_beir(folder: Path, split: str = "test") -> list[Judged]:
    """Queries and judgments of a BEIR folder (queries.jsonl, qrels/SPLIT.tsv); the corpus is
    what the collection holds, with each corpus `_id` as a document key."""
    queries = _beir_queries(folder / "queries.jsonl")
    extra = folder / f"queries-{split}.jsonl"  # a split's own queries, where the set has them
    if extra.exists():
        queries.update(_beir_queries(extra))
    texts = {query_id: text for query_id, text in queries.items() if text is not None}
    qrels_file = folder / "qrels" / f"{split}.tsv"
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for line, text in _lines(qrels_file)[1:]:  # the first line names the columns
        where = f"{qrels_file}:{line}"
        fields = text.split("\t")
        if len(fields) != 3:
            raise JudgmentsError(f"{where}: expected query-id, corpus-id and score separated by tabs")
        query_id, doc_id, grade = (f.strip() for f in fields)
        if query_id not in queries:
            raise JudgmentsError(f"{where}: query-id {query_id!r} is in no queries file")
        if query_id not in texts:  # its text is empty: left out
            continue
        qrels[query_id][doc_id] = _grade(where, grade)
    return [Judged(q, texts[q], dict(r)) for q, r in qrels.items()]


def _beir_queries(path: Path) -> dict[str, str | None]:
    """Query texts by id; None for a query whose text is empty (published sets have a few),
    which is left out with a warning, and its judgments with it."""
    queries: dict[str, str | None] = {}
    for line, fields in _json_lines(path):
        query_id = _required(path, line, fields, "_id")
        if "text" in fields and not _value(fields, "text"):
            log.warning("%s:%d: query %r has no text; left out", path, line, query_id)
            queries[query_id] = None
        else:
            queries[query_id] = _required(path, line, fields, "text")
    return queries


def _csv_answers(path: Path) -> Iterator[_Answer]:
    reader = csv.DictReader(io.StringIO(_read(path), newline=""))
    columns = reader.fieldnames or []
    if "query" not in columns or not {"document", "chunk_id"} & set(columns):
        raise JudgmentsError(f"{path}:1: the header needs a 'query' column and a 'document' or 'chunk_id' "
                             f"column, not {', '.join(columns) or 'nothing'}")
    for fields in reader:
        yield _answer(path, reader.line_num, fields)


def _answer(path: Path, line: int, fields: dict) -> _Answer:
    query = _required(path, line, fields, "query")
    document, chunk_id = _value(fields, "document"), _value(fields, "chunk_id")
    if bool(document) == bool(chunk_id):
        raise JudgmentsError(f"{path}:{line}: give one of 'document' (a document key) and 'chunk_id', "
                             f"not {'both' if document else 'neither'}")
    grade = _grade(f"{path}:{line}", _value(fields, "grade") or "1")
    return _Answer(line, query, document or chunk_id, "document" if document else "chunk", grade)


def _group(path: Path, answers: Iterator[_Answer]) -> list[Judged]:
    """Answers of the same query text become one query, numbered in order of appearance."""
    by_query: dict[str, list[_Answer]] = defaultdict(list)
    for answer in answers:
        first = by_query[answer.query][:1]
        if first and first[0].level != answer.level:
            raise JudgmentsError(f"{path}:{answer.line}: query {answer.query!r} has a {first[0].level} answer "
                                 f"on line {first[0].line} and a {answer.level} answer here: give one kind")
        by_query[answer.query].append(answer)
    return [Judged(str(number), query, {a.answer: a.grade for a in answers}, answers[0].level)
            for number, (query, answers) in enumerate(by_query.items(), 1)]


def _value(fields: dict, name: str) -> str:
    """A field as text, '' when absent (a CSV line with fewer columns gives None)."""
    value = fields.get(name)
    return "" if value is None else str(value).strip()


def _required(path: Path, line: int, fields: dict, name: str) -> str:
    value = _value(fields, name)
    if not value:
        raise JudgmentsError(f"{path}:{line}: field {name!r} is missing or empty")
    return value


def _grade(where: str, text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text):
        raise JudgmentsError(f"{where}: field 'grade' must be a whole number >= 0, not {text!r}")
    return int(text)


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    for line, text in _lines(path):
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as exc:
            raise JudgmentsError(f"{path}:{line}: not JSON ({exc.msg})") from None
        if not isinstance(fields, dict):
            raise JudgmentsError(f"{path}:{line}: expected a JSON object with named fields")
        yield line, fields


def _lines(path: Path) -> list[tuple[int, str]]:
    """The file's non-blank lines with their numbers (from 1). Split at line feeds only: a JSON
    string may hold other line separators (U+2028) as they are."""
    return [(number, text.rstrip("\r")) for number, text in enumerate(_read(path).split("\n"), 1) if text.strip()]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte order mark, as spreadsheets write, is not text
    except FileNotFoundError:
        raise JudgmentsError(f"{path}: no such file") from None
    except OSError as exc:
        raise JudgmentsError(f"{path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise JudgmentsError(f"{path}: not UTF-8 text (byte {exc.start})") from None
