"""Full-text analysis shared by writing and searching: Chinese and English in one tsvector.

PostgreSQL's parsers do not segment Chinese, so CJK runs are cut into words with jieba
(offline, dictionary bundled) and indexed with the 'simple' configuration; the rest goes
through the 'english' configuration (stemming, stop words). Queries are analysed the same way.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import ColumnElement, func, literal_column

from pgkb.errors import QueryError

# Han, Hiragana, Katakana, Hangul and CJK punctuation/compatibility blocks.
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
_WORD = re.compile(r"\w", re.UNICODE)


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it announces its dictionary loading otherwise
    return jieba


@dataclass(frozen=True)
class AnalysedText:
    latin: str  # text with CJK runs blanked out, for to_tsvector('english', ...)
    cjk: str    # space-separated CJK words, for to_tsvector('simple', ...)


def analyse(text: str) -> AnalysedText:
    """Split `text` for indexing; CJK runs are cut finely and as whole words (search mode)."""
    text = normalize(text)
    runs = _CJK_RUN.findall(text)
    if not runs:
        return AnalysedText(text, "")
    jieba = _jieba()
    words = [w for run in runs for w in jieba.cut_for_search(run) if _WORD.search(w)]
    return AnalysedText(_CJK_RUN.sub(" ", text), " ".join(words))


@lru_cache(maxsize=1)
def _to_simplified():
    import opencc

    return opencc.OpenCC("t2s")  # OpenCC's bundled tables, offline


def normalize(text: str) -> str:
    """The form text is indexed and searched in: full-width letters, digits and punctuation
    (Ｂ，１２％) as their ordinary forms (NFKC), so that a query typed on a Chinese keyboard
    matches; and traditional Chinese characters as simplified ones (OpenCC), so that 責任
    finds 责任 and back. Text without CJK characters is left to NFKC alone."""
    text = unicodedata.normalize("NFKC", text)
    return _to_simplified().convert(text) if _CJK_RUN.search(text) else text


def cjk_words(run: str) -> list[str]:
    """A CJK query run as jieba's words (accurate mode); the index holds each of them, since
    search mode adds finer words to the same cut."""
    return [w for w in _jieba().lcut(run) if _WORD.search(w)]


def unstorable(text: str) -> str | None:
    """Why PostgreSQL cannot take `text` (a NUL character, a lone surrogate: what a broken
    client or a bad decoding leaves), or None when it can."""
    nul = text.find("\x00")
    if nul >= 0:
        return f"a NUL character (\\x00) at position {nul}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a lone surrogate ({text[exc.start]!r}) at position {exc.start}, which is not Unicode text"
    return None


@dataclass(frozen=True)
class Term:
    function: str  # "plainto_tsquery" (all words) or "phraseto_tsquery" (words in order)
    config: str    # "english" or "simple"
    text: str

    def tsquery(self, text: ColumnElement | None = None) -> ColumnElement:
        """The term as a tsquery; `text` stands for its text (a named parameter, say)."""
        return getattr(func, self.function)(literal_column(f"'{self.config}'::regconfig"),
                                            self.text if text is None else text)


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


# Quoted phrases and exclusions are each a condition of their own in the search statement.
MAX_CONDITIONS = 32


def parse_query(query: str) -> KeywordQuery:
    """A websearch-style query, analysed as the index is.

    Bare words, English or Chinese, are a bag of words ranked by BM25: a chunk need not hold
    all of them, and common ones (the, 的, 什么) weigh little by their rarity in the
    collection. "Quoted phrases" must appear; -word and -"phrase" exclude.
    """
    latin, cjk, required, excluded = [], [], [], []
    for text, quoted, negative in _tokens(unicodedata.normalize("NFKC", query)):
        terms = []
        for typed in _CJK_RUN.findall(text):
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
        rest = " ".join(_CJK_RUN.sub(" ", text).split())
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
