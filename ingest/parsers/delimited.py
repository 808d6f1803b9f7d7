"""CSV and TSV files, read like a spreadsheet's sheet (ingest.parsers.xlsx): one section named
after the file, its rows one table whose header row the chunker repeats in every chunk."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from . import ParsedDocument, ParseError, ParseOptions, too_large
from .elements import cell_text
from .text import decoded
from .xlsx import sheet_elements

_DELIMITERS = ",;\t|"  # the first wins a tie


def parse_csv(path: Path, options: ParseOptions) -> ParsedDocument:
    if options.max_chars is not None and path.stat().st_size > 4 * options.max_chars:
        raise too_large(options.max_chars)  # more bytes than any encoding spends on that many characters
    text = decoded(path.read_bytes())
    if text is None:
        raise ParseError("corrupt", "not text in a known encoding")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _delimiter(text)
    try:
        rows = [[cell_text(cell) for cell in row]
                for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)]
    except csv.Error as exc:
        raise ParseError("corrupt", f"not a readable CSV file ({exc})") from None
    return ParsedDocument(sheet_elements(path.stem, rows))


def _delimiter(text: str) -> str:
    """The delimiter of a .csv file: the comma, or the semicolon Excel writes where the comma is
    the decimal separator (or a tab or a bar): whichever most of its first lines hold."""
    lines = [line for line in text[:64 * 1024].splitlines()[:50] if line.strip()]
    return max(_DELIMITERS, key=lambda delimiter: sum(1 for line in lines if delimiter in line))
