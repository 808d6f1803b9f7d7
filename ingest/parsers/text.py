"""Markdown and plain text: `#` lines are headings, blank lines separate paragraphs."""

from __future__ import annotations

import re
from pathlib import Path

from unstructured.documents.elements import Element, ElementMetadata, ListItem, NarrativeText, Title

from . import ParseError, ParsedDocument

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


def parse_text(path: Path) -> ParsedDocument:
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ParseError("corrupt", "not UTF-8 text") from None
    elements: list[Element] = []
    paragraph: list[str] = []

    def flush():
        if paragraph:
            text = " ".join(line.strip() for line in paragraph)
            kind = ListItem if _LIST_ITEM.match(paragraph[0]) else NarrativeText
            elements.append(kind(_LIST_ITEM.sub("", text) if kind is ListItem else text,
                                 metadata=ElementMetadata()))
            paragraph.clear()

    for line in content.splitlines():
        heading = _HEADING.match(line)
        if heading:
            flush()
            elements.append(Title(heading.group(2), metadata=ElementMetadata(
                category_depth=len(heading.group(1)) - 1)))
        elif not line.strip() or _LIST_ITEM.match(line):
            flush()
            if line.strip():
                paragraph.append(line)
        else:
            paragraph.append(line)
    flush()
    title = next((e.text for e in elements if isinstance(e, Title)), None)
    return ParsedDocument(elements, {"title": title} if title else {})
