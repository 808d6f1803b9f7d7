"""The query language: a websearch-style query read into what the search statement needs.

    travel expenses          bare words (English or Chinese): a bag of words ranked by BM25
    "per diem"               a quoted phrase: must appear, words in order
    -draft  -"old policy"    exclusions

Words are analysed as the index analyses chunks (store.fulltext): NFKC, traditional Chinese
as simplified, Chinese cut by jieba; PostgreSQL stems the English ones.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from pgkb.errors import QueryError
from store.fulltext import CJK_RUN, cjk_words, normalize

# Quoted phrases and exclusions are each a condition of their own in the search statement.
MAX_CONDITIONS = 32


@dataclass(frozen=True)
class Term:
    """A phrase or an exclusion, turned into a tsquery by `function` in `config`."""

    function: str  # "plainto_tsquery" (all words) or "phraseto_tsquery" (words in order)
    config: str    # "english" or "simple"
    text: str


@dataclass(frozen=True)
class KeywordQuery:
    """A parsed query: the words BM25 ranks by, phrases that must appear, exclusions.

    `latin` and `cjk` hold every ranked word (phrases' words too), for
    to_tsvector('english', latin) and to_tsvector('simple', cjk): the query's lexemes are
    analysed exactly as the chunks' were.
    """

    latin: str = ""
    cjk: str = ""
    required: tuple[Term, ...] = ()
    excluded: tuple[Term, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.latin or self.cjk or self.required)

    @property
    def highlighted_words(self) -> list[str]:
        """The Chinese words a snippet marks (PostgreSQL's headline marks the English ones);
        single characters, mostly function words, are left unmarked."""
        return [w for w in self.cjk.split() if len(w) > 1]


def parse_query(query: str) -> KeywordQuery:
    """A websearch-style query, analysed as the index is.

    Bare words, English or Chinese, are a bag of words ranked by BM25: a chunk need not hold
    all of them, and common ones (the, 的, 什么) weigh little by their rarity in the
    collection. "Quoted phrases" must appear; -word and -"phrase" exclude.
    """
    latin: list[str] = []
    cjk: list[str] = []
    required: list[Term] = []
    excluded: list[Term] = []
    for text, quoted, negative in _tokens(unicodedata.normalize("NFKC", query)):
        terms = []
        for typed in CJK_RUN.findall(text):
            run = normalize(typed)
            words = cjk_words(run)
            if words:
                if not negative:
                    # Chunks written before pgkb indexed traditional characters as simplified
                    # hold the words as typed: those count too.
                    cjk += words
                    if typed != run:
                        seen = set(words)  # a set: a long run holds thousands of words
                        cjk += [w for w in cjk_words(typed) if w not in seen]
                terms.append(Term("plainto_tsquery", "simple", " ".join(words)))
        rest = " ".join(CJK_RUN.sub(" ", text).split())
        if rest:
            if not negative:
                latin.append(rest)
            terms.append(Term("phraseto_tsquery" if quoted else "plainto_tsquery", "english", rest))
        if negative:
            excluded += terms
        elif quoted:
            required += terms
    if len(required) + len(excluded) > MAX_CONDITIONS:
        raise QueryError(f"a query may hold at most {MAX_CONDITIONS} quoted phrases and -exclusions; this one "
                         f"holds {len(required) + len(excluded)}")
    return KeywordQuery(" ".join(latin), " ".join(cjk), tuple(required), tuple(excluded))


# "a phrase", -"a phrase", -word or word; an unbalanced quote is read as a plain character.
_TOKEN = re.compile(r'(-?)"([^"]*)"|(\S+)')


def _tokens(query: str) -> list[tuple[str, bool, bool]]:
    """(text, quoted, negative) for each word or "quoted phrase" of the query."""
    tokens = []
    for match in _TOKEN.finditer(query):
        if match.group(3) is not None:
            word = match.group(3).replace('"', " ").strip()
            negative = word.startswith("-") and len(word) > 1
            word = word[1:] if negative else word
            if word and word.lower() != "or":
                tokens.append((word, False, negative))
        elif match.group(2).strip():
            tokens.append((match.group(2).strip(), True, bool(match.group(1))))
    return tokens
