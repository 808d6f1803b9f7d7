"""Helpers the parsers share: table elements with HTML, and joining wrapped lines of text."""

from __future__ import annotations

import html
import inspect

from unstructured.documents.elements import Element, ElementMetadata, Table, Title

# Chinese and Japanese are written without spaces between words: a line break inside such
# text must not become a space. (Korean spaces its words, so Hangul is not among these.)
_NO_SPACE_RANGES = (("\u2e80", "\u2fdf"), ("\u3000", "\u30ff"), ("\u3400", "\u4dbf"),
                    ("\u4e00", "\u9fff"), ("\uf900", "\ufaff"), ("\uff00", "\uffef"))
_HYPHENS = "-\u2010\u00ad"  # ASCII hyphen, Unicode hyphen, soft hyphen
_METADATA_FIELDS = frozenset(inspect.signature(ElementMetadata.__init__).parameters) - {"self", "filename"}


def _no_space(char: str) -> bool:
    return char >= _NO_SPACE_RANGES[0][0] and any(low <= char <= high for low, high in _NO_SPACE_RANGES)


def table(rows: list[list[str]], page_number: int | None) -> Table:
    """A Table element: cells joined by ' | ', one row per line, the first row its header."""
    return Table(
        "\n".join(" | ".join(row) for row in rows),
        metadata=element_metadata(page_number=page_number, text_as_html=rows_to_html(rows)),
    )


def nested(elements: list[Element], levels: int = 1) -> list[Element]:
    """`elements` with every heading `levels` deeper: a part placed under a heading of its
    own (an e-mail's body under its subject, an EPUB chapter under its title)."""
    for element in elements:
        if isinstance(element, Title):
            element.metadata.category_depth = (element.metadata.category_depth or 0) + levels
    return elements


def element_metadata(**fields) -> ElementMetadata:
    """ElementMetadata holding these fields. Its own __init__ sets all of its 45 fields one by
    one through a Python __setattr__, which came to a sixth of the time spent parsing a PDF;
    this stores the fields given, as that __setattr__ would (None means absent)."""
    if not fields.keys() <= _METADATA_FIELDS:
        raise TypeError(f"not ElementMetadata fields: {sorted(fields.keys() - _METADATA_FIELDS)}")
    metadata = ElementMetadata.__new__(ElementMetadata)
    metadata.__dict__.update((name, value) for name, value in fields.items() if value is not None)
    return metadata


def reduce_metadata(metadata: ElementMetadata) -> tuple:
    """How a worker pickles ElementMetadata: its fields as one dict. Unpickled the ordinary
    way, each object runs ElementMetadata.__getattr__, which makes loading a parsed document
    cost about as much as parsing it."""
    return _restore_metadata, (metadata.__dict__,)


def _restore_metadata(fields: dict) -> ElementMetadata:
    metadata = ElementMetadata.__new__(ElementMetadata)
    metadata.__dict__.update(fields)
    return metadata


def rows_to_html(rows: list[list[str]]) -> str:
    def row_html(row: list[str], tag: str) -> str:
        return "<tr>" + "".join(f"<{tag}>{html.escape(cell)}</{tag}>" for cell in row) + "</tr>"

    head, body = rows[:1], rows[1:]
    return ("<table><thead>" + "".join(row_html(r, "th") for r in head) + "</thead><tbody>"
            + "".join(row_html(r, "td") for r in body) + "</tbody></table>")


def cell_text(text: str) -> str:
    """A table cell's text on one line."""
    return " ".join(text.split())


def join_lines(lines: list[str]) -> str:
    """Wrapped lines back into one paragraph.

    A word hyphenated at a line end is mended when the next line goes on in lower case;
    lines of Chinese or Japanese join without a space.
    """
    text = ""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if not text:
            text = line
        elif text[-1] in _HYPHENS and len(text) > 1 and text[-2].isalpha() and line[0].islower():
            text = text[:-1] + line
        elif _no_space(text[-1]) or _no_space(line[0]):
            text += line
        else:
            text = f"{text} {line}"
    return text.replace("\u00ad", "")
