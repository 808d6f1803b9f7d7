"""Title-aware chunking: Elements -> Chunks that carry section path, pages and source.

A heading closes the chunk before it and opens the next one, so a chunk never mixes two
sections. Within a section, elements are packed up to a token budget measured in the
embedding model's own tokenizer; an element larger than the budget is split at sentence
boundaries (tables at row boundaries, repeating their header row).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from unstructured.documents.elements import Element, Table, Title

from store import Chunk

CountTokens = Callable[[Sequence[str]], list[int]]

# Sentence ends, Chinese punctuation included; the split keeps the punctuation.
_SENTENCE_END = re.compile(r"(?<=[.!?;。！？；])\s+|(?<=[。！？；])")


@dataclass
class _Piece:
    text: str
    kind: str
    page: int | None
    tokens: int


@dataclass
class _Section:
    path: tuple[str, ...] = ()
    pieces: list[_Piece] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.pieces)

    def has_body(self) -> bool:
        return any(p.kind != "Title" for p in self.pieces)


def chunk_elements(
    elements: Sequence[Element], document_key: str, count_tokens: CountTokens,
    max_tokens: int, metadata: dict | None = None,
) -> list[Chunk]:
    """Cut a document's elements into chunks whose embedding text fits in `max_tokens`."""
    budget = max_tokens - _heading_reserve(elements, count_tokens, max_tokens)
    pieces = _pieces(elements, count_tokens, budget)
    groups: list[_Section] = []
    current = _Section()
    paths = _section_paths(elements)
    path: tuple[str, ...] = ()
    for piece, element in pieces:
        if isinstance(element, Title):
            path = next(paths)
            if current.has_body():
                groups.append(current)
                current = _Section()
            # Consecutive headings stay together: a title and its first subtitle open one chunk.
            current.path = path
        elif current.has_body() and current.tokens + piece.tokens > budget:
            groups.append(current)
            current = _Section(path=path)
        current.pieces.append(piece)
    if current.pieces:
        groups.append(current)
    return _chunks(groups, document_key, count_tokens, metadata or {})


def _section_paths(elements: Sequence[Element]):
    """The section path in force after each Title, in document order."""
    path: tuple[str, ...] = ()
    for element in elements:
        if isinstance(element, Title) and element.text.strip():
            path = path[:element.metadata.category_depth or 0] + (element.text.strip(),)
            yield path


def _heading_reserve(elements: Sequence[Element], count_tokens: CountTokens, max_tokens: int) -> int:
    """Room kept for the section path that Chunk.embedding_text puts before the text."""
    headings = {" > ".join(path) for path in _section_paths(elements)}
    return min(max(count_tokens(sorted(headings)), default=0), max_tokens // 2)


def _pieces(elements: Sequence[Element], count_tokens: CountTokens, max_tokens: int):
    """Each element as one or more pieces that fit the budget, paired with its element."""
    texts = [e.text.strip() for e in elements]
    counts = count_tokens(texts)
    out = []
    for element, text, tokens in zip(elements, texts, counts):
        if not text:
            continue
        page = element.metadata.page_number
        kind = type(element).__name__
        if tokens <= max_tokens or isinstance(element, Title):
            out.append((_Piece(text, kind, page, tokens), element))
            continue
        parts = _split_rows(text) if isinstance(element, Table) else _SENTENCE_END.split(text)
        for part_text in _pack(parts, count_tokens, max_tokens, repeat_first=isinstance(element, Table)):
            out.append((_Piece(part_text, kind, page, count_tokens([part_text])[0]), element))
    return out


def _split_rows(table_text: str) -> list[str]:
    return table_text.split("\n")


def _pack(parts: list[str], count_tokens: CountTokens, max_tokens: int, repeat_first: bool) -> list[str]:
    """Greedy packing of parts into texts within the budget; a lone oversize part is cut by words."""
    header = parts[0] if repeat_first else None
    body = parts[1:] if repeat_first else parts
    sizes = count_tokens(body)
    header_size = count_tokens([header])[0] if header else 0
    packed: list[str] = []
    current: list[str] = []
    used = header_size
    for part, size in zip(body, sizes):
        if current and used + size > max_tokens:
            packed.append(_join(header, current))
            current, used = [], header_size
        if size > max_tokens:
            packed.extend(_join(header, [w]) for w in _cut_by_words(part, count_tokens, max_tokens - header_size))
            continue
        current.append(part)
        used += size
    if current:
        packed.append(_join(header, current))
    return packed


def _join(header: str | None, parts: list[str]) -> str:
    separator = "\n" if header is not None else " "
    return separator.join(([header] if header else []) + parts)


def _cut_by_words(text: str, count_tokens: CountTokens, max_tokens: int) -> list[str]:
    """Last resort for a sentence longer than the budget: windows of words (or characters)."""
    words = text.split(" ") if " " in text else list(text)
    joiner = " " if " " in text else ""
    tokens_per_word = max(count_tokens([text])[0] / max(len(words), 1), 1e-6)
    step = max(int(max_tokens / tokens_per_word * 0.9), 1)
    return [joiner.join(words[i:i + step]) for i in range(0, len(words), step)]


def _chunks(groups: list[_Section], document_key: str, count_tokens: CountTokens, metadata: dict) -> list[Chunk]:
    drafts = []
    for group in groups:
        pages = [p.page for p in group.pieces if p.page is not None]
        drafts.append(Chunk(
            document_key=document_key, ordinal=len(drafts),
            text="\n\n".join(p.text for p in group.pieces),
            section_path=group.path,
            page_start=min(pages) if pages else None, page_end=max(pages) if pages else None,
            element_types=tuple(dict.fromkeys(p.kind for p in group.pieces)),
            token_count=0, content_hash="", metadata=metadata,
        ))
    texts = [c.embedding_text for c in drafts]
    counts = count_tokens(texts)
    return [
        replace(c, token_count=n, content_hash=hashlib.sha256(t.encode()).hexdigest())
        for c, t, n in zip(drafts, texts, counts)
    ]
