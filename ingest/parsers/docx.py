"""Word (.docx) through python-docx: headings by style or outline level, lists, tables, pages.

Headers and footers live in other parts of the package and never reach the body; deleted
text of tracked changes is not in w:t runs, so it does not leak either.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import docx
from docx.document import Document
from docx.opc.exceptions import PackageNotFoundError
from docx.oxml.ns import qn
from docx.table import Table as DocxTable
from docx.text.paragraph import Paragraph
from unstructured.documents.elements import (
    Element, ElementMetadata, ListItem, NarrativeText, Table, Title,
)

from . import ParseError, ParsedDocument
from .pdf import rows_to_html

_HEADING_STYLE = re.compile(r"^heading (\d)$", re.IGNORECASE)


def parse_docx(path: Path) -> ParsedDocument:
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ParseError("corrupt", f"not a readable Word file ({exc})") from None
    page_breaks = "w:lastRenderedPageBreak" if _has_rendered_breaks(document) else "w:br[@w:type='page']"
    elements: list[Element] = []
    page = 1
    for block in document.iter_inner_content():
        if isinstance(block, DocxTable):
            elements.append(_table(block, page))
            continue
        page += len(block._p.xpath(f".//{page_breaks}"))
        element = _paragraph(block, page)
        if element is not None:
            elements.append(element)
    return ParsedDocument(elements, _file_metadata(document))


def _has_rendered_breaks(document: Document) -> bool:
    return bool(document.element.body.xpath(".//w:lastRenderedPageBreak"))


def _paragraph(paragraph: Paragraph, page: int) -> Element | None:
    text = paragraph.text.strip()
    if not text:
        return None
    depth = _heading_depth(paragraph)
    if depth is not None:
        return Title(text, metadata=ElementMetadata(page_number=page, category_depth=depth))
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    if "list" in style.lower() or paragraph._p.pPr is not None and paragraph._p.pPr.numPr is not None:
        return ListItem(text, metadata=ElementMetadata(page_number=page))
    return NarrativeText(text, metadata=ElementMetadata(page_number=page))


def _heading_depth(paragraph: Paragraph) -> int | None:
    """0 for Title, N for Heading N, or the paragraph's own outline level (0-based) plus one."""
    style = paragraph.style
    while style is not None:
        if style.name == "Title":
            return 0
        match = _HEADING_STYLE.match(style.name or "")
        if match:
            return int(match.group(1))
        style = style.base_style
    levels = paragraph._p.xpath("./w:pPr/w:outlineLvl")
    if levels:
        level = int(levels[0].get(qn("w:val")))
        return level + 1 if level < 9 else None  # 9 means body text
    return None


def _table(table: DocxTable, page: int) -> Table:
    rows = []
    for row in table.rows:
        cells = [cell.text.replace("\n", " ").strip() for cell in row.cells]
        # Merged cells repeat in python-docx's grid; keep each once.
        rows.append([c for i, c in enumerate(cells) if i == 0 or row.cells[i]._tc is not row.cells[i - 1]._tc])
    return Table(
        "\n".join(" | ".join(row) for row in rows),
        metadata=ElementMetadata(page_number=page, text_as_html=rows_to_html(rows)),
    )


def _file_metadata(document: Document) -> dict:
    props = document.core_properties
    found = {
        "title": props.title, "author": props.author,
        "created": props.created.isoformat() if props.created else None,
    }
    return {k: v for k, v in found.items() if v}
