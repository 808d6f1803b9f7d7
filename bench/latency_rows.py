"""The rows and queries of the search latency benchmark (bench/search_latency.py): real prose,
cheaply embedded, at any number of chunks.

The rows: documents of `per_document` chunks, each tagged {"department": "d00".."d99"}, so a
department filter lets 1% of the chunks through. Half the documents, drawn at random, are
English, the other half Chinese. Chunk texts are real prose: a piece of one to three sentences
of a DBpedia abstract, or of a CMRC 2018 paragraph of Chinese Wikipedia, followed by a piece of
another of the same language, so that 100,000 texts differ although the corpora are small.
Embedding 100,000 texts on a CPU takes too long, so only the abstracts and paragraphs are
embedded with the real model (a few thousand, cached), and a chunk's vector is the normalised
mixture of its two sources' vectors, in proportion to their characters, plus a little noise:
clustered like real data, and near the text it stands for.

The queries, half English and half Chinese, taken in turn: the English set's own queries and
the Chinese set's training questions (so its test questions stay unseen), then sentences of
the corpora cut to a query's length.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from embedding import Embedder

DEPARTMENTS = 100          # a department filter lets 1 / DEPARTMENTS of the chunks through
CHINESE_SHARE = 0.5        # of the documents, and of the queries
NOISE = 0.01               # standard deviation, per dimension, of the noise in a mixed vector
# The warm-up: five times as many queries as are timed, other ones (the caches of a server
# that has been answering for a while).
WARMUP_SEED, WARMUP_FACTOR = 99, 5

T = TypeVar("T")

@dataclass(frozen=True)
class Language:
    name: str
    sentence_end: str     # a regular expression: where one sentence ends and the next begins
    separator: str        # what joins two sentences, or two pieces
    query_length: int     # a query cut from a sentence keeps this many words (Chinese: characters)

    def cut(self, sentence: str) -> str:
        """The start of a sentence, as long as a query."""
        words = sentence.split() if self.separator else list(sentence)
        return self.separator.join(words[:self.query_length])


ENGLISH = Language("English", r"(?<=[.!?])\s+", " ", 12)
CHINESE = Language("Chinese", r"(?<=[。！？])", "", 16)  # Chinese sentences end without a space


@dataclass(frozen=True)
class Abstract:
    """A DBpedia abstract or a CMRC 2018 paragraph: what chunk texts are cut from."""

    title: str
    text: str
    sentences: tuple[str, ...]
    language: Language

    @property
    def embedding_text(self) -> str:
        return "\n\n".join(part for part in (self.title, self.text) if part)


@dataclass(frozen=True)
class Query:
    text: str
    language: str


@dataclass
class Rows:
    """What both contenders load: `per_document` consecutive rows make one document."""

    texts: list[str]
    titles: list[str]          # of the abstract a chunk's text starts in: its section heading (or "")
    vectors: np.ndarray        # float32 [n, dims], L2-normalised
    per_document: int

    @property
    def documents(self) -> int:
        return len(self.texts) // self.per_document

    def document_rows(self, document: int) -> range:
        return range(document * self.per_document, (document + 1) * self.per_document)

    def metadata(self, document: int) -> dict:
        return {"department": f"d{document % DEPARTMENTS:02d}"}


def read_abstracts(path: Path, limit: int | None, language: Language) -> list[Abstract]:
    """The first `limit` entries of a BEIR corpus (all of them: None) that hold a sentence."""
    abstracts = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            entry = json.loads(line)
            sentences = tuple(s.strip() for s in re.split(language.sentence_end, entry["text"].strip()) if s.strip())
            if sentences:
                abstracts.append(Abstract(entry.get("title", ""), entry["text"], sentences, language))
            if len(abstracts) == limit:
                break
    return abstracts


def abstract_vectors(abstracts: list[Abstract], embedder: Embedder, cache_dir: Path) -> np.ndarray:
    """The abstracts embedded with the real model; cached, so every run mixes the same vectors."""
    digest = hashlib.sha256(embedder.space.model.encode())
    for abstract in abstracts:
        digest.update(abstract.embedding_text.encode())
    cache = cache_dir / f"abstract-vectors-{digest.hexdigest()[:16]}.npy"
    if cache.exists():
        return np.load(cache)
    started = time.perf_counter()
    vectors = embedder.embed_documents([abstract.embedding_text for abstract in abstracts])
    print(f"embedded {len(abstracts)} abstracts in {time.perf_counter() - started:.0f} s", flush=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def sentence_pieces(abstracts: list[Abstract]) -> dict[str, list[tuple[int, str]]]:
    """Every run of one to three consecutive sentences of each abstract, with its abstract's
    index, by language."""
    pieces = defaultdict(list)
    for index, abstract in enumerate(abstracts):
        for size in (1, 2, 3):
            for start in range(len(abstract.sentences) - size + 1):
                text = abstract.language.separator.join(abstract.sentences[start:start + size])
                pieces[abstract.language.name].append((index, text))
    return pieces


def make_rows(abstracts: list[Abstract], vectors: np.ndarray, count: int, per_document: int,
              seed: int = 0) -> Rows:
    """`count` texts, each a piece of one abstract then a piece of another of the same language
    (its document's: CHINESE_SHARE of the documents are Chinese), and their vectors: the two
    abstracts' real vectors mixed by the pieces' shares of characters, plus noise."""
    rng = random.Random(seed)
    pieces = sentence_pieces(abstracts)
    for language_pieces in pieces.values():
        rng.shuffle(language_pieces)
    documents = count // per_document
    chinese = set(rng.sample(range(documents), round(documents * CHINESE_SHARE)))
    used = dict.fromkeys(pieces, 0)  # each language's pieces start a text in turn
    texts, titles = [], []
    mixed = np.empty((count, vectors.shape[1]), dtype=np.float32)
    for row in range(count):
        language = CHINESE if row // per_document in chinese else ENGLISH
        pool = pieces[language.name]
        first, first_text = pool[used[language.name] % len(pool)]
        used[language.name] += 1
        second, second_text = pool[rng.randrange(len(pool))]
        while second == first:
            second, second_text = pool[rng.randrange(len(pool))]
        texts.append(language.separator.join((first_text, second_text)))
        titles.append(abstracts[first].title)
        share = len(first_text) / (len(first_text) + len(second_text))
        mixed[row] = share * vectors[first] + (1 - share) * vectors[second]
    mixed += np.random.default_rng(seed).normal(0, NOISE, mixed.shape).astype(np.float32)
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    return Rows(texts, titles, mixed, per_document)


def asked_questions(queries_file: Path) -> list[str]:
    """The questions of a BEIR queries file, if there is one."""
    if not queries_file.exists():
        return []
    texts = (json.loads(line)["text"] for line in queries_file.open(encoding="utf-8") if line.strip())
    return [text for text in texts if text.strip()]  # a blank question is refused by search


def make_queries(asked: list[str], abstracts: list[Abstract], count: int, seed: int) -> list[str]:
    """The `asked` questions, then the abstracts' sentences cut to a query's length: `count` in all."""
    rng = random.Random(seed)
    queries = asked[:count]
    while len(queries) < count:
        abstract = rng.choice(abstracts)
        query = abstract.language.cut(rng.choice(abstract.sentences))
        if query.strip():  # a sentence of punctuation alone cuts to nothing, which search refuses
            queries.append(query)
    return queries


def timed_and_warmup_queries(asked: list[str], abstracts: list[Abstract],
                             count: int) -> tuple[list[Query], list[str]]:
    """`count` queries to time and WARMUP_FACTOR times as many others to warm up with, all in
    the abstracts' language: the asked questions in a shuffled order (the timed ones first, none
    of them again in the warm-up), then sentences cut to a query's length."""
    asked = random.Random(1).sample(asked, len(asked))
    language = abstracts[0].language.name
    return ([Query(text, language) for text in make_queries(asked, abstracts, count, seed=1)],
            make_queries(asked[count:], abstracts, WARMUP_FACTOR * count, seed=WARMUP_SEED))


def in_turn(first: list[T], second: list[T]) -> list[T]:
    """One of each list in turn, then the rest of the longer one."""
    return [item for pair in itertools.zip_longest(first, second) for item in pair if item is not None]
