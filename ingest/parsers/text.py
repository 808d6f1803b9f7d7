"""Markdown and plain text: `#` lines are headings, blank lines separate paragraphs.

Fenced code blocks are kept as they are (a `#` comment in them is no heading).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import charset_normalizer
from unstructured.documents.elements import Element, ListItem, NarrativeText, Title

from . import ParsedDocument, ParseError, ParseOptions, too_large
from .elements import element_metadata, join_lines

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_FENCE = re.compile(r"^\s*(```|~~~)")
_BOMS = (("utf-32", codecs.BOM_UTF32_LE), ("utf-32", codecs.BOM_UTF32_BE), ("utf-8-sig", codecs.BOM_UTF8),
         ("utf-16", codecs.BOM_UTF16_LE), ("utf-16", codecs.BOM_UTF16_BE))
_NOT_ASCII = re.compile(rb"[\x80-\xff]")
_LINE_PIECE = 1 << 20  # characters
# How many bytes of a file that is not UTF-8 its encoding is told from: enough, and quick.
_DETECTION_SAMPLE = 256 * 1024
_LEGACY_ENCODINGS = ["utf_16_le", "utf_16_be", "gb18030", "big5", "cp932", "euc_kr", "cp1251", "cp1252"]


def parse_text(path: Path, options: ParseOptions) -> ParsedDocument:
    encoding = _bom_encoding(path)
    try:
        return _parse_lines(path, encoding or "utf-8", options)
    except UnicodeDecodeError:
        if encoding:  # a BOM that the rest of the file belies
            raise ParseError("corrupt", f"not {encoding.upper()} text, although it starts as such") from None
    encoding = _detected_encoding(path)
    try:
        return _parse_lines(path, encoding, options)
    except UnicodeDecodeError:
        raise ParseError("corrupt", f"not text in a known encoding (neither UTF-8 nor {encoding})") from None


def _bom_encoding(path: Path) -> str | None:
    """The encoding a byte order mark names (UTF-32's marks begin as UTF-16's, so first)."""
    with path.open("rb") as f:
        start = f.read(4)
    return next((encoding for encoding, bom in _BOMS if start.startswith(bom)), None)


def _detected_encoding(path: Path) -> str:
    """The likeliest of the encodings text files in pgkb's languages are found in, told from
    the file's bytes from its first one that is not ASCII (plain ASCII, which every one of
    them reads alike, would only blur the choice). Without the limited choice,
    charset-normalizer takes French text for Mac Central European and German for Baltic."""
    sample = b""
    with path.open("rb") as f:
        for piece in iter(lambda: f.read(_DETECTION_SAMPLE), b""):
            if found := _NOT_ASCII.search(piece):
                start = found.start() - found.start() % 2  # where a UTF-16 character starts
                sample = piece[start:] + f.read(start)
                break
    best = charset_normalizer.from_bytes(sample, cp_isolation=_LEGACY_ENCODINGS).best()
    if best is None:
        raise ParseError("corrupt", "not text in a known encoding (UTF-8, UTF-16, GB18030, Big5, "
                                    "Shift JIS, EUC-KR, Windows-1251 or -1252)")
    return best.encoding


def decoded(data: bytes, declared: str | None = None) -> str | None:
    """Bytes read whole (a web page, a CSV file) as text: in the encoding a byte order mark
    names, else the one the file declares, else UTF-8, else the likeliest of the legacy
    encodings; None when none of them reads it."""
    bom = next((encoding for encoding, mark in _BOMS if data.startswith(mark)), None)
    for encoding in (bom, declared, "utf-8"):
        if encoding:
            try:
                return data.decode(encoding)
            except (UnicodeDecodeError, LookupError):  # LookupError: a declared encoding Python does not know
                pass
    guessed = charset_normalizer.from_bytes(data[:_DETECTION_SAMPLE], cp_isolation=_LEGACY_ENCODINGS).best()
    try:
        return data.decode(guessed.encoding) if guessed else None
    except UnicodeDecodeError:
        return None


def text_elements(text: str) -> list[Element]:
    """The elements of plain text held in memory (an e-mail's body)."""
    return _document(text.splitlines()).elements


def _parse_lines(path: Path, encoding: str, options: ParseOptions) -> ParsedDocument:
    """The document, read line by line: a file's text is held once, in its elements."""
    with path.open(encoding=encoding) as f:
        document = _document(_lines(f, options.max_chars))
    if encoding not in ("utf-8", "utf-8-sig"):
        document.metadata["encoding"] = encoding
    return document


def _lines(f, max_chars: int | None) -> Iterator[str]:
    read = 0
    # A line longer than a piece comes in pieces, lines of one paragraph: no line of a
    # file without line breaks is held whole before it is counted.
    for line in iter(lambda: f.readline(_LINE_PIECE), ""):
        read += len(line)
        if max_chars is not None and read > max_chars:
            raise too_large(max_chars)  # before the rest is read
        # Besides newlines, str.splitlines ends a line at the separators Unicode defines.
        yield from line.splitlines()


def _document(lines: Iterable[str]) -> ParsedDocument:
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

    for line in lines:
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
