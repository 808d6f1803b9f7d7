"""Ruled tables on a PDF page, from the lines and boxes it draws.

Horizontal and vertical rules that cross one another form a grid; each grid with at least
two rows and two columns whose cells mostly hold text is a table. A rule missing between two
cells of a row makes them one cell (a merged heading, say). A table ruled inside only has its
open sides where most rules between its rows end. Words are put in the cell their middle
falls in; a row ruled around several lines of text, each a label with its values, is a row
per line. This reads what PyMuPDF's general table finder reads on ruled tables, at a
fraction of its cost: it works from the page's drawings and words, which the parser has
anyway, where the finder extracts every character again.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from .elements import cell_text

Box = tuple[float, float, float, float]

SNAP = 2.0          # rules this close (points) are one rule
REACH = 3.0         # a rule ending this close to another still meets it
MIN_RULE = 5.0      # shorter strokes are ticks, underlines of a letter, bullets
MIN_CELL = 6.0      # rules closer than this (a double border) bound no cell between them
MAX_RULES = 2000    # a page drawing more rules than this is a drawing, not a table
MIN_FILL = 0.25     # a table has text in at least this share of its cells
MIN_SPLIT_ROWS = 0.5  # ...and vertical rules split at least this share of its rows
MIN_LINES_SPLIT = 3   # a ruled row around this many lines of labels and values is a row per line


@dataclass
class _Rule:
    at: float       # y of a horizontal rule, x of a vertical one
    start: float
    end: float


@dataclass
class RuledTable:
    box: Box
    rows: list[list[str]]


def rules(drawings: list[dict], to_text_space: Callable[[Box], Box]) -> tuple[list[_Rule], list[_Rule]]:
    """Horizontal and vertical rules from PyMuPDF's drawings (page.get_cdrawings()), in the
    space `to_text_space` maps page rectangles to (`tuple` for the page's own)."""
    horizontal: list[_Rule] = []
    vertical: list[_Rule] = []
    for drawing in drawings:
        for item in drawing["items"]:
            if item[0] == "l":
                (x0, y0), (x1, y1) = item[1], item[2]
                _add(horizontal, vertical, *to_text_space((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))))
            elif item[0] == "re":
                x0, y0, x1, y1 = item[1]
                x0, y0, x1, y1 = to_text_space((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
                if y1 - y0 <= SNAP or x1 - x0 <= SNAP:  # a thick line drawn as a filled box
                    _add(horizontal, vertical, x0, y0, x1, y1)
                else:  # a box: its four sides
                    for side in ((x0, y0, x1, y0), (x0, y1, x1, y1), (x0, y0, x0, y1), (x1, y0, x1, y1)):
                        _add(horizontal, vertical, *side)
    return _merged(horizontal), _merged(vertical)


def outlines_may_hold_table(outlines: list[tuple[Box, bool]]) -> bool:
    """Whether the page's drawn paths could make a grid, judged from their outlines (which the
    text extraction gives at no cost): enough to rule out a table, not to read one. Each
    outline is a subpath's bounding box and whether the subpath is a rectangle (a straight
    line being a thin one), which makes at most two rules each way; a subpath of another
    shape (a curve, a polyline) could make any number."""
    horizontal = vertical = 0
    any_number = False
    for (x0, y0, x1, y1), is_rect in outlines:
        width, height = x1 - x0, y1 - y0
        if height <= SNAP or width <= SNAP:  # a line, or lines along one line
            horizontal += height <= SNAP and width >= MIN_RULE
            vertical += width <= SNAP and height >= MIN_RULE
        else:  # a box: two sides each way
            horizontal += 2 * (width >= MIN_RULE)
            vertical += 2 * (height >= MIN_RULE)
            any_number = any_number or not is_rect
    return horizontal + vertical <= MAX_RULES and (any_number or _enough_rules(horizontal, vertical))


def _add(horizontal: list[_Rule], vertical: list[_Rule], x0: float, y0: float, x1: float, y1: float) -> None:
    if y1 - y0 <= SNAP and x1 - x0 >= MIN_RULE:
        horizontal.append(_Rule((y0 + y1) / 2, x0, x1))
    elif x1 - x0 <= SNAP and y1 - y0 >= MIN_RULE:
        vertical.append(_Rule((x0 + x1) / 2, y0, y1))


def _merged(found: list[_Rule]) -> list[_Rule]:
    """Rules on one line that touch or overlap become one."""
    merged: list[_Rule] = []
    for rule in sorted(found, key=lambda r: (round(r.at / SNAP), r.start)):
        last = merged[-1] if merged else None
        if last and abs(rule.at - last.at) <= SNAP and rule.start <= last.end + REACH:
            last.end = max(last.end, rule.end)
        else:
            merged.append(_Rule(rule.at, rule.start, rule.end))
    return merged


def may_hold_table(horizontal: list[_Rule], vertical: list[_Rule]) -> bool:
    return _enough_rules(len(horizontal), len(vertical))


def _enough_rules(horizontal: int, vertical: int) -> bool:
    """A table of two rows and two columns needs three horizontal rules, and two vertical
    rules apart where its sides are open (see _open_sides); a page with thousands is a
    drawing."""
    return horizontal >= 3 and vertical >= 2 and horizontal + vertical <= MAX_RULES


def find_tables(horizontal: list[_Rule], vertical: list[_Rule], words: list[tuple]) -> list[RuledTable]:
    """Tables of the grids the rules form, filled with `words` (PyMuPDF's "words" tuples)."""
    tables = []
    for grid_h, grid_v in _grids(horizontal, vertical):
        table = _table(grid_h, grid_v, words)
        if table is not None:
            tables.append(table)
    return tables


def _meets(h: _Rule, v: _Rule) -> bool:
    return h.start - REACH <= v.at <= h.end + REACH and v.start - REACH <= h.at <= v.end + REACH


def _grids(horizontal: list[_Rule], vertical: list[_Rule]) -> list[tuple[list[_Rule], list[_Rule]]]:
    """The sets of rules that cross one another (connected components)."""
    parent = list(range(len(horizontal) + len(vertical)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_x = sorted(range(len(vertical)), key=lambda j: vertical[j].at)
    xs = [vertical[j].at for j in by_x]
    for i, h in enumerate(horizontal):
        low, high = bisect_right(xs, h.start - REACH - 1e-9), bisect_right(xs, h.end + REACH)
        for j in by_x[low:high]:
            if _meets(h, vertical[j]):
                parent[root(i)] = root(len(horizontal) + j)
    groups: dict[int, tuple[list[_Rule], list[_Rule]]] = {}
    for i, h in enumerate(horizontal):
        groups.setdefault(root(i), ([], []))[0].append(h)
    for j, v in enumerate(vertical):
        groups.setdefault(root(len(horizontal) + j), ([], []))[1].append(v)
    return [(h, v) for h, v in groups.values() if len(h) >= 2 and len(v) >= 2]


def _positions(values: list[float]) -> list[float]:
    """Distinct positions of rules; a double rule (two lines a few points apart) counts once."""
    positions: list[float] = []
    for value in sorted(values):
        if not positions or value - positions[-1] > MIN_CELL:
            positions.append(value)
    return positions


def _open_sides(horizontal: list[_Rule], xs: list[float]) -> list[float]:
    """Column edges, with the table's left or right side added where it has no rule drawn:
    where most rules between its rows run on past its outermost vertical rule to one place
    (a table ruled inside only, its first column of labels and its last of figures open)."""
    if len(xs) < 2:
        return xs  # one vertical rule (or a bar drawn as two): a divider between columns of text
    enough = max(2, len(horizontal) / 2)
    left = min(h.start for h in horizontal)
    if sum(1 for h in horizontal if abs(h.start - left) <= SNAP and h.start < xs[0] - 2 * MIN_CELL) >= enough:
        xs = [left, *xs]
    right = max(h.end for h in horizontal)
    if sum(1 for h in horizontal if abs(h.end - right) <= SNAP and h.end > xs[-1] + 2 * MIN_CELL) >= enough:
        xs = [*xs, right]
    return xs


def _table(horizontal: list[_Rule], vertical: list[_Rule], words: list[tuple]) -> RuledTable | None:
    ys = _positions([h.at for h in horizontal])
    xs = _open_sides(horizontal, _positions([v.at for v in vertical]))
    if len(ys) < 3 or len(xs) < 3:
        return None  # fewer than two rows or two columns: a box around something
    rows: list[list[list[str]]] = []
    bounds: list[list[float]] = []
    for top, bottom in zip(ys, ys[1:]):
        middle = (top + bottom) / 2
        # Column edges drawn across this row; a missing one merges the cells beside it.
        crossing = [v.at for v in vertical if v.start - REACH <= middle <= v.end + REACH]
        edges = [xs[0]]
        for x in xs[1:-1]:
            # Slivers between an edge and a box drawn just inside it (shading, inset borders)
            # are no cells: an edge that close to the last one is not kept.
            if any(x - SNAP <= at <= x + MIN_CELL for at in crossing) and x - edges[-1] >= 2 * MIN_CELL:
                edges.append(x)
        if xs[-1] - edges[-1] < 2 * MIN_CELL and len(edges) > 1:
            edges.pop()
        bounds.append([*edges, xs[-1]])
        rows.append([[] for _ in edges])
    # Last rows framed across all the columns hold the table's notes (sources, footnotes): they
    # are read as text under it, not as rows.
    while len(bounds) > 2 and len(bounds[-1]) == 2 and any(len(row) > 2 for row in bounds):
        bounds.pop()
        rows.pop()
        ys.pop()
    if sum(1 for row in bounds if len(row) > 2) < MIN_SPLIT_ROWS * len(bounds):
        return None  # a frame with rules between rows only: its columns are read from the text's alignment
    box = (xs[0], ys[0], xs[-1], ys[-1])
    placed: list[list[tuple[float, float, int, str]]] = [[] for _ in rows]  # (middle, height, column, word)
    for word in words:
        x, y = (word[0] + word[2]) / 2, (word[1] + word[3]) / 2
        if not (box[0] < x < box[2] and box[1] < y < box[3]):
            continue
        row = bisect_right(ys, y) - 1
        column = min(bisect_right(bounds[row], x) - 1, len(rows[row]) - 1)
        placed[row].append((y, word[3] - word[1], column, word[4]))
    rows = [cells for row, in_row in zip(rows, placed) for cells in _lines_as_rows(len(row), in_row)]
    cells = [[cell_text(" ".join(words_in_cell)) for words_in_cell in row] for row in rows]
    filled = sum(1 for row in cells for cell in row if cell)
    if filled < MIN_FILL * sum(len(row) for row in cells):
        return None  # lines of a drawing, or a form to fill in: not a table of text
    cells = [row for row in cells if any(row)]
    return RuledTable(box, cells) if len(cells) >= 2 else None


def _lines_as_rows(columns: int, placed: list[tuple[float, float, int, str]]) -> list[list[list[str]]]:
    """The words of a ruled row in its cells. A row ruled around three lines of text or more
    (a table ruled between its columns, and above and below its header and body only) is a
    row per line when each line has a word in the first column and another beside it, and
    none goes on in lower case (a cell's text wrapped)."""
    by_line: list[list[int]] = []  # indexes into `placed` (the words' reading order), line by line
    for i in sorted(range(len(placed)), key=lambda i: placed[i][0]):
        middle, height = placed[i][:2]
        if by_line and middle - placed[by_line[-1][0]][0] <= height / 2:
            by_line[-1].append(i)
        else:
            by_line.append([i])
    lines = [[placed[i] for i in sorted(line)] for line in by_line]
    groups = lines if len(lines) >= MIN_LINES_SPLIT and all(map(_label_and_values, lines)) else [placed]
    rows = []
    for group in groups:
        cells: list[list[str]] = [[] for _ in range(columns)]
        for _, _, column, text in group:
            cells[column].append(text)
        rows.append(cells)
    return rows


def _label_and_values(line: list[tuple[float, float, int, str]]) -> bool:
    """Whether a line of text has a word in the first column and another beside it, none of
    its cells going on in lower case."""
    first_words: dict[int, str] = {}
    for _, _, column, text in line:
        first_words.setdefault(column, text)
    return (0 in first_words and len(first_words) > 1
            and not any(text[:1].islower() for text in first_words.values()))
