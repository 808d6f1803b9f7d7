"""PowerPoint (.pptx) through python-pptx: each slide a section, its number the page.

A slide's section is titled by its title placeholder, or "Slide N". Its text frames follow in
reading order (top to bottom, then left to right), grouped shapes opened, tables kept whole,
charts by their titles; the speaker notes come last, in a "Notes" section of their own, so
that a search hit says when it quotes the notes rather than the slide.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pptx
from pptx.exc import PackageNotFoundError
from pptx.shapes.group import GroupShape
from unstructured.documents.elements import Element, NarrativeText, Title

from . import ParsedDocument, ParseError, ParseOptions
from .elements import cell_text, element_metadata, table
from .office import refuse_encrypted

NOTES_TITLE = "Notes"


def parse_pptx(path: Path, options: ParseOptions) -> ParsedDocument:
    refuse_encrypted(path, "PowerPoint")
    try:
        presentation = pptx.Presentation(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ParseError("corrupt", f"not a readable PowerPoint file ({exc})") from None
    elements = [e for number, slide in enumerate(presentation.slides, 1) for e in _slide(slide, number)]
    return ParsedDocument(elements, _file_metadata(presentation))


def _slide(slide, number: int) -> list[Element]:
    title_shape = slide.shapes.title
    title = cell_text(title_shape.text_frame.text) if title_shape is not None else ""
    elements: list[Element] = [Title(title or f"Slide {number}",
                                     metadata=element_metadata(category_depth=0, page_number=number))]
    for shape in _in_reading_order(slide.shapes):
        if title_shape is None or shape.shape_id != title_shape.shape_id:
            elements += _shape(shape, number)
    notes = slide.notes_slide.notes_text_frame if slide.has_notes_slide else None
    paragraphs = _paragraphs(notes, number) if notes is not None else []
    if paragraphs:
        elements.append(Title(NOTES_TITLE, metadata=element_metadata(category_depth=1, page_number=number)))
        elements += paragraphs
    return elements


def _in_reading_order(shapes) -> list:
    return sorted(shapes, key=lambda shape: (shape.top or 0, shape.left or 0))


def _shape(shape, number: int) -> list[Element]:
    if isinstance(shape, GroupShape):
        return [e for inner in _in_reading_order(shape.shapes) for e in _shape(inner, number)]
    if shape.has_text_frame:
        return _paragraphs(shape.text_frame, number)
    if getattr(shape, "has_table", False) and shape.has_table:
        rows = [[cell_text(cell.text) for cell in row.cells] for row in shape.table.rows]
        return [table(rows, number)] if any(any(row) for row in rows) else []
    if getattr(shape, "has_chart", False) and shape.has_chart and shape.chart.has_title:
        chart_title = cell_text(shape.chart.chart_title.text_frame.text)
        return [NarrativeText(chart_title, metadata=element_metadata(page_number=number))] if chart_title else []
    return []


def _paragraphs(frame, number: int) -> list[Element]:
    texts = (cell_text(paragraph.text) for paragraph in frame.paragraphs)
    return [NarrativeText(text, metadata=element_metadata(page_number=number)) for text in texts if text]


def _file_metadata(presentation) -> dict:
    props = presentation.core_properties
    found = {
        "title": (props.title or "").strip(), "author": (props.author or "").strip(),
        "created": props.created.isoformat() if props.created else None,
        "slides": len(presentation.slides),
    }
    return {k: v for k, v in found.items() if v}
