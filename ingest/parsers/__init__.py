"""File -> unstructured Elements. A parser never touches the database or the model.

Each parser returns the document's Elements (Title with category_depth, NarrativeText,
ListItem, Table with text_as_html...), each with metadata.page_number where the format has
pages, plus the file-level metadata it found (title, author, dates). `parse` runs a parser in
this process; `ParserPool` (ingest.parsers.pool) runs it in a worker process under a time
and a memory limit, which is how the ingest run calls it.

A container (an e-mail) also returns the files it holds as Attachments, unparsed: the ingest
run makes each its own document, keyed under the container's (`mail.eml/report.pdf`), and
parses it like a file of the folder, in a worker of its own (ingest.stages).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unstructured.documents.elements import Element

from pgkb.errors import ParseError
from pgkb.settings import default

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def too_large(max_chars: int) -> ParseError:
    return ParseError("too large", f"more than {max_chars:,} characters of text (PGKB_MAX_DOCUMENT_CHARS)")


@dataclass(frozen=True)
class ParseOptions:
    """What a parser needs besides the file."""

    # Tried in order on encrypted PDFs after the empty password; never logged or shown.
    passwords: tuple[str, ...] = field(default=(), repr=False)
    # Tesseract languages for pages without a text layer ("eng+chi_sim"); "none" or "" turns OCR off.
    ocr_languages: str = default("ocr_languages")
    # The most characters of text a document may hold; None: no limit.
    max_chars: int | None = None


@dataclass(frozen=True)
class Attachment:
    """A file a document holds: its name (one path segment, unique within the document) and bytes."""

    name: str
    data: bytes = field(repr=False)


@dataclass
class ParsedDocument:
    elements: list[Element]
    metadata: dict[str, Any] = field(default_factory=dict)
    # What the user should hear about although the file was read (pages without text...).
    warnings: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)

    @property
    def title(self) -> str | None:
        return self.metadata.get("title")


def parse(path: Path, media_type: str, options: ParseOptions = ParseOptions()) -> ParsedDocument:
    """Parse one file in this process, or raise ParseError saying why not."""
    from . import delimited, docx, epub, image, legacy, mail, pdf, slides, text, web, xlsx

    parsers: dict[str, Callable[[Path, ParseOptions], ParsedDocument]] = {
        "application/pdf": pdf.parse_pdf,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document": docx.parse_docx,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": xlsx.parse_xlsx,
        "application/vnd.openxmlformats-officedocument.presentationml.presentation": slides.parse_pptx,
        "text/markdown": text.parse_text,
        "text/plain": text.parse_text,
        "text/html": web.parse_html,
        "text/csv": delimited.parse_csv,
        "text/tab-separated-values": delimited.parse_csv,
        "message/rfc822": mail.parse_eml,
        "application/vnd.ms-outlook": mail.parse_msg,
        "application/epub+zip": epub.parse_epub,
        **{kind: functools.partial(legacy.parse_legacy, media_type=kind) for kind in legacy.MEDIA_TYPES},
        **dict.fromkeys(image.MEDIA_TYPES, image.parse_image),
    }
    if path.stat().st_size == 0:
        raise ParseError("empty file")
    document = parsers[media_type](path, options)
    # Refused here, in the parser's worker, the text never reaches the main process.
    if options.max_chars is not None and sum(len(e.text) for e in document.elements) > options.max_chars:
        raise too_large(options.max_chars)
    for element in document.elements:
        # Control characters say nothing to a reader, and PostgreSQL text cannot hold NUL,
        # which odd PDFs and Word files do contain.
        element.text = _CONTROL.sub("", element.text)
    if not any(element.text.strip() for element in document.elements):
        raise ParseError("no text")
    return document
