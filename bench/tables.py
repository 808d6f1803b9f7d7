"""Table structure, adjacency-relation F1: pgkb's PDF tables against PyMuPDF's find_tables().

    python -m bench.tables --data ../shared/eval/tables/icdar2013-eu

The data: PDFs, each with its ground truth beside it (`NAME.pdf`, `NAME-str.xml`: the ICDAR
2013 table competition's structure format; see ../shared/eval/tables/README.md). pgkb: the
Table elements of the real PDF parser (ingest's parse_pdf), their rows read from their HTML.
The peer: PyMuPDF's `page.find_tables()` on the same pages, in the same run.

The metric is the competition's: every non-empty cell is related to its nearest non-empty
neighbour to the right in its row and below in its column; a relation is (text of A, text of
B, direction), texts compared after normalisation (lower case, letters and digits only, so a
cell of only "-" is empty). A system's relations on the pages that hold ground-truth tables
are matched against the ground truth's (as multisets); precision and recall are
micro-averaged over all relations of all documents, and the mean of per-document F1 is given
beside them. Ground truths without their PDF are left out, and said so.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "eval" / "tables" / "icdar2013-eu"
PGKB, PEER = "pgkb", "pymupdf find_tables"
Relation = tuple[str, str, str]  # (text of A, text of B, "right" or "down")


@dataclass(frozen=True)
class Cell:
    row: int
    col: int
    end_row: int
    end_col: int
    text: str  # normalised


def normalised(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def relations(cells: Iterable[Cell]) -> Counter[Relation]:
    """The adjacency relations of one table: each non-empty cell to the nearest non-empty cell
    to its right in each row it spans, and below it in each column it spans."""
    filled = [cell for cell in cells if cell.text]
    found: Counter[Relation] = Counter()
    for cell in filled:
        neighbours: set[tuple[Cell, str]] = set()
        for row in range(cell.row, cell.end_row + 1):
            right = [c for c in filled if c.col > cell.end_col and c.row <= row <= c.end_row]
            if right:
                neighbours.add((min(right, key=lambda c: c.col), "right"))
        for col in range(cell.col, cell.end_col + 1):
            below = [c for c in filled if c.row > cell.end_row and c.col <= col <= c.end_col]
            if below:
                neighbours.add((min(below, key=lambda c: c.row), "down"))
        for neighbour, direction in neighbours:
            found[(cell.text, neighbour.text, direction)] += 1
    return found


def grid_cells(rows: list[list[str | None]]) -> list[Cell]:
    """A system's table (rows of cell texts, None or '' for an empty or merged-away cell) as cells."""
    return [Cell(r, c, r, c, normalised(text or "")) for r, row in enumerate(rows) for c, text in enumerate(row)]


def ground_truth(xml_path: Path) -> dict[int, list[list[Cell]]]:
    """Page (1-based) -> the cells of each of its tables, from an ICDAR 2013 `-str.xml` file."""
    pages: dict[int, list[list[Cell]]] = {}
    for region in ET.parse(xml_path).getroot().iter("region"):
        cells = []
        for cell in region.iter("cell"):
            row, col = int(cell.get("start-row", 0)), int(cell.get("start-col", 0))
            cells.append(Cell(row, col, int(cell.get("end-row", row)), int(cell.get("end-col", col)),
                              normalised(cell.findtext("content") or "")))
        pages.setdefault(int(region.get("page", 1)), []).append(cells)
    return pages


class _HtmlRows(HTMLParser):
    """The rows of cell texts of a Table element's text_as_html."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str | None]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def pgkb_tables(pdf: Path) -> dict[int, list[list[list[str | None]]]]:
    """Page -> the rows of each Table element pgkb's PDF parser makes of the file."""
    from ingest.parsers import ParseOptions
    from ingest.parsers.pdf import parse_pdf

    tables: dict[int, list[list[list[str | None]]]] = {}
    for element in parse_pdf(pdf, ParseOptions(ocr_languages="none")).elements:
        if type(element).__name__ == "Table":
            reader = _HtmlRows()
            reader.feed(element.metadata.text_as_html or "")
            tables.setdefault(element.metadata.page_number or 1, []).append(reader.rows)
    return tables


def peer_tables(pdf: Path, pages: Iterable[int]) -> dict[int, list[list[list[str | None]]]]:
    """Page -> the rows of each table PyMuPDF's find_tables() finds on it (its default settings)."""
    import pymupdf

    tables: dict[int, list[list[list[str | None]]]] = {}
    with pymupdf.open(pdf) as doc:
        for number in pages:
            if 1 <= number <= doc.page_count:
                tables[number] = [table.extract() for table in doc[number - 1].find_tables().tables]
    return tables


@dataclass
class Score:
    found: int = 0     # the system's relations
    expected: int = 0  # the ground truth's
    correct: int = 0

    def add(self, other: Score) -> None:
        self.found += other.found
        self.expected += other.expected
        self.correct += other.correct

    @property
    def precision(self) -> float:
        return self.correct / self.found if self.found else 0.0

    @property
    def recall(self) -> float:
        return self.correct / self.expected if self.expected else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def to_dict(self) -> dict:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "relations_found": self.found,
                "relations_expected": self.expected, "relations_correct": self.correct}


def score(truth: dict[int, list[list[Cell]]], found: dict[int, list[list[list[str | None]]]]) -> Score:
    """One document's score: the system's tables on the pages that hold ground-truth tables."""
    expected: Counter[Relation] = Counter()
    got: Counter[Relation] = Counter()
    for page, tables in truth.items():
        for cells in tables:
            expected += relations(cells)
        for rows in found.get(page, []):
            got += relations(grid_cells(rows))
    return Score(sum(got.values()), sum(expected.values()), sum((got & expected).values()))


def documents(data: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(PDF, ground truth) pairs under `data`, and the ground truths without their PDF."""
    pairs, orphans = [], []
    for xml_path in sorted(data.glob("*-str.xml")):
        pdf = xml_path.with_name(xml_path.name[: -len("-str.xml")] + ".pdf")
        if pdf.is_file():
            pairs.append((pdf, xml_path))
        else:
            orphans.append(xml_path.name)
    return pairs, orphans


def run(data: Path) -> dict:
    pairs, orphans = documents(data)
    if not pairs:
        raise SystemExit(f"bench.tables: no NAME.pdf with NAME-str.xml beside it under {data}")
    sides = {PGKB: Score(), PEER: Score()}
    per_document: dict[str, dict[str, dict]] = {PGKB: {}, PEER: {}}
    seconds = dict.fromkeys(sides, 0.0)
    pages = 0
    for pdf, xml_path in pairs:
        truth = ground_truth(xml_path)
        pages += len(truth)
        for side in sides:
            started = time.perf_counter()
            found = pgkb_tables(pdf) if side == PGKB else peer_tables(pdf, truth)
            seconds[side] += time.perf_counter() - started
            document = score(truth, found)
            sides[side].add(document)
            per_document[side][pdf.name] = document.to_dict()
    result: dict = {"data": str(data), "documents": len(pairs), "pages": pages, "left_out": orphans,
                    "date": time.strftime("%Y-%m-%d"), "sides": {}}
    for side, total in sides.items():
        document_f1 = [d["f1"] for d in per_document[side].values()]
        result["sides"][side] = {**total.to_dict(), "mean_document_f1": sum(document_f1) / len(document_f1),
                                 "seconds": seconds[side], "per_document": per_document[side]}
    peer_f1 = result["sides"][PEER]["f1"]
    result["ratio_f1"] = result["sides"][PGKB]["f1"] / peer_f1 if peer_f1 else None
    return result


def print_results(results: dict) -> None:
    left_out = f"; left out (no PDF): {', '.join(results['left_out'])}" if results["left_out"] else ""
    print(f"{results['documents']} PDFs, {results['pages']} pages with ground-truth tables{left_out}")
    print(f"  {'document':<16}" + "".join(f"{side + ' P/R/F1':>30}" for side in results["sides"]))
    names = list(results["sides"][PGKB]["per_document"])
    for name in names:
        cells = [results["sides"][side]["per_document"][name] for side in results["sides"]]
        print(f"  {name:<16}" + "".join(f"{c['precision']:>14.2f}{c['recall']:>8.2f}{c['f1']:>8.2f}" for c in cells))
    for side, total in results["sides"].items():
        print(f"  {side}: precision {total['precision']:.3f}, recall {total['recall']:.3f}, F1 {total['f1']:.3f} "
              f"(micro-averaged; mean per-document F1 {total['mean_document_f1']:.3f}) in {total['seconds']:.1f} s")
    if results["ratio_f1"] is not None:
        print(f"ratio: pgkb's F1 is {results['ratio_f1']:.2f}x the peer's")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder of NAME.pdf with NAME-str.xml (default ../shared/eval/tables/icdar2013-eu)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results = run(args.data)
    print_results(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
