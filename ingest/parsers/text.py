"""Markdown and plain text: `#` lines are headings, blank lines separate paragraphs.

Fenced code blocks are kept as they are (a `#` comment in them is no heading).
"""

from __future__ import annotations

import re
from pathlib import Path

from unstructured.documents.elements import Element, ListItem, NarrativeText, Title

from . import ParseError, ParsedDocument, ParseOptions
from .elements import element_metadata, join_lines

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_FENCE = re.compile(r"^\s*(```|~~~)")


def parse_text(path: Path, options: ParseOptions) -> ParsedDocument:
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ParseError("corrupt", "not UTF-8 text") from None
    elements: list[Element] = []
    paragraph: list[str] = []
    fence: str | None = None  # the marker of the open code block

    def flush():
        if not paragraph:
            return
        if fence is not None:
            elements.append(NarrativeText("\n".join(paragraph), metadata=element_metadata()))
        elif _LIST_ITEM.match(paragraph[0]):
            elements.append(ListItem(join_lines([_LIST_ITEM.sub("", paragraph[0]), *paragraph[1:]]),
                                     metadata=element_metadata()))
        else:
            elements.append(NarrativeText(join_lines(paragraph), metadata=element_metadata()))
        paragraph.clear()

    for line in content.splitlines():
        marker = _FENCE.match(line)
        if fence is not None:  # inside a code block, until its closing fence
            paragraph.append(line)
            if marker and marker.group(1) == fence:
                flush()
                fence = None
            continue
        heading = _HEADING.match(line)
        if marker:
            flush()
            fence = marker.group(1)
            paragraph.append(line)
        elif heading:
            flush()
            elements.append(Title(heading.group(2), metadata=element_metadata(
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
