"""Full-text analysis shared by writing and searching: Chinese and English in one tsvector.

PostgreSQL's parsers do not segment Chinese, so CJK runs are cut into words with jieba
(offline, dictionary bundled) and indexed with the 'simple' configuration; the rest goes
through the 'english' configuration (stemming, stop words). Queries are analysed the same way
(retrieval.query).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Han, Hiragana, Katakana, Hangul and CJK punctuation/compatibility blocks.
CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
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
    runs = CJK_RUN.findall(text)
    if not runs:
        return AnalysedText(text, "")
    jieba = _jieba()
    words = [w for run in runs for w in jieba.cut_for_search(run) if _WORD.search(w)]
    return AnalysedText(CJK_RUN.sub(" ", text), " ".join(words))


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
    return _to_simplified().convert(text) if CJK_RUN.search(text) else text


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
