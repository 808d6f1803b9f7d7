"""Plain BM25, the keyword peer of bench/retrieval_quality.py: bm25s's Lucene variant (k1 1.5,
b 0.75) over the tokenisation the reference figures were measured with. Like the other peers
it runs in a virtualenv of its own (PACKAGES; `setup` makes it), from the repository root:

    VENV/bin/python -m bench.peers.bm25 --request REQUEST.json --rankings RANKINGS.json

REQUEST.json: {"documents": [[id, text], ...], "queries": [text, ...], "k": 100};
RANKINGS.json: {"rankings": [[id, ...] per query]}. Wherever bm25s, PyStemmer and jieba are
installed, `bm25_rankings(documents, queries, k)` gives the same in the caller's process.

Tokens, per text:
- English (a text without Chinese characters): bm25s's own tokenizer, that is lowercase words
  of two or more word characters, its English stop words removed, then PyStemmer's English
  (snowball) stemmer;
- a text with Chinese characters: `jieba.lcut`, which also splits the Latin words in it; tokens
  without a word character (spaces, punctuation) dropped, the rest lowercased and stemmed
  (the stemmer leaves Chinese words as they are).

Only the standard library is imported at the top: pgkb's side imports PACKAGES, `setup` and
CHINESE from here without the peer's packages.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

PACKAGES = ("bm25s", "PyStemmer", "jieba")
K1, B = 1.5, 0.75
CHINESE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")  # CJK ideographs
WORD = re.compile(r"\w")


def setup(venv: Path) -> None:
    """The peer's virtualenv."""
    from bench.peers import make_venv

    make_venv(venv, list(PACKAGES))


def reference_tokenizer() -> Callable[[str], list[str]]:
    """The tokenisation of the reference figures, one text at a time (see the module's docstring)."""
    import logging

    import bm25s
    import jieba
    import Stemmer

    jieba.setLogLevel(logging.WARNING)  # it announces its dictionary loading otherwise
    stemmer = Stemmer.Stemmer("english")

    def tokens(text: str) -> list[str]:
        if CHINESE.search(text):
            return stemmer.stemWords([token.lower() for token in jieba.lcut(text) if WORD.search(token)])
        return bm25s.tokenize(text, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)[0]

    return tokens


def bm25_rankings(documents: list[tuple[str, str]], queries: list[str], k: int = 100) -> list[list[str]]:
    """For each query, the ids of the `k` documents (id, text) of highest BM25 score, best
    first; documents that share no token with the query are left out, so a ranking may be
    shorter (empty for a query of stop words only)."""
    import bm25s
    import numpy as np

    tokens = reference_tokenizer()
    ids = [doc_id for doc_id, _ in documents]
    index = bm25s.BM25(method="lucene", k1=K1, b=B)
    index.index([tokens(text) for _, text in documents], show_progress=False)
    rankings = []
    for query in queries:
        query_tokens = tokens(query)
        scores = index.get_scores(query_tokens) if query_tokens else np.zeros(len(ids))
        best = np.argsort(-scores, kind="stable")[:k]
        rankings.append([ids[i] for i in best if scores[i] > 0])
    return rankings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--request", type=Path, required=True, help="documents, queries and k, as JSON")
    parser.add_argument("--rankings", type=Path, required=True, help="where each query's ranking goes, as JSON")
    args = parser.parse_args()
    request = json.loads(args.request.read_text(encoding="utf-8"))
    rankings = bm25_rankings([(doc_id, text) for doc_id, text in request["documents"]], request["queries"],
                             request["k"])
    args.rankings.write_text(json.dumps({"rankings": rankings}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
