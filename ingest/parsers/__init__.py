"""File -> unstructured Elements. A parser never touches the database or the model.

Each parser returns the document's Elements (Title with category_depth, NarrativeText,
ListItem, Table with text_as_html...), each with metadata.page_number where the format has
pages, plus the file-level metadata it found (title, author, dates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from unstructured.documents.elements import Element


class ParseError(Exception):
    """A file pgkb cannot read; `reason` is short and stable (encrypted, corrupt, empty...)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class ParsedDocument:
    elements: list[Element]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str | None:
        return self.metadata.get("title")


def parse(path: Path, media_type: str) -> ParsedDocument:
    """Parse one file, or raise ParseError saying why not."""
    from . import docx, pdf, text

    parsers: dict[str, Callable[[Path], ParsedDocument]] = {
        "application/pdf": pdf.parse_pdf,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document": docx.parse_docx,
        "text/markdown": text.parse_text,
        "text/plain": text.parse_text,
    }
    if path.stat().st_size == 0:
        raise ParseError("empty file")
    document = parsers[media_type](path)
    for element in document.elements:
        # PostgreSQL text cannot hold NUL, which odd PDFs and Word files do contain.
        element.text = element.text.replace("\x00", "")
    if not any(element.text.strip() for element in document.elements):
        raise ParseError("no text")
    return document
