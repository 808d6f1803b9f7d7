"""Word (.docx): headings by style or outline level, lists, tables, page breaks.

python-docx opens the package and gives the styles and core properties; the body is read
from its XML directly, as Word shows the document with every tracked change accepted:
inserted and moved-in text is kept, deleted and moved-away text is not. Comments, headers
and footers live in other parts of the package and never reach the body; hidden text and
field instructions are skipped. Tables are read from their own rows and cells, which also
reads files whose column grid python-docx cannot map (it raises on them).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.oxml.ns import qn
from lxml import etree
from unstructured.documents.elements import Element, ListItem, NarrativeText, Title

from . import ParsedDocument, ParseError, ParseOptions
from .elements import cell_text, element_metadata, table
from .office import refuse_encrypted

_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)
HEADING_MAX_CHARS = 150  # longer paragraphs are text, whatever their type
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_MATH_TEXT = "{http://schemas.openxmlformats.org/officeDocument/2006/math}t"
# Subtrees whose text Word does not show: deletions, text moved away, properties, the
# duplicate (fallback) copy of drawings and text boxes.
_NOT_SHOWN = {qn("w:del"), qn("w:moveFrom"), qn("w:pPr"), qn("w:rPr"), qn("w:sdtPr"), _MC_FALLBACK}
_CONTAINERS = {qn("w:sdt"), qn("w:customXml")}  # block-level wrappers to read through


@dataclass(frozen=True)
class _Style:
    name: str
    based_on: str | None
    outline_level: int | None
    numbered: bool
    size: float | None      # the font size and weight it sets, if it sets them
    bold: bool | None


def parse_docx(path: Path, options: ParseOptions) -> ParsedDocument:
    refuse_encrypted(path, "Word")
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, etree.XMLSyntaxError) as exc:
        raise ParseError("corrupt", f"not a readable Word file ({exc})") from None
    body = document.element.body
    reader = _BodyReader(_styles(document), rendered_breaks=bool(body.xpath(".//w:lastRenderedPageBreak")))
    elements = list(reader.blocks(body))
    if not any(e.category == "Title" for e in elements):
        elements = _headings_from_type(elements, reader.looks)
    return ParsedDocument(elements, _file_metadata(document))


def _styles(document) -> dict[str, _Style]:
    styles = {}
    for style in document.styles.element.findall(qn("w:style")):
        name = style.find(qn("w:name"))
        based_on = style.find(qn("w:basedOn"))
        outline = style.find(f"{qn('w:pPr')}/{qn('w:outlineLvl')}")
        styles[style.get(qn("w:styleId"))] = _Style(
            name=name.get(qn("w:val")) if name is not None else "",
            based_on=based_on.get(qn("w:val")) if based_on is not None else None,
            outline_level=_number(outline),
            numbered=style.find(f"{qn('w:pPr')}/{qn('w:numPr')}") is not None,
            size=_size(style.find(qn("w:rPr"))), bold=_bold(style.find(qn("w:rPr"))),
        )
    return styles


def _number(element) -> int | None:
    """An element's w:val as a whole number; None when it has none (or a malformed one)."""
    value = element.get(qn("w:val"), "") if element is not None else ""
    return int(value) if value.isdigit() else None


def _size(run_properties) -> float | None:
    half_points = _number(run_properties.find(qn("w:sz"))) if run_properties is not None else None
    return half_points / 2 if half_points is not None else None


def _bold(run_properties) -> bool | None:
    bold = run_properties.find(qn("w:b")) if run_properties is not None else None
    return _on(bold) if bold is not None else None


@dataclass
class _Text:
    """A paragraph's text as it is gathered, and the page its first visible character is on."""

    parts: list[str]
    page: int

    def __str__(self) -> str:
        return "".join(self.parts)


class _BodyReader:
    """Walks the body in order, keeping count of pages.

    Pages are counted from the breaks Word recorded when it last laid the file out
    (w:lastRenderedPageBreak) when there are any, else from explicit page breaks.
    """

    def __init__(self, styles: dict[str, _Style], rendered_breaks: bool):
        self.styles = styles
        self.rendered_breaks = rendered_breaks
        self.page = 1
        self.looks: dict[int, tuple[float, bool]] = {}  # id(body paragraph) -> its type's size and weight

    def blocks(self, container) -> Iterator[Element]:
        for child in container:
            if child.tag == qn("w:p"):
                element = self.paragraph(child)
            elif child.tag == qn("w:tbl"):
                element = self.table(child)
            elif child.tag in _CONTAINERS:
                content = child.find(qn("w:sdtContent")) if child.tag == qn("w:sdt") else child
                yield from self.blocks(content if content is not None else ())
                continue
            else:
                continue
            if element is not None:
                yield element

    def paragraph(self, p) -> Element | None:
        properties = p.find(qn("w:pPr"))
        if not self.rendered_breaks and properties is not None and _on(properties.find(qn("w:pageBreakBefore"))):
            self.page += 1
        gathered = self.text(p)
        text = str(gathered).strip()
        if not text:
            return None
        metadata = element_metadata(page_number=gathered.page)
        chain = self.style_chain(properties)
        depth = _heading_depth(properties, chain)
        if depth is not None:
            metadata.category_depth = depth
            return Title(text, metadata=metadata)
        numbering = properties.find(qn("w:numPr")) if properties is not None else None
        if _numbered(numbering) or any(s.numbered or "list" in s.name.lower() for s in chain):
            level = numbering.find(qn("w:ilvl")) if numbering is not None else None
            metadata.category_depth = _number(level) or 0
            return ListItem(text, metadata=metadata)
        element = NarrativeText(text, metadata=metadata)
        self.looks[id(element)] = _look(p, chain)
        return element

    def text(self, p) -> _Text:
        """The paragraph's shown text; page breaks met on the way move the page on."""
        gathered = _Text([], self.page)
        self._collect(p, gathered)
        return gathered

    def _collect(self, element, gathered: _Text) -> None:
        for child in element:
            tag = child.tag
            if tag in _NOT_SHOWN or not isinstance(tag, str):  # comments and processing instructions
                continue
            if tag == qn("w:r") and _hidden(child):
                continue
            if tag in (qn("w:t"), _MATH_TEXT):
                gathered.parts.append(_run_text(child))
            elif tag == qn("w:tab"):
                gathered.parts.append("\t")
            elif tag == qn("w:noBreakHyphen"):
                gathered.parts.append("-")
            elif tag in (qn("w:br"), qn("w:cr")):
                if child.get(qn("w:type")) == "page" and not self.rendered_breaks:
                    self._page_break(gathered)
                else:
                    gathered.parts.append("\n")
            elif tag == qn("w:lastRenderedPageBreak"):
                self._page_break(gathered)
            elif tag == qn("w:txbxContent"):  # a text box anchored here: its text runs in
                gathered.parts.append(" " + " ".join(str(self.text(p)) for p in child.iter(qn("w:p"))) + " ")
            else:
                self._collect(child, gathered)

    def _page_break(self, gathered: _Text) -> None:
        self.page += 1
        if not str(gathered).strip():
            gathered.page = self.page  # nothing shown yet: the paragraph starts on the new page

    def table(self, tbl) -> Element | None:
        page = self.page
        rows = []
        for tr in tbl.findall(qn("w:tr")):
            if tr.find(f"{qn('w:trPr')}/{qn('w:del')}") is not None:
                continue  # a deleted row
            cells = []
            for tc in tr.findall(qn("w:tc")):
                merge = tc.find(f"{qn('w:tcPr')}/{qn('w:vMerge')}")
                # Nested tables' paragraphs are part of their cell's text.
                text = cell_text(" ".join(str(self.text(p)) for p in tc.iter(qn("w:p"))))
                continues_above = merge is not None and merge.get(qn("w:val"), "continue") == "continue"
                cells.append("" if continues_above else text)
            if any(cells):
                rows.append(cells)
        return table(rows, page) if rows else None

    def style_chain(self, properties) -> list[_Style]:
        """The paragraph's style and the styles it is based on, nearest first."""
        style_ref = properties.find(qn("w:pStyle")) if properties is not None else None
        style = self.styles.get(style_ref.get(qn("w:val")) if style_ref is not None else "Normal")
        chain: list[_Style] = []
        while style is not None and style not in chain and len(chain) < 20:
            chain.append(style)
            style = self.styles.get(style.based_on) if style.based_on else None
        return chain


def _run_text(t) -> str:
    """A w:t's text, with what follows an entity reference or a comment inside it (the tail
    of that node). The entity itself is left out, not expanded: only a file's own DTD could
    declare one, which Word never writes, and expanding them is how entity bombs work."""
    return (t.text or "") + "".join(node.tail or "" for node in t)


def _look(p, chain: list[_Style]) -> tuple[float, bool]:
    """The font size of most of a paragraph's text, and whether all of it is bold."""
    style_size = next((s.size for s in chain if s.size is not None), 0.0)
    style_bold = next((s.bold for s in chain if s.bold is not None), False)
    sizes: dict[float, int] = {}
    bold = True
    for run in p.iter(qn("w:r")):
        chars = sum(len(_run_text(t)) for t in run.iter(qn("w:t")))
        if not chars:
            continue
        properties = run.find(qn("w:rPr"))
        size = _size(properties)
        sizes[size if size is not None else style_size] = sizes.get(size if size is not None else style_size, 0) + chars
        run_bold = _bold(properties)
        bold = bold and (run_bold if run_bold is not None else style_bold)
    return (max(sizes, key=sizes.__getitem__) if sizes else style_size), bold and bool(sizes)


def _headings_from_type(elements: list[Element], looks: dict[int, tuple[float, bool]]) -> list[Element]:
    """For a file without heading styles: short paragraphs in larger type than the body's, or
    all bold where the body is not, become headings; larger type is a shallower heading."""
    chars: dict[tuple[float, bool], int] = {}
    for element in elements:
        if id(element) in looks:
            chars[looks[id(element)]] = chars.get(looks[id(element)], 0) + len(element.text)
    if not chars:
        return elements
    body_size, body_bold = max(chars, key=chars.__getitem__)

    def heading(element: Element) -> bool:
        size, bold = looks.get(id(element), (0.0, False))
        return (len(element.text) <= HEADING_MAX_CHARS and "\n" not in element.text
                and (size >= body_size * 1.15 or (bold and not body_bold and size >= body_size)))

    headings = [e for e in elements if heading(e)]
    if chars[(body_size, body_bold)] < sum(chars.values()) / 2 or len(headings) > len(looks) / 3:
        return elements  # no clear body type to stand out from
    styles = sorted({looks[id(e)] for e in headings}, key=lambda look: (-look[0], not look[1]))
    depth_of = {look: depth for depth, look in enumerate(styles)}
    return [Title(e.text, metadata=element_metadata(page_number=e.metadata.page_number,
                                                    category_depth=depth_of[looks[id(e)]]))
            if heading(e) else e for e in elements]


def _heading_depth(properties, chain: list[_Style]) -> int | None:
    """0 for Title, N for Heading N, or outline level (0-based) plus one; None for body text."""
    own = _number(properties.find(qn("w:outlineLvl"))) if properties is not None else None
    if own is not None:
        return own + 1 if own < 9 else None  # 9 means body text
    for style in chain:
        if style.name.lower() == "title":
            return 0
        match = _HEADING_STYLE.match(style.name)
        if match:
            return int(match.group(1))
        if style.outline_level is not None:
            return style.outline_level + 1 if style.outline_level < 9 else None
    return None


def _numbered(numbering) -> bool:
    if numbering is None:
        return False
    num_id = numbering.find(qn("w:numId"))
    return num_id is not None and num_id.get(qn("w:val")) != "0"  # numId 0 switches numbering off


def _on(toggle) -> bool:
    return toggle is not None and toggle.get(qn("w:val"), "true") not in ("0", "false", "off")


def _hidden(run) -> bool:
    properties = run.find(qn("w:rPr"))
    return properties is not None and _on(properties.find(qn("w:vanish")))


def _file_metadata(document) -> dict:
    try:
        props = document.core_properties
        found = {
            "title": (props.title or "").strip(), "author": (props.author or "").strip(),
            "created": props.created.isoformat() if props.created else None,
        }
    except (ValueError, TypeError):  # a malformed core-properties part: the body still counts
        return {}
    return {k: v for k, v in found.items() if v}
