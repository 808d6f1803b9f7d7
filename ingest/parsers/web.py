"""HTML (.html, .htm, saved web pages) through lxml: headings h1-h6 as sections, paragraphs,
list items, tables whole; <title> and the description, keywords and author meta tags as
the document's metadata. Navigation, scripts, styles, headers, footers and asides are
dropped: a saved page's menus would otherwise repeat in every search.

E-mail bodies and EPUB chapters are HTML too: `html_elements` reads them from text.
"""

from __future__ import annotations

import re
from pathlib import Path

import lxml.html
from lxml import etree
from unstructured.documents.elements import Element, ListItem, NarrativeText, Title

from . import ParsedDocument, ParseError, ParseOptions
from .elements import cell_text, element_metadata, table
from .text import decoded

# Not content: left out with all they hold.
_DROPPED = frozenset({"nav", "script", "style", "header", "footer", "aside", "noscript", "template", "svg",
                      "form", "button", "iframe", "object", "head"})
_HEADINGS = {f"h{level}": level - 1 for level in range(1, 7)}
_PARAGRAPHS = frozenset({"p", "pre", "blockquote", "address", "figcaption", "caption", "dt", "dd", "summary"})
# Elements that end a run of inline text (the text before and after them are two paragraphs).
_BLOCKS = frozenset({"div", "section", "article", "main", "body", "html", "ul", "ol", "dl", "li", "table", "tr",
                     "td", "th", "figure", "details", "center", "fieldset", "hr", "br", *_HEADINGS, *_PARAGRAPHS})
_CONTAINERS_IN_TABLE = ".//table|.//p|.//div|.//h1|.//h2|.//h3|.//ul|.//ol"
_META_FIELDS = {"description": "description", "keywords": "keywords", "author": "author"}
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_DECLARED_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)


def parse_html(path: Path, options: ParseOptions) -> ParsedDocument:
    data = path.read_bytes()
    text = decoded(data, _declared_charset(data))
    if text is None:
        raise ParseError("corrupt", "not text in a known encoding")
    elements, metadata = html_elements(text)
    return ParsedDocument(elements, metadata)


def _declared_charset(data: bytes) -> str | None:
    found = _DECLARED_CHARSET.search(data[:4096])
    return found.group(1).decode("ascii") if found else None


def html_elements(text: str) -> tuple[list[Element], dict[str, str]]:
    """The elements of an HTML document, and its title and meta tags as metadata."""
    text = _XML_DECLARATION.sub("", text)  # lxml refuses a str that declares its encoding
    if not text.strip():
        return [], {}
    try:
        root = lxml.html.document_fromstring(text)
    except (etree.ParserError, ValueError) as exc:
        raise ParseError("corrupt", f"not readable HTML ({exc})") from None
    metadata = _metadata(root)
    reader = _Reader()
    body = root.find("body")
    reader.visit(body if body is not None else root)
    reader.flush()
    return reader.elements, metadata


def _metadata(root) -> dict[str, str]:
    found = {}
    title = root.findtext(".//head/title") or root.findtext(".//title")
    if title and title.strip():
        found["title"] = cell_text(title)
    for meta in root.iterfind(".//meta"):
        name = _META_FIELDS.get((meta.get("name") or "").strip().lower())
        content = cell_text(meta.get("content") or "")
        if name and content:
            found[name] = content
    return found


class _Reader:
    """Walks the tree in document order, gathering inline text into paragraphs."""

    def __init__(self):
        self.elements: list[Element] = []
        self.inline: list[str] = []

    def visit(self, node) -> None:
        tag = node.tag.lower() if isinstance(node.tag, str) else None  # None: a comment or processing instruction
        if tag is None or tag in _DROPPED:
            return
        if tag in _HEADINGS:
            self._block(Title, node, category_depth=_HEADINGS[tag])
        elif tag in _PARAGRAPHS:
            self._block(NarrativeText, node)
        elif tag == "table" and not node.xpath(_CONTAINERS_IN_TABLE):
            self.flush()
            rows = _rows(node)
            if rows:
                self.elements.append(table(rows, None))
        elif tag == "li":
            self.flush()
            self._children(node, skip_lists=True)
            self.flush(ListItem)
            for nested in node:
                if nested.tag in ("ul", "ol"):
                    self.visit(nested)
        elif tag in _BLOCKS:
            self.flush()
            self._children(node)
            self.flush()
        else:  # inline: its text runs on with what surrounds it
            self._children(node)

    def _children(self, node, skip_lists: bool = False) -> None:
        if node.text:
            self.inline.append(node.text)
        for child in node:
            if not (skip_lists and child.tag in ("ul", "ol")):
                self.visit(child)
            if child.tail:
                self.inline.append(child.tail)

    def _block(self, kind, node, **metadata) -> None:
        self.flush()
        text = node.text_content() if kind is Title else _text_without_dropped(node)
        text = text.strip("\n") if node.tag == "pre" else cell_text(text)
        if text:
            self.elements.append(kind(text, metadata=element_metadata(**metadata)))

    def flush(self, kind=NarrativeText) -> None:
        text = cell_text("".join(self.inline))
        self.inline.clear()
        if text:
            self.elements.append(kind(text, metadata=element_metadata()))


def _text_without_dropped(node) -> str:
    for dropped in node.xpath(".//script|.//style|.//noscript"):
        dropped.drop_tree()
    return node.text_content()


def _rows(table_node) -> list[list[str]]:
    rows = [[cell_text(cell.text_content()) for cell in row.xpath("./th|./td")]
            for row in table_node.xpath("./tr|./thead/tr|./tbody/tr|./tfoot/tr")]
    rows = [row for row in rows if any(row)]
    if not rows:
        return []
    width = max(len(row) for row in rows)
    return [row + [""] * (width - len(row)) for row in rows]
