"""Excel (.xlsx) through openpyxl in read-only mode: each sheet a titled section, its rows a table.

A sheet's header row is its first row with two or more filled cells; rows above it (a report
title, a note) are kept as text. The chunker splits a long table at row boundaries and
repeats the header row in every piece, so a chunk from row 5,000 still names its columns.
Cells hold the values Excel last calculated: formulas are not evaluated again.
"""

from __future__ import annotations

import warnings
import zipfile
from datetime import date, datetime, time
from pathlib import Path

import openpyxl
from openpyxl.utils.exceptions import InvalidFileException
from unstructured.documents.elements import Element, NarrativeText, Title

from . import ParsedDocument, ParseError, ParseOptions
from .elements import cell_text, element_metadata, table
from .office import refuse_encrypted


def parse_xlsx(path: Path, options: ParseOptions) -> ParsedDocument:
    refuse_encrypted(path, "Excel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # openpyxl warns about styles and extensions it skips
        try:
            workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
            raise ParseError("corrupt", f"not a readable Excel file ({exc})") from None
        try:
            elements = [e for sheet in workbook.worksheets for e in _sheet(sheet)]
            metadata = _file_metadata(workbook)
        finally:
            workbook.close()
    return ParsedDocument(elements, metadata)


def _sheet(sheet) -> list[Element]:
    sheet.reset_dimensions()  # some writers record wrong dimensions: read every row there is
    return sheet_elements(sheet.title, [[_cell(value) for value in values]
                                        for values in sheet.iter_rows(values_only=True)])


def sheet_elements(title: str, rows: list[list[str]]) -> list[Element]:
    """A sheet's rows of cell texts (a CSV file's too) as a section titled `title`: the rows
    above the header row as text, the rest as one table."""
    rows = [row for row in map(_trimmed, rows) if row]
    if not rows:
        return []
    elements: list[Element] = [Title(title, metadata=element_metadata(category_depth=0))]
    header = next((i for i, row in enumerate(rows) if sum(1 for cell in row if cell) >= 2), len(rows))
    elements += [NarrativeText(" ".join(cell for cell in row if cell), metadata=element_metadata())
                 for row in rows[:header]]
    body = rows[header:]
    if body:
        first = min(next(i for i, cell in enumerate(row) if cell) for row in body)
        width = max(len(row) for row in body)
        elements.append(table([row[first:] + [""] * (width - len(row)) for row in body], None))
    return elements


def _trimmed(row: list[str]) -> list[str]:
    while row and not row[-1]:
        row.pop()
    return row


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.15g}"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return cell_text(str(value))


def _file_metadata(workbook) -> dict:
    props = workbook.properties
    found = {
        "title": (props.title or "").strip(), "author": (props.creator or "").strip(),
        "created": props.created.isoformat() if props.created else None,
        "sheets": len(workbook.worksheets),
    }
    return {k: v for k, v in found.items() if v}
