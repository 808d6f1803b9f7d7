"""Title-aware chunking: Elements -> Chunks that carry section path, pages and element types.

Sections come from the Title elements (category_depth gives their nesting), and:
- A chunk never mixes text of two sections, with one exception: consecutive small sibling
  sections (each under a quarter of the budget, without subsections of their own) share a
  chunk that bears their parent's section path and keeps each one's heading in its text.
  Top-level sections (the outermost level with more than one section) never share.
- A heading with no text of its own opens the chunk of its first subsection, so
  "Handbook > Leave" starts one chunk rather than leaving "Handbook" alone; one followed by
  a sibling's heading opens the next section's chunk, and one that ends the document closes
  the last chunk: no chunk is only a heading (which would match vague queries and say nothing).
- A long section is packed element by element; an element larger than the budget splits at
  paragraph, line, sentence (Chinese and Japanese punctuation included) and clause
  boundaries, then between words, then between characters, never inside one. A table
  larger than the budget splits at row boundaries and repeats its header row in each piece.
- Sizes are counted by the embedding model's own tokenizer on the text the model reads (the
  section path, then the chunk text: Chunk.embedding_text; the text alone when
  `embed_headings` is off), and no chunk exceeds `max_tokens`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from unstructured.documents.elements import Element

from store import Chunk

CountTokens = Callable[[Sequence[str]], list[int]]

log = logging.getLogger(__name__)

# Sections smaller than this share of the budget may share a chunk with their siblings.
SMALL_SECTION_SHARE = 0.25
# Where an oversize text may be cut, coarsest first. Each pattern matches the gap after a
# unit (the cut falls at its end), so the pieces put back together are the text unchanged.
_BOUNDARIES = [
    re.compile(r"\n\s*\n\s*"),                                         # paragraphs
    re.compile(r"\n\s*"),                                              # lines
    re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+"                       # sentences
               r"|[\u3002\uff01\uff1f!?\u2026]+[\u201d\u2019\u300d\u300f\uff09)]*\s*"),
    re.compile(r"[;:,\uff1b\uff1a\uff0c\u3001]\s*"),                   # clauses
    re.compile(r"\s+"),                                                # words
]
# Section titles longer than this share of the budget are shortened in the path.
MAX_PATH_SHARE = 0.5
MAX_REFITS = 4


@dataclass
class _Piece:
    text: str
    kind: str               # the element's type: Title, NarrativeText, Table...
    page: int | None
    tokens: int
    glue: str = "\n\n"      # what joins it to the piece before it in a chunk


@dataclass
class _Group:
    """Pieces that belong in the same chunk or run of chunks, under one section path."""

    path: tuple[str, ...]
    pieces: list[_Piece] = field(default_factory=list)
    # Set on a small section without subsections: the parent it may share a chunk under.
    sibling_parent: tuple[str, ...] | None = None

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.pieces)

    @property
    def has_body(self) -> bool:
        return any(p.kind != "Title" for p in self.pieces)


def chunk_elements(
    elements: Sequence[Element], document_key: str, count_tokens: CountTokens,
    max_tokens: int, metadata: dict | None = None, *, embed_headings: bool = True,
) -> list[Chunk]:
    """Cut a document's elements into chunks whose embedding text fits in `max_tokens`;
    `embed_headings`: whether that text begins with the chunk's section path."""
    texts = [e.text.strip() for e in elements]
    kept = [(e, t) for e, t in zip(elements, texts) if t]
    counts = count_tokens([t for _, t in kept])
    groups = _section_groups([(e, t, n) for (e, t), n in zip(kept, counts)], max_tokens, count_tokens)
    groups = _merge_small_siblings(groups, max_tokens)
    paths = sorted({g.path for g in groups if g.path}) if embed_headings else []
    reserve = dict(zip(paths, count_tokens([" > ".join(path) + "\n\n" for path in paths])))
    separator = count_tokens(["\n\n"])[0]
    fitted = [c for g in groups for c in _fit(g, max_tokens - reserve.get(g.path, 0), separator, count_tokens)]
    sizes: list[int | None] = [None] * len(fitted)
    # Token counts of joined texts can differ a little from the sums of their parts':
    # whatever came out too long is cut again, with a budget smaller by its excess.
    for attempt in range(MAX_REFITS + 1):
        counted = _count_unknown(fitted, sizes, count_tokens, embed_headings)
        if all(n <= max_tokens for n in counted):
            break
        if attempt == MAX_REFITS:
            log.warning("%s: %d chunks still exceed %d tokens; the model will cut them", document_key,
                        sum(n > max_tokens for n in counted), max_tokens)
            break
        refitted: list[tuple[_Group, int | None]] = []
        for group, n in zip(fitted, counted):
            if n <= max_tokens:
                refitted.append((group, n))
            else:
                budget = max_tokens - reserve.get(group.path, 0) - 2 * (n - max_tokens)
                refitted.extend((part, None) for part in _fit(group, budget, separator, count_tokens))
        fitted, sizes = [g for g, _ in refitted], [n for _, n in refitted]
    return _finish(fitted, counted, document_key, metadata or {}, embed_headings)


def _count_unknown(groups: list[_Group], sizes: list[int | None], count_tokens: CountTokens,
                   embed_headings: bool) -> list[int]:
    """`sizes` with each unknown (None) one replaced by its group's embedding-text token count."""
    unknown = [group for group, n in zip(groups, sizes) if n is None]
    new_counts = iter(count_tokens([_draft(g, embeds_heading=embed_headings).embedding_text for g in unknown]))
    return [next(new_counts) if n is None else n for n in sizes]


# --- sections -------------------------------------------------------------------------------

def _section_groups(elements: list[tuple[Element, str, int]], max_tokens: int,
                    count_tokens: CountTokens) -> list[_Group]:
    """One group per section holding text; headings without text join the next subsection."""
    groups: list[_Group] = []
    open_headings: list[tuple[int, str]] = []  # (depth, title) from the outermost in
    path: tuple[str, ...] = ()
    current = _Group(path)
    for element, text, tokens in elements:
        piece = _Piece(text, element.category, element.metadata.page_number, tokens)
        if piece.kind == "Title":
            # A heading closes those at its depth or deeper, whatever depth numbers a format
            # starts from (Word's Heading 1 is depth 1 when there is no Title above it).
            depth = element.metadata.category_depth or 0
            while open_headings and open_headings[-1][0] >= depth:
                open_headings.pop()
            open_headings.append((depth, text))
            path = tuple(title for _, title in open_headings)
            # A heading-only group goes on into this section only if it is an ancestor.
            if current.has_body or current.path != path[:len(current.path)]:
                if current.pieces:
                    groups.append(current)
                current = _Group(path)
            current.path = path
        current.pieces.append(piece)
    if current.pieces:
        groups.append(current)
    groups = _without_bare_headings(groups)
    paths = _short_paths({g.path for g in groups}, max_tokens, count_tokens)
    for group in groups:
        group.path = paths[group.path]
    return groups


def _without_bare_headings(groups: list[_Group]) -> list[_Group]:
    """Groups of headings alone joined to the section after them (the last ones to the section
    before them), so that no chunk is only a heading; a document of headings alone keeps them."""
    kept: list[_Group] = []
    waiting: list[_Piece] = []  # headings for the next group with text
    for group in groups:
        if not group.has_body:
            waiting.extend(group.pieces)
            continue
        group.pieces[:0] = waiting
        waiting = []
        kept.append(group)
    if not kept:
        return groups
    kept[-1].pieces.extend(waiting)
    return kept


def _short_paths(paths: set[tuple[str, ...]], max_tokens: int, count_tokens: CountTokens):
    """Each path, its longest titles shortened until the whole path is within its share of
    the budget (a 'heading' that is really a paragraph would leave no room for text)."""
    limit = int(max_tokens * MAX_PATH_SHARE)
    ordered = sorted(paths)
    short = {}
    for path, tokens in zip(ordered, count_tokens([" > ".join(path) for path in ordered])):
        titles = list(path)
        while tokens > limit:
            longest = max(range(len(titles)), key=lambda i: len(titles[i]))
            if len(titles[longest]) <= 3:  # "ab…" shortens no further
                break
            titles[longest] = titles[longest][:max(len(titles[longest]) * 2 // 3, 1)].rstrip() + "\u2026"
            tokens = count_tokens([" > ".join(titles)])[0]
        short[path] = tuple(titles)
    return short


def _top_level(groups: list[_Group]) -> int:
    """The path length of top-level sections: the outermost level with more than one section."""
    depth = 1
    while any(len(g.path) >= depth for g in groups):
        if len({g.path[:depth] for g in groups if len(g.path) >= depth}) > 1:
            return depth
        depth += 1
    return depth


def _merge_small_siblings(groups: list[_Group], max_tokens: int) -> list[_Group]:
    top = _top_level(groups)
    small = max_tokens * SMALL_SECTION_SHARE
    merged: list[_Group] = []
    for index, group in enumerate(groups):
        following = groups[index + 1].path if index + 1 < len(groups) else ()
        leaf = following[:len(group.path)] != group.path
        previous = merged[-1] if merged else None
        if (previous is not None and leaf and group.tokens < small and len(group.path) > top
                and previous.sibling_parent == group.path[:-1]
                and previous.tokens + group.tokens <= max_tokens):
            previous.pieces.extend(group.pieces)
            previous.path = group.path[:-1]
            continue
        if leaf and group.tokens < small and len(group.path) > top:
            group.sibling_parent = group.path[:-1]
        merged.append(group)
    return merged


# --- packing --------------------------------------------------------------------------------

def _fit(group: _Group, budget: int, separator: int, count_tokens: CountTokens) -> list[_Group]:
    """The group as chunks whose text is within `budget` tokens."""
    budget = max(budget, 1)
    pieces: list[_Piece] = []
    headings = 0  # tokens of the headings just before: the text they open shares their chunk
    for piece in group.pieces:
        room = budget - headings if headings < budget // 2 else budget
        pieces.extend(_split(piece, room, count_tokens))
        headings = headings + piece.tokens + separator if piece.kind == "Title" else 0
    return _pack(pieces, group.path, budget, separator)


def _pack(pieces: list[_Piece], path: tuple[str, ...], budget: int, separator: int) -> list[_Group]:
    """Pieces packed in order into balanced chunks; headings left at the end of a chunk move
    on with the text they head."""
    total = sum(p.tokens + separator for p in pieces)
    target = math.ceil(total / math.ceil(total / budget)) if total else budget
    chunks: list[_Group] = []
    current = _Group(path)
    used = 0
    for piece in pieces:
        cost = piece.tokens + (separator if current.pieces and piece.glue else 0)
        if current.pieces and (used + cost > budget or current.has_body and used >= target):
            carried: list[_Piece] = []
            while current.pieces and current.pieces[-1].kind == "Title" and current.has_body:
                carried.insert(0, current.pieces.pop())
            chunks.append(current)
            current = _Group(path, carried)
            used = sum(p.tokens + separator for p in carried)
            cost = piece.tokens + (separator if carried else 0)
        current.pieces.append(piece)
        used += cost
    if current.pieces:
        chunks.append(current)
    return chunks


def _split(piece: _Piece, budget: int, count_tokens: CountTokens) -> list[_Piece]:
    """A piece within the budget as it is; a larger one cut into pieces that each fit."""
    if piece.tokens <= budget:
        return [piece]
    if piece.kind == "Table":
        return _split_table(piece, budget, count_tokens)
    parts = _split_text(piece.text, piece.tokens, budget, count_tokens)
    return [replace(piece, text=text, tokens=tokens, glue=piece.glue if i == 0 else "")
            for i, (text, tokens) in enumerate(_pack_parts(parts, budget))]


def _split_table(piece: _Piece, budget: int, count_tokens: CountTokens) -> list[_Piece]:
    """Rows packed into pieces that each begin with the header row (unless the header alone
    would take half the budget)."""
    header, *rows = piece.text.split("\n")
    header_tokens, *row_tokens = count_tokens([header + "\n", *(row + "\n" for row in rows)])
    if header_tokens > budget // 2:
        header, header_tokens = "", 0
    room = budget - header_tokens
    parts = []
    for row, tokens in zip(rows, row_tokens):
        parts.extend(_split_text(row + "\n", tokens, room, count_tokens))
    return [replace(piece, text=(header + "\n" if header else "") + text.rstrip("\n"),
                    tokens=header_tokens + tokens)
            for text, tokens in _pack_parts(parts, room)]


def _split_text(text: str, tokens: int, budget: int, count_tokens: CountTokens,
                level: int = 0) -> list[tuple[str, int]]:
    """`text` cut at the coarsest boundaries that make every part fit, with each part's size."""
    if tokens <= budget:
        return [(text, tokens)]
    if level == len(_BOUNDARIES):
        return list(zip(text, count_tokens(list(text))))  # characters, the last resort
    cuts = [m.end() for m in _BOUNDARIES[level].finditer(text) if 0 < m.end() < len(text)]
    if not cuts:
        return _split_text(text, tokens, budget, count_tokens, level + 1)
    parts = [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)])]
    out = []
    for part, size in zip(parts, count_tokens(parts)):
        out.extend(_split_text(part, size, budget, count_tokens, level + 1))
    return out


def _pack_parts(parts: list[tuple[str, int]], budget: int) -> list[tuple[str, int]]:
    """Consecutive parts joined as far as the budget allows, in balanced runs."""
    total = sum(tokens for _, tokens in parts)
    target = min(budget, math.ceil(total / math.ceil(total / budget)) if total else budget)
    packed: list[tuple[str, int]] = []
    text, used = "", 0
    for part, tokens in parts:
        if text and (used + tokens > budget or used >= target):
            packed.append((text, used))
            text, used = "", 0
        text += part
        used += tokens
    if text:
        packed.append((text, used))
    return packed


# --- chunks ---------------------------------------------------------------------------------

def _draft(group: _Group, document_key: str = "", ordinal: int = 0, metadata: dict | None = None,
           embeds_heading: bool = True) -> Chunk:
    """The chunk a group becomes, before its tokens are counted."""
    pages = [p.page for p in group.pieces if p.page is not None]
    return Chunk(
        document_key=document_key, ordinal=ordinal,
        text="".join((p.glue if i else "") + p.text for i, p in enumerate(group.pieces)).strip(),
        section_path=group.path,
        page_start=min(pages) if pages else None, page_end=max(pages) if pages else None,
        element_types=tuple(dict.fromkeys(p.kind for p in group.pieces)),
        token_count=0, content_hash="", metadata=metadata or {}, embeds_heading=embeds_heading,
    )


def _finish(groups: list[_Group], sizes: list[int], document_key: str, metadata: dict,
            embed_headings: bool) -> list[Chunk]:
    chunks: list[Chunk] = []
    for group, size in zip(groups, sizes):
        draft = _draft(group, document_key, len(chunks), metadata, embed_headings)
        if draft.text:
            chunks.append(replace(draft, token_count=size, content_hash=content_hash(draft.embedding_text)))
    return chunks


def content_hash(embedding_text: str) -> str:
    """A chunk's content hash: of what the model reads, so that an unchanged one keeps its vector."""
    return hashlib.sha256(embedding_text.encode()).hexdigest()
