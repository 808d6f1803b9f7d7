"""Full-text analysis shared by writing and searching: Chinese and English in one tsvector.

PostgreSQL's parsers do not segment Chinese, so CJK runs are cut into words with jieba
(offline, dictionary bundled) and indexed with the 'simple' configuration; the rest goes
through the 'english' configuration (stemming, stop words). Queries are analysed the same way.
"""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import ColumnElement, func, literal_column

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
    runs = _CJK_RUN.findall(text)
    if not runs:
        return AnalysedText(text, "")
    jieba = _jieba()
    words = [w for run in runs for w in jieba.cut_for_search(run) if _WORD.search(w)]
    return AnalysedText(_CJK_RUN.sub(" ", text), " ".join(words))


def query_words(run: str) -> list[str]:
    """The finest words of a CJK query run: the ones the index holds for any segmentation."""
    jieba = _jieba()
    words = [w for w in dict.fromkeys(jieba.cut_for_search(run)) if _WORD.search(w)]
    finest = [w for w in words if not any(o != w and o in w for o in words)]
    # Single characters (的, 了, 是...) are mostly function words; keep them only if alone.
    return [w for w in finest if len(w) > 1] or finest


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
    """A parsed query: phrases that must appear, alternatives ranked by how many match, exclusions."""

    required: tuple[Term, ...] = ()
    optional: tuple[Term, ...] = ()
    excluded: tuple[Term, ...] = ()

    @property
    def terms(self) -> tuple[Term, ...]:
        """Required, then optional, then excluded terms."""
        return self.required + self.optional + self.excluded

    @property
    def empty(self) -> bool:
        return not (self.required or self.optional)

    def tsquery(self) -> ColumnElement:
        """(required AND ...) AND (optional OR ...) AND NOT excluded, as one tsquery expression."""
        return self.combine(*([t.tsquery() for t in terms] for terms in (self.required, self.optional, self.excluded)))

    @staticmethod
    def combine(required: list[ColumnElement], optional: list[ColumnElement],
                excluded: list[ColumnElement]) -> ColumnElement:
        """The query from its terms' tsqueries (a search builds each once and uses it twice)."""
        parts = list(required)
        if optional:
            parts.append(_combine(func.tsquery_or, optional))
        parts += [func.tsquery_not(t) for t in excluded]
        return _combine(func.tsquery_and, parts)


def _combine(operator, parts: list[ColumnElement]) -> ColumnElement:
    """Fold with a tsquery operator function (tsquery_and / tsquery_or: && and ||)."""
    combined = parts[0]
    for part in parts[1:]:
        combined = operator(combined, part)
    return combined


def parse_query(query: str) -> KeywordQuery:
    """A websearch-style query, analysed as the index is.

    "quoted phrases" must appear, -word excludes, bare words are alternatives ranked by how
    many match (so a natural-language question still finds the best partial matches), and a
    CJK run must match all its words (it is one word to its writer).
    """
    required, optional, excluded = [], [], []
    for token in _tokens(query):
        negative = token.startswith("-") and len(token) > 1
        token = token[1:] if negative else token
        if token.lower() == "or":
            continue
        terms = []
        for run in _CJK_RUN.findall(token):
            words = query_words(run)
            if words:
                terms.append(Term("plainto_tsquery", "simple", " ".join(words)))
        latin = " ".join(_CJK_RUN.sub(" ", token).split())
        if latin:
            terms.append(Term("phraseto_tsquery" if " " in latin else "plainto_tsquery", "english", latin))
        if negative:
            excluded += terms
        elif " " in token:
            required += terms
        else:
            optional += terms
    return KeywordQuery(tuple(required), tuple(optional), tuple(excluded))


def _tokens(query: str) -> list[str]:
    """Split on spaces, keeping "quoted phrases" (and -"quoted") together."""
    lexer = shlex.shlex(query, posix=True)
    lexer.whitespace_split = True
    lexer.quotes = '"'
    lexer.escape = ""
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote: read it as plain words
        return query.replace('"', " ").split()
