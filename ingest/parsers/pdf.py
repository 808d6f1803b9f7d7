"""PDF through PyMuPDF's text layer: headings, paragraphs, tables, pages.

Headings come from the PDF outline when it has one, otherwise from font sizes larger than
the body text. Lines repeated in the page margins (running headers, footers, page numbers)
are dropped. Tables found by PyMuPDF are kept whole, as text and HTML.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path

import pymupdf
from unstructured.documents.elements import (
    Element, ElementMetadata, NarrativeText, Table, Title,
)

from . import ParseError, ParsedDocument

# A line is a heading when its font is this much larger than the body text's.
HEADING_SIZE_RATIO = 1.15
# Running headers/footers live in the top and bottom this-fraction of the page...
MARGIN_FRACTION = 0.08
# ...and repeat on at least this share of pages (of documents with 2 pages or more).
REPEATED_SHARE = 0.5
# Ligatures (ﬁ, ﬂ) come out as their letters, so words match what users type.
TEXT_FLAGS = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_LIGATURES


def parse_pdf(path: Path) -> ParsedDocument:
    try:
        doc = pymupdf.open(path)
    except Exception as exc:  # PyMuPDF raises FileDataError, RuntimeError, ValueError...
        raise ParseError("corrupt", f"not a readable PDF ({exc})") from None
    with doc:
        if doc.needs_pass and not doc.authenticate(""):
            raise ParseError("encrypted", "the PDF needs a password")
        pages = [_page_blocks(page) for page in doc]
        if not any(blocks for blocks, _ in pages):
            raise ParseError("no text layer", f"none of its {doc.page_count} pages has text")
        repeated = _repeated_margin_lines([blocks for blocks, _ in pages])
        headings = _heading_levels(doc, [blocks for blocks, _ in pages])
        elements: list[Element] = []
        for page_number, (blocks, tables) in enumerate(pages, start=1):
            items = [(b["bbox"][1], b) for b in blocks if _normal(b["text"]) not in repeated]
            items += [(t.bbox[1], t) for t in tables]
            for _, item in sorted(items, key=lambda pair: pair[0]):
                if isinstance(item, dict):
                    elements.append(_text_element(item, page_number, headings))
                else:
                    elements.append(_table_element(doc[page_number - 1], item, page_number))
        return ParsedDocument(elements, _file_metadata(doc))


def _page_blocks(page: pymupdf.Page) -> tuple[list[dict], list]:
    """Text blocks outside tables (text, font size, bbox, margin flag) and the page's tables."""
    # Ruled tables from the page's drawings; PyMuPDF's ML layout gate is slow on CPU and hung
    # on a one-page file of the test corpus.
    tables = [t for t in page.find_tables(use_layout=False).tables if t.row_count >= 2]
    table_boxes = [pymupdf.Rect(t.bbox) for t in tables]
    height = page.rect.height
    blocks = []
    for block in page.get_text("dict", sort=True, flags=TEXT_FLAGS)["blocks"]:
        if block["type"] != 0 or any(pymupdf.Rect(block["bbox"]).intersects(box) for box in table_boxes):
            continue
        spans = [s for line in block["lines"] for s in line["spans"] if s["text"].strip()]
        if not spans:
            continue
        text = _join_lines(["".join(s["text"] for s in line["spans"]) for line in block["lines"]])
        y0, y1 = block["bbox"][1], block["bbox"][3]
        blocks.append({
            "text": text,
            "size": round(max(s["size"] for s in spans), 1),
            "chars": sum(len(s["text"]) for s in spans),
            "bbox": block["bbox"],
            "in_margin": y1 < height * MARGIN_FRACTION or y0 > height * (1 - MARGIN_FRACTION),
        })
    return blocks, tables


def _join_lines(lines: list[str]) -> str:
    """Join a block's lines into one paragraph, mending words hyphenated at line ends."""
    text = ""
    for line in (line.strip() for line in lines):
        if not line:
            continue
        if text.endswith("-") and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}" if text else line
    return text


def _normal(text: str) -> str:
    """A margin line with its numbers blanked, so 'Page 3 of 9' repeats like 'Page 4 of 9'."""
    return re.sub(r"\d+", "#", text.strip().lower())


def _repeated_margin_lines(pages: list[list[dict]]) -> set[str]:
    if len(pages) < 2:
        return set()
    counts = Counter(line for page_lines in (
        {_normal(b["text"]) for b in blocks if b["in_margin"]} for blocks in pages
    ) for line in page_lines)
    return {line for line, n in counts.items() if n >= max(2, REPEATED_SHARE * len(pages))}


def _heading_levels(doc: pymupdf.Document, pages: list[list[dict]]) -> dict[tuple[int, str], int]:
    """(page, normalised text) -> heading depth, from the outline or from font sizes."""
    outline = doc.get_toc(simple=True)
    if outline:
        return {(page, _normal(title)): level - 1 for level, title, page in outline if page >= 1}
    sizes = Counter()
    for blocks in pages:
        for b in blocks:
            sizes[b["size"]] += b["chars"]
    body_size = sizes.most_common(1)[0][0]
    heading_sizes = sorted({s for s in sizes if s >= body_size * HEADING_SIZE_RATIO}, reverse=True)
    depth_of_size = {size: depth for depth, size in enumerate(heading_sizes)}
    return {
        (page, _normal(b["text"])): depth_of_size[b["size"]]
        for page, blocks in enumerate(pages, start=1)
        for b in blocks
        if b["size"] in depth_of_size and len(b["text"]) <= 200
    }


def _text_element(block: dict, page_number: int, headings: dict[tuple[int, str], int]) -> Element:
    depth = headings.get((page_number, _normal(block["text"])))
    if depth is not None:
        return Title(block["text"], metadata=ElementMetadata(page_number=page_number, category_depth=depth))
    return NarrativeText(block["text"], metadata=ElementMetadata(page_number=page_number))


def _table_element(page: pymupdf.Page, table, page_number: int) -> Table:
    # Text clipped to each cell keeps the spaces that table.extract() can lose.
    rows = [
        [" ".join(page.get_text("text", clip=cell, flags=TEXT_FLAGS).split()) if cell else "" for cell in row.cells]
        for row in table.rows
    ]
    return Table(
        "\n".join(" | ".join(row) for row in rows),
        metadata=ElementMetadata(page_number=page_number, text_as_html=rows_to_html(rows)),
    )


def rows_to_html(rows: list[list[str]]) -> str:
    """A table as HTML, the first row as its header."""
    def row_html(row, tag):
        return "<tr>" + "".join(f"<{tag}>{html.escape(cell)}</{tag}>" for cell in row) + "</tr>"

    head, body = rows[:1], rows[1:]
    return ("<table><thead>" + "".join(row_html(r, "th") for r in head) + "</thead><tbody>"
            + "".join(row_html(r, "td") for r in body) + "</tbody></table>")


def _file_metadata(doc: pymupdf.Document) -> dict:
    info = doc.metadata or {}
    found = {
        "title": info.get("title"), "author": info.get("author"),
        "created": info.get("creationDate"), "pages": doc.page_count,
    }
    return {k: v for k, v in found.items() if v}
