"""Tables without ruling lines on a PDF page, from the alignment of their text.

The page's text comes as pieces ("segments": PyMuPDF lines, cut again at wide gaps between
spans), each with its box. Segments on one baseline form a visual line; a line of two or
more segments, far apart, may be a table row. A run of such lines whose segments stack into
columns (the gaps between them persist from line to line) is a table:

- columns: the x-extents of the segments of the lines with the most common number of
  segments, overlapping extents merged; any other line's segment goes in the column it
  overlaps (a segment over several columns is a spanning heading, read in its first);
- rows: one per visual line, except that a line going on in lower case continues the row
  above (a wrapped cell, kept whole), so does a line holding only more of a cell right of
  the first column (a long description, a list inside a cell), and the header lines above
  the first line of figures that sit close together make one header row ("to air" over
  "kg/year"); when horizontal rules separate most lines, the lines between two rules are one
  row. A header whose cells start where the first row's do may stand further above it;
- the run ends at a line that is no row of it: one-segment lines in a row starting left of
  the second column (paragraphs, notes), a line in type of another size (a title, a running
  header), or a line whose segment crosses the columns below the header (a note, a
  paragraph indented like a cell). Text in the page's top and bottom margins (running
  headers and footers) is left out before (see pdf.py).

Guards against what only looks aligned: two columns of running text (long segments, many
words a cell) and lists (a column of bullets or numbers beside text) are no tables, and a
table needs at least three lines of two segments or more. Its rows, once joined, must read
as a table's too: three or more of two cells or more, most cells filled (not formulas or the
labels of a diagram), few going on in lower case from the row above (prose side by side: a
side heading beside its paragraphs, blurbs in columns), and a figure or a short text beyond
the first column in most rows below the header (a column of long descriptions may be beside them);
nor be a numbered listing, an index in columns or a formula. A picture among the text (a
photo, a plot) makes it the picture's labels and captions.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .elements import join_lines

Box = tuple[float, float, float, float]
Rule = tuple[float, float, float]  # a horizontal rule: y, x0, x1

# Segments of a line this far apart (in ems of their type) are cells of different columns.
CELL_GAP_EMS = 1.0
# Lines this far apart (in line heights) are not rows of one table...
MAX_ROW_GAP = 2.5
# ...but a header may be this far above the first row when their cells start alike (within
# ALIGNED points).
MAX_HEADER_GAP = 4.0
ALIGNED = 2.0
# Lines whose type sizes differ by more than this factor are not rows of one table.
MAX_SIZE_RATIO = 1.25
# Rules closer than this (points) are one double rule.
DOUBLE_RULE = 4.0
# Header lines closer than this (in line heights) are one header row.
HEADER_LINE_GAP = 0.6
MIN_ROWS = 3            # lines of two segments or more
MAX_WORDS_PER_CELL = 6  # more, on average, is running text in columns...
MAX_CHARS_PER_CELL = 40  # ...and so is more than this (text without spaces, Chinese)
MIN_FILLED_SHARE = 0.5  # two columns or more are filled in at least this share of the rows
# Rows as read (wrapped cells and header lines joined) must look like a table's:
MIN_FILL = 0.5           # most cells hold text (formulas and diagram labels leave most empty)
MAX_CONTINUED = 0.25     # few rows go on with the text of the row above (prose side by side)
MIN_SHORT_ROWS = 0.5     # more than this share of the rows hold a figure or short text beyond the first
SHORT_CELL_WORDS = 4
SHORT_CELL_WIDTH = 24    # characters, a wide one counting two...
WIDE_FROM = "\u2e80"     # ...as CJK's and those after them do
# A picture narrower than this share of a table's width, among its text: no table.
MAX_PICTURE_SHARE = 0.5
FIGURES_SHARE = 0.3      # a cell of figures: digits are at least this share of its letters and digits
_SENTENCE_END = ".!?:;"
# A list's marks: bullets (a symbol font's in the private use area too), numbers ("2.3.1",
# "4)"), letters ("b.").
_ENUMERATOR = re.compile(r"^(?:[\u2022\u25aa\u25cf\u25e6\u2023\u2043\u00b7\u25a0\u25a1\u2013*\ue000-\uf8ff-]"
                         r"|\(?[\d.\-]+[.)]?|\(?[a-z][.)])$")
_FIGURE = re.compile(r"\d")
_LETTER = re.compile(r"[^\W\d_]")
_PAGE_REFERENCES = re.compile(r",\s*\d+(?:\s*[,\u2013-]\s*\d+)*$")  # an index entry's: "Atlas, 24, 31-33"
# Mathematical operators (but a minus and the comparisons, which tables hold), arrows, and
# the private use area, where math fonts put the pieces of large brackets.
_MATH = re.compile("[\u2190-\u21ff\u2200-\u2211\u2213-\u2263\u2266-\u22ff\ue000-\uf8ff]")
MAX_MATH_SHARE = 0.25  # more than this share of a table's cells holding those: a formula
_NOT_ALNUM = re.compile(r"[\W_]+")


@dataclass(slots=True)  # tens of thousands a document: slots make them cheaper to make and read
class Segment:
    box: Box
    text: str
    size: float  # font size


@dataclass
class AlignedTable:
    box: Box
    rows: list[list[str]]


class _Line:
    """Segments on one baseline, with their extent (kept up to date as segments are added:
    it is read over and over)."""

    __slots__ = ("segments", "left", "top", "right", "bottom", "size")

    def __init__(self, segment: Segment) -> None:
        self.segments = [segment]
        self.left, self.top, self.right, self.bottom = segment.box
        self.size = segment.size  # the type of its longest segment (not of a mark beside it)

    def add(self, segment: Segment) -> None:
        if len(segment.text) > max(len(s.text) for s in self.segments):
            self.size = segment.size
        self.segments.append(segment)
        x0, y0, x1, y1 = segment.box
        self.left, self.top, self.right, self.bottom = (min(self.left, x0), min(self.top, y0),
                                                        max(self.right, x1), max(self.bottom, y1))

    @property
    def height(self) -> float:
        return self.bottom - self.top


@dataclass
class _Row:
    cells: list[list[str]]        # texts per column
    spanning: bool                # holds a segment across columns
    lines: list[_Line] = field(default_factory=list)

    @property
    def top(self) -> float:
        return self.lines[0].top

    @property
    def bottom(self) -> float:
        return self.lines[-1].bottom


def find_tables(segments: list[Segment], horizontal_rules: Callable[[float, float], list[Rule]],
                pictures: Callable[[], list[Box]] = list) -> list[AlignedTable]:
    """Tables of aligned text among `segments`. `horizontal_rules(top, bottom)` gives the page's
    horizontal rules, which may separate rows between those heights, and `pictures()` the boxes
    of its images and drawings (both asked for only when there is a table: reading them is slow)."""
    lines = _visual_lines(segments)
    tables: list[AlignedTable] = []
    if sum(1 for line in lines if len(line.segments) >= 2) < MIN_ROWS:
        return tables  # most pages of text
    start = 0
    while start < len(lines):
        run = _run(lines, start)
        if sum(1 for line in run if len(line.segments) >= 2) < MIN_ROWS:
            # The runs from its other lines end where it does, with fewer rows: none is a table.
            start += max(len(run), 1)
            continue
        found = _table_from(run, horizontal_rules)
        if found is None:
            start += 1
        else:
            table, used = found
            if not _holds_picture(table.box, pictures()):
                tables.append(table)
            start += used
    return tables


def _holds_picture(box: Box, pictures: list[Box]) -> bool:
    """Whether a picture lies among the table's text, narrower than it (a photo, a plot, a box of
    a diagram): the text is the picture's labels, captions or blurbs, not a table. Rules, shaded
    rows and a frame around the table are as wide as it."""
    x0, y0, x1, y1 = box
    return any(x0 <= (p[0] + p[2]) / 2 <= x1 and y0 <= (p[1] + p[3]) / 2 <= y1
               and p[2] - p[0] < MAX_PICTURE_SHARE * (x1 - x0) for p in pictures)


def _visual_lines(segments: list[Segment]) -> list[_Line]:
    """Segments on one baseline, left to right; lines top to bottom. Adjacent segments closer
    than a cell gap are one."""
    lines: list[_Line] = []
    for segment in sorted(segments, key=lambda s: ((s.box[1] + s.box[3]) / 2, s.box[0])):
        middle = (segment.box[1] + segment.box[3]) / 2
        line = lines[-1] if lines else None
        if line is not None and line.top <= middle <= line.bottom:
            line.add(segment)
        else:
            lines.append(_Line(segment))
    for line in lines:
        line.segments.sort(key=lambda s: s.box[0])
        merged = [line.segments[0]]
        for segment in line.segments[1:]:
            last = merged[-1]
            if segment.box[0] - last.box[2] < CELL_GAP_EMS * max(last.size, segment.size):
                merged[-1] = Segment((last.box[0], min(last.box[1], segment.box[1]), max(last.box[2], segment.box[2]),
                                      max(last.box[3], segment.box[3])), f"{last.text} {segment.text}",
                                     max(last.size, segment.size))
            else:
                merged.append(segment)
        line.segments = merged
    return lines


def _run(lines: list[_Line], start: int) -> list[_Line]:
    """The lines from lines[start] that may be rows of one table: close below one another (a
    header whose cells start where the first row's do may stand further apart), in type of one
    size (a line in larger type is a title, a running header), with no two one-segment lines in
    a row that start left of the second column (paragraphs, notes; one-segment lines further
    right are a cell's wrapped lines or a list in it), the first and last of two segments or more."""
    if len(lines[start].segments) < 2:
        return []
    run = [lines[start]]
    second_column = lines[start].segments[1].box[0] - ALIGNED
    singles = 0
    for line in lines[start + 1:]:
        gap = MAX_HEADER_GAP if len(run) == 1 and _heads(run[0], line) else MAX_ROW_GAP
        if (line.top - run[-1].bottom > gap * run[-1].height
                or max(line.size, run[0].size) > MAX_SIZE_RATIO * min(line.size, run[0].size)):
            break
        singles = singles + 1 if len(line.segments) < 2 and line.left < second_column else 0
        if singles >= 2:
            break
        run.append(line)
    while len(run[-1].segments) < 2:
        run.pop()
    return run


def _heads(header: _Line, line: _Line) -> bool:
    """Whether each of the header's cells starts where one of the line's does."""
    starts = [s.box[0] for s in line.segments]
    return all(any(abs(s.box[0] - x) <= ALIGNED for x in starts) for s in header.segments)


def _table_from(run: list[_Line], horizontal_rules: Callable[[float, float], list[Rule]],
                ) -> tuple[AlignedTable, int] | None:
    """The table whose first line is run[0], and the number of lines it takes."""
    multi = [line for line in run if len(line.segments) >= 2]
    columns = _columns(multi)
    if len(columns) < 2:
        return None
    rows = _rows(run, columns)
    if len(rows) < MIN_ROWS or not _looks_like_table(rows):
        return None
    rows = _joined_rows(rows, horizontal_rules(rows[0].top, rows[-1].bottom))
    texts = [[join_lines(cell) for cell in row.cells] for row in rows]  # a word hyphenated in a cell mended
    # Columns no row fills (a segment splitting in one line only) are dropped.
    keep = sorted({c for row in texts for c, cell in enumerate(row) if cell})
    texts = [[row[c] for c in keep] for row in texts]
    if not _reads_as_table(texts):
        return None
    used = sum(len(row.lines) for row in rows)
    box = (min(line.left for row in rows for line in row.lines), rows[0].top,
           max(line.right for row in rows for line in row.lines), rows[-1].bottom)
    return AlignedTable(box, texts), used


def _columns(lines: list[_Line]) -> list[tuple[float, float]]:
    """Column extents from the lines with the most common number of segments (or more)."""
    counts = Counter(len(line.segments) for line in lines)
    common = max(counts, key=lambda n: (counts[n], n))
    extents = sorted((s.box[0], s.box[2]) for line in lines if len(line.segments) >= common for s in line.segments)
    columns: list[tuple[float, float]] = []
    for x0, x1 in extents:
        if columns and x0 < columns[-1][1]:
            columns[-1] = (columns[-1][0], max(columns[-1][1], x1))
        else:
            columns.append((x0, x1))
    return columns


def _column_span(segment: Segment, starts: list[float], ends: list[float]) -> range:
    """The columns (their `starts` and `ends`) a segment overlaps; the nearest one when it falls
    in a gap. Columns lie apart, left to right: those ending right of the segment's start and
    starting left of its end are found by bisection."""
    x0, x1 = segment.box[0], segment.box[2]
    over = range(bisect_right(ends, x0), bisect_left(starts, x1))
    if over:
        return over
    middle = (x0 + x1) / 2
    nearest = min(range(len(starts)), key=lambda i: min(abs(middle - starts[i]), abs(middle - ends[i])))
    return range(nearest, nearest + 1)


def _rows(run: list[_Line], columns: list[tuple[float, float]]) -> list[_Row]:
    """A row per line, until a line that cannot be one: below the header, a segment across
    columns, or two segments in one column."""
    rows: list[_Row] = []
    figures_seen = False
    starts, ends = [c0 for c0, _ in columns], [c1 for _, c1 in columns]
    for line in run:
        cells: list[list[str]] = [[] for _ in columns]
        spanning = False
        for segment in line.segments:
            span = _column_span(segment, starts, ends)
            spanning = spanning or len(span) > 1
            cells[span[0]].append(segment.text)
        crowded = any(len(cell) > 1 for cell in cells)
        if figures_seen and ((spanning and len(line.segments) > 1) or crowded):
            break  # a note or a paragraph below the table
        if figures_seen and spanning and not _continues(rows, cells):
            break
        rows.append(_Row(cells, spanning, [line]))
        figures_seen = figures_seen or any(_FIGURE.search(" ".join(cell)) for cell in cells[1:])
    while rows and sum(1 for cell in rows[-1].cells if cell) < 2:
        rows.pop()
    return rows


def _continues(rows: list[_Row], cells: list[list[str]]) -> bool:
    """Whether a line goes on with the row above: it starts in lower case."""
    text = next((cell[0] for cell in cells if cell), "")
    return bool(rows) and text[:1].islower()


def _looks_like_table(rows: list[_Row]) -> bool:
    """Not columns of running text, not a list (bullets or numbers beside text), and at
    least two columns filled in most rows (lines going on in a cell of the row above aside)."""
    cells = [cell for row in rows for cell in row.cells if cell]
    texts = [" ".join(cell) for cell in cells]
    if (sum(len(text.split()) for text in texts) > MAX_WORDS_PER_CELL * len(cells)
            or sum(map(len, texts)) > MAX_CHARS_PER_CELL * len(cells)):
        return False
    first_column = _first_column(rows)
    own = [row for above, row in zip([None, *rows], rows)
           if above is None or not _goes_on_in_a_cell(above, row, first_column)]
    columns = list(zip(*(row.cells for row in own)))
    if sum(1 for column in columns if sum(1 for cell in column if cell) >= MIN_FILLED_SHARE * len(own)) < 2:
        return False
    filled = [[" ".join(cell) for cell in column if cell] for column in columns]
    filled = [column for column in filled if column]
    others = [text for column in filled[1:] for text in column]
    return not (all(_ENUMERATOR.match(text) for text in filled[0])
                and sum(1 for text in others if _FIGURE.search(text)) < len(others) / 2)


def _reads_as_table(rows: list[list[str]]) -> bool:
    """Whether rows, their lines joined, read as a table's: enough of them with two cells or
    more (not labels of a figure, its caption and a formula below), most cells filled, not
    prose set side by side (a side heading beside its paragraphs, two columns of text, whose
    lines go on from row to row), and, beyond the first column, a figure or a short text in
    most rows under the first (codes beside long descriptions: "23f | 19-26 | The number of...")."""
    filled = [sum(1 for cell in row if cell) for row in rows]
    if sum(1 for n in filled if n >= 2) < MIN_ROWS or sum(filled) < MIN_FILL * sum(map(len, rows)):
        return False
    continued = sum(1 for above, row in zip(rows, rows[1:])
                    if any(text[:1].islower() and cell[-1:] not in _SENTENCE_END
                           for cell, text in zip(above, row) if cell and text))
    if continued > MAX_CONTINUED * (len(rows) - 1):
        return False
    several = [row for row in rows[1:] if sum(1 for cell in row if cell) >= 2]  # below the header
    short = sum(1 for row in several if any(_short(text) or _figures(text) for text in row[1:] if text))
    return short > MIN_SHORT_ROWS * len(several) and not _other_than_table(rows)


def _other_than_table(rows: list[list[str]]) -> bool:
    """Aligned text that is no table: lines of a listing numbered one by one ("24 | <xsd:...",
    "25 | </xsd:..."), an index set in columns (every column's entries end in page numbers:
    "Atlas, 24 | Winkel, 86"), a formula (its cells hold mathematical operators, or pieces
    of large brackets that math fonts put in the private use area)."""
    numbers = [row[0] for row in rows if row[0]]
    if (len(rows[0]) == 2 and len(numbers) >= MIN_ROWS
            and all(a.isdigit() and b.isdigit() and int(b) == int(a) + 1 for a, b in zip(numbers, numbers[1:]))):
        return True
    columns = [[cell for cell in column if cell] for column in zip(*rows)]
    if len(columns) >= 2 and all(sum(1 for cell in column if _PAGE_REFERENCES.search(cell)) >= len(column) / 2
                                 for column in columns):
        return True
    cells = [cell for row in rows for cell in row if cell]
    return sum(1 for cell in cells if _MATH.search(cell)) > MAX_MATH_SHARE * len(cells)


def _short(text: str) -> bool:
    if len(text) > SHORT_CELL_WIDTH:
        return False
    width = len(text) if text.isascii() else sum(2 if c >= WIDE_FROM else 1 for c in text)
    return width <= SHORT_CELL_WIDTH and len(text.split()) <= SHORT_CELL_WORDS


def _figures(text: str) -> bool:
    letters_and_digits = len(_NOT_ALNUM.sub("", text))
    return len(_FIGURE.findall(text)) >= FIGURES_SHARE * letters_and_digits > 0


def _joined_rows(rows: list[_Row], rules_y: list[Rule]) -> list[_Row]:
    """Lines of one row together: by the rules between rows where they separate most of them,
    otherwise wrapped cells (a line going on in lower case) and the close lines of the header."""
    left, right = min(r.lines[0].left for r in rows), max(r.lines[0].right for r in rows)
    width = right - left
    between: list[float] = []
    for y in sorted(y for y, x0, x1 in rules_y
                    if rows[0].top < y < rows[-1].bottom and min(x1, right) - max(x0, left) > 0.5 * width):
        if not between or y - between[-1] > DOUBLE_RULE:  # a double rule is one
            between.append(y)
    if len(between) >= (len(rows) - 1) * 0.6:
        return _grouped_by_rules(rows, between)
    joined: list[_Row] = []
    header = True
    first_column = _first_column(rows)
    for row in rows:
        header = header and not any(_FIGURE.search(" ".join(cell)) for cell in row.cells[1:])
        last = joined[-1] if joined else None
        if last is not None and (_continues(joined, row.cells) or header and _close_header(last, row)
                                 or not header and _goes_on_in_a_cell(last, row, first_column)):
            _merge(last, row)
        else:
            joined.append(row)
    return joined


def _goes_on_in_a_cell(above: _Row, row: _Row, first_column: int) -> bool:
    """Whether a body row holds only more lines of a cell of the row above, right of the
    table's first column (a long description, a list inside a cell), with words (a figure
    alone is a subtotal without its label)."""
    filled = [c for c, cell in enumerate(row.cells) if cell]
    return (len(filled) == 1 and filled[0] > first_column and bool(above.cells[filled[0]])
            and _LETTER.search(" ".join(row.cells[filled[0]])) is not None)


def _first_column(rows: list[_Row]) -> int:
    """The leftmost column the rows fill."""
    return min(next(c for c, cell in enumerate(row.cells) if cell) for row in rows)


def _close_header(above: _Row, row: _Row) -> bool:
    return (not above.spanning and not row.spanning
            and row.top - above.bottom < HEADER_LINE_GAP * row.lines[0].height)


def _grouped_by_rules(rows: list[_Row], rules: list[float]) -> list[_Row]:
    grouped: list[_Row] = []
    band = -1
    for row in rows:
        middle = (row.top + row.bottom) / 2
        row_band = sum(1 for y in rules if y < middle)
        if grouped and row_band == band:
            _merge(grouped[-1], row)
        else:
            grouped.append(row)
        band = row_band
    return grouped


def _merge(row: _Row, below: _Row) -> None:
    for cell, more in zip(row.cells, below.cells):
        cell.extend(more)
    row.spanning = row.spanning or below.spanning
    row.lines.extend(below.lines)
