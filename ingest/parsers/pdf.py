"""PDF through PyMuPDF's text layer: reading order, headings, tables, pages.

Per page, the text lines are read with their fonts, running headers and footers (margin
lines that repeat across pages, page numbers) and watermark-like text (diagonal, or large
and faint) are dropped, lines are grouped into paragraphs (hyphenation mended), ruled tables
are kept whole, and everything is put in reading order, column by column (layout.py).
Headings come from the PDF outline when it has one, otherwise from font sizes and weights
above the body text's. Pages without a text layer are OCR'd with Tesseract when it is
installed, and reported otherwise.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from pathlib import Path

# PyMuPDF 2 loads its layout analyser, ONNX models that pgkb does not use, on import when it
# is installed: 0.3 s and 55 MB in each parser process. Marked missing (None, which typeshed's
# sys.modules does not allow for), it is skipped.
sys.modules.setdefault("pymupdf.layout", None)  # type: ignore[arg-type]
import pymupdf  # noqa: E402
from unstructured.documents.elements import Element, ListItem, NarrativeText, Title  # noqa: E402

from . import ParsedDocument, ParseError, ParseOptions, pdf_aligned_tables, pdf_tables  # noqa: E402
from .elements import element_metadata, join_lines, table  # noqa: E402
from .layout import Box, reading_order  # noqa: E402

# Ligatures (ﬁ, ﬂ) come out as their letters, so words match what users type; image blocks
# are left out (their pixels are not needed); the outlines of vector graphics come along
# (cheaply), to tell pages that may hold a ruled table from those that cannot.
TEXT_FLAGS = (pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_LIGATURES & ~pymupdf.TEXT_PRESERVE_IMAGES
              | pymupdf.TEXT_COLLECT_VECTORS)
# Drawings at least this tall and wide (points) are pictures, not rules or marks.
MIN_PICTURE = 20.0
# Running headers and footers are the first or last lines of a page, or lie in its top or
# bottom this-fraction...
MARGIN_FRACTION = 0.1
EDGE_LINES = 2
# Text wholly within this fraction of the page's height from its top or bottom is no row of a
# table of aligned text.
TABLE_MARGIN = 0.06
# ...and repeat on this many pages (or on every page of shorter documents); a page number
# needs no repeating.
REPEATED_PAGES = 3
# Headings by font: larger than the body text by this factor, or bold, and short.
HEADING_SIZE_RATIO = 1.15
HEADING_MAX_CHARS = 150
MAX_HEADING_DEPTH = 5
# Large and faint (light or translucent) text is a watermark: at least this times the body size.
WATERMARK_SIZE_RATIO = 1.5
OCR_DPI = 300

_PAGE_NUMBER = re.compile(
    r"^(?:page\s*)?[-\u2013\u2014(\[]?\s*(?:\d+|[ivxlc]+)\s*[-\u2013\u2014)\]]?(?:\s*(?:of|/)\s*\d+)?$"
    r"|^第\s*\d+\s*页(?:\s*[,，/]?\s*共\s*\d+\s*页)?$",
    re.IGNORECASE,
)
# A list item begins with a bullet sign (dropped from its text) or a number or letter (kept).
_BULLET_SIGN = re.compile(r"^[\u2022\u25aa\u25cf\u25e6\u2023\u2043\u00b7\u25a0\u25a1\u2013*-]\s+")
_LIST_ITEM = re.compile(_BULLET_SIGN.pattern + r"|^\(?\d{1,2}[.)]\s|^\(?[a-z][.)]\s")
_NUMBERING = re.compile(
    r"^\s*(?:(?:chapter|section|part|appendix)\s+)?(?:\d+(?:\.\d+)*\.?|[ivxlc]+[.)]|[a-z][.)])\s+"
    r"|^\s*第[\d一二三四五六七八九十百]+[章节条部分篇]\s*",
    re.IGNORECASE,
)
_NOT_WORD = re.compile(r"[\W_]+")
_SECTION_NUMBER = re.compile(r"^\d+(?:\.\d+)*\.?$")  # set apart from its heading: "1   Scope"
LEFT_TO_RIGHT = (1.0, 0.0)  # a line's direction (cos, sin) on an upright page
RIGHT_ANGLES = {LEFT_TO_RIGHT, (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)}  # upright, or turned on a side
_SENTENCE_END = set(".!?:;)\"\u201d\u3002\uff01\uff1f\uff1a\uff1b")
_LEADER = re.compile(r"(?:\.\s*){4,}\s*\w*\d+\s*$|\u2026\s*\d+\s*$")  # 'Scope ........ 4'
_PDF_DATE = re.compile(r"D:(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(Z|[+-]\d{2}'?\d{2}'?)?")

pymupdf.TOOLS.mupdf_display_errors(False)  # broken files are reported per file, not on stderr
pymupdf.TOOLS.mupdf_display_warnings(False)


@dataclass(slots=True)  # one per line of text: slots make them cheaper to make and read
class _Line:
    text: str
    box: Box            # in text space: x along the writing direction, y down the page
    size: float         # font size of most of its characters
    bold: bool          # all of it bold
    faint: bool         # light or translucent colour
    block: int          # MuPDF's block on the page


@dataclass
class _Paragraph:
    lines: list[_Line]  # complete once its text or box is read
    is_list: bool = False

    @cached_property
    def text(self) -> str:
        return join_lines([line.text for line in self.lines])

    @cached_property
    def box(self) -> Box:
        return _union(line.box for line in self.lines)

    @property
    def style(self) -> tuple[float, bool]:
        return self.lines[0].size, self.lines[0].bold


@dataclass
class _Table:
    rows: list[list[str]]
    box: Box


@dataclass
class _Page:
    number: int
    lines: list[_Line]
    tables: list[_Table]
    top: float          # the page's extent down the text's lines, in text space
    bottom: float
    # Characters of the lines inside its tables by (size, bold): text of the body too, which
    # judging whether the body is bold must count (a manual of tables is not a manual of its
    # bold headings). Its size is judged without them: tables are often set smaller.
    table_styles: Counter[tuple[float, bool]] = field(default_factory=Counter)
    paragraphs: list[_Paragraph] = field(default_factory=list)


def parse_pdf(path: Path, options: ParseOptions) -> ParsedDocument:
    doc = _open(path, options.passwords)
    with doc:
        languages = _ocr_languages(options.ocr_languages)
        pages: list[_Page] = []
        warnings: list[str] = []
        without_text: list[int] = []
        unreadable: list[str] = []
        for pdf_page in doc.pages():
            try:
                read = _read_page(pdf_page, languages)
            except Exception as exc:  # one damaged page must not cost the rest of the file
                unreadable.append(f"page {pdf_page.number + 1} could not be read ({type(exc).__name__}: {exc})")
                continue
            if read is None:
                without_text.append(pdf_page.number + 1)
            else:
                pages.append(read)
        warnings.extend(unreadable)
        if not any(p.lines or p.tables for p in pages):
            if unreadable:  # the reason, not "no text": the pages may well hold some
                more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
                raise ParseError("unreadable pages", f"{unreadable[0]}{more}")
            if without_text:
                raise ParseError("no text layer", _no_text_detail(len(without_text), doc.page_count, languages))
            raise ParseError("no text", f"none of its {doc.page_count} pages has text")
        if without_text:
            warnings.append(f"no text layer on pages {_page_list(without_text)}: "
                            + ("OCR found nothing" if languages else "install tesseract-ocr to OCR them"))
        _drop_running_lines(pages)
        body_size = _body_size(pages)
        for page in pages:
            page.lines = [line for line in page.lines if not _watermark(line, body_size)]
            page.paragraphs = _paragraphs(_stitched(page.lines))
        headings = _outline_headings(doc, pages) or _font_headings(pages, body_size)
        elements = [e for page in pages for e in _page_elements(page, headings)]
        metadata = _file_metadata(doc)
        if without_text:
            metadata["pages_without_text"] = without_text
        return ParsedDocument(elements, metadata, warnings)


def _open(path: Path, passwords: tuple[str, ...]) -> pymupdf.Document:
    try:
        doc = pymupdf.open(path, filetype="pdf")
    except Exception as exc:  # PyMuPDF raises FileDataError, RuntimeError, ValueError...
        raise ParseError("corrupt", f"not a readable PDF ({exc})") from None
    if doc.needs_pass and not any(doc.authenticate(password) for password in ("", *passwords)):
        doc.close()
        tried = (f"none of the {len(passwords)} passwords given opens it" if passwords
                 else "give it with --password or --passwords-file")
        raise ParseError("encrypted", f"the PDF needs a password; {tried}")
    if doc.page_count == 0:
        doc.close()
        raise ParseError("corrupt", "the PDF has no pages")
    return doc


@lru_cache(maxsize=8)
def _ocr_languages(wanted: str) -> str:
    """The wanted Tesseract languages that are installed, '+'-joined; '' when OCR is not possible."""
    if wanted.strip().lower() in ("", "none") or shutil.which("tesseract") is None:
        return ""
    try:
        tessdata = Path(pymupdf.get_tessdata())
    except Exception:  # PyMuPDF raises when it cannot find the language data
        return ""
    return "+".join(lang for lang in wanted.split("+") if (tessdata / f"{lang}.traineddata").exists())


def _no_text_detail(missing: int, total: int, languages: str) -> str:
    pages = f"{missing} of its {total} pages" if missing < total else f"its {total} pages"
    if languages:
        return f"{pages} are images in which OCR ({languages}) found no text"
    return f"{pages} are images without text; install tesseract-ocr (and tesseract-ocr-chi-sim) to OCR them"


def _page_list(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[:20])) + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")


# --- one page -------------------------------------------------------------------------------

def _read_page(page: pymupdf.Page, ocr_languages: str) -> _Page | None:
    """The page's lines and tables in text space; None when it is an image without text."""
    textpage = page.get_textpage(flags=TEXT_FLAGS)
    content = page.get_text("dict", textpage=textpage, flags=TEXT_FLAGS)
    ocr = False
    if not _has_text(content) and page.get_images():
        if not ocr_languages:
            return None
        textpage = page.get_textpage_ocr(flags=TEXT_FLAGS, language=ocr_languages, dpi=OCR_DPI, full=True)
        content = page.get_text("dict", textpage=textpage, flags=TEXT_FLAGS)
        if not _has_text(content):
            return None
        ocr = True
    raw_lines = [(number, raw, _direction(raw)) for number, block in enumerate(content["blocks"])
                 for raw in block.get("lines", ())]
    direction = _main_direction(raw_lines)
    to_text_space = _text_space(direction)
    upright = [(number, raw) for number, raw, line_direction in raw_lines if line_direction == direction]
    _, top, _, bottom = to_text_space(page.rect)
    tables = [] if ocr else _tables(page, content, textpage, to_text_space, [raw for _, raw in upright],
                                    (top, bottom), ruled=direction in RIGHT_ANGLES)
    lines = []
    table_styles: Counter[tuple[float, bool]] = Counter()
    for number, raw in upright:  # the others run across the page's text: diagonal watermarks, stamps
        line = _line(raw, number, to_text_space)
        if line is None:
            continue
        if any(_inside(line.box, t.box) for t in tables):
            table_styles[line.size, line.bold] += len(line.text)
        else:
            lines.append(line)
    return _Page(page.number + 1, lines, tables, top, bottom, table_styles)


def _tables(page: pymupdf.Page, content: dict, textpage: pymupdf.TextPage, to_text_space,
            raw_lines: list[dict], extent: tuple[float, float], ruled: bool) -> list[_Table]:
    """The page's ruled tables (`ruled`: unless its text runs at a slant, which turns rules
    into boxes), then its tables of aligned text among the lines left, all in text space (on a
    page turned on its side, a table's rows run across the page's height). `extent`: the
    page's top and bottom in text space."""
    outlines = [(to_text_space(block["bbox"]), block["isrect"]) for block in content["blocks"] if block["type"] == 3]
    drawn: tuple[list, list] | None = None

    def drawn_rules() -> tuple[list, list]:  # read once, and only when needed: it is slow on busy pages
        nonlocal drawn
        if drawn is None:
            drawn = pdf_tables.rules(page.get_cdrawings(), to_text_space) if outlines else ([], [])
        return drawn

    tables: list[_Table] = []
    # Not even the outlines of the page's drawings could make a grid: no need to read them.
    if ruled and pdf_tables.outlines_may_hold_table(outlines) and pdf_tables.may_hold_table(*drawn_rules()):
        words = [(*to_text_space(word[:4]), *word[4:]) for word in page.get_text("words", textpage=textpage)]
        tables = [_Table(t.rows, t.box) for t in pdf_tables.find_tables(*drawn_rules(), words)]
    # Lines in the page's top and bottom margins (running headers, footers) are no rows.
    top, bottom = extent
    body_top, body_bottom = top + TABLE_MARGIN * (bottom - top), bottom - TABLE_MARGIN * (bottom - top)
    segments = [s for raw in raw_lines for s in _segments(raw, to_text_space)
                if s.box[3] > body_top and s.box[1] < body_bottom]
    if tables:
        segments = [s for s in segments if not any(_inside(s.box, t.box) for t in tables)]

    def horizontal_rules(top: float, bottom: float) -> list[tuple[float, float, float]]:
        # The drawings are read only when the outline of one lies across the table's rows.
        if not any(top < y1 and y0 < bottom for (_, y0, _, y1), _ in outlines):
            return []
        return [(rule.at, rule.start, rule.end) for rule in drawn_rules()[0]]

    @cache  # read once, and only when the page has a table of aligned text
    def pictures() -> list[Box]:
        # Images (placing them takes another pass over the page: only where its resources hold
        # some), and drawings other than rectangles (a plot, an arrow: not a rule, nor a cell's
        # shading) as tall and wide as a few lines of text.
        boxes = [to_text_space(info["bbox"]) for info in page.get_image_info()] if page.get_images() else []
        return boxes + [bbox for bbox, rectangle in outlines
                        if not rectangle and min(bbox[2] - bbox[0], bbox[3] - bbox[1]) >= MIN_PICTURE]

    tables += [_Table(t.rows, t.box) for t in pdf_aligned_tables.find_tables(segments, horizontal_rules, pictures)]
    return tables


def _segments(raw: dict, to_text_space) -> list[pdf_aligned_tables.Segment]:
    """A line's text in pieces, cut where its spans lie a cell gap apart (a table's columns)."""
    spans = raw["spans"]
    if len(spans) == 1:  # most lines: one piece, as it is
        text = " ".join(spans[0]["text"].split())
        return [pdf_aligned_tables.Segment(to_text_space(spans[0]["bbox"]), text, spans[0]["size"])] if text else []
    segments: list[pdf_aligned_tables.Segment] = []
    last: pdf_aligned_tables.Segment | None = None
    last_space = False  # whether the text so far ends in a space (a span of its own, often)
    for span in spans:
        text = " ".join(span["text"].split())
        if not text:
            last_space = last_space or bool(span["text"])
            continue
        box = to_text_space(span["bbox"])
        if last is not None and box[0] - last.box[2] < pdf_aligned_tables.CELL_GAP_EMS * span["size"]:
            last.box = (last.box[0], min(last.box[1], box[1]), max(last.box[2], box[2]), max(last.box[3], box[3]))
            last.text = f"{last.text} {text}" if span["text"][:1].isspace() or last_space else last.text + text
        else:
            last = pdf_aligned_tables.Segment(box, text, span["size"])
            segments.append(last)
        last_space = span["text"][-1:].isspace()
    return segments


def _has_text(content: dict) -> bool:
    return any(span["text"].strip() for block in content["blocks"]
               for line in block.get("lines", ()) for span in line["spans"])


def _main_direction(raw_lines: list[tuple[int, dict, tuple[float, float]]]) -> tuple[float, float]:
    """The writing direction of most characters: (1, 0) on ordinary pages."""
    directions = {direction for _, _, direction in raw_lines}
    if len(directions) <= 1:  # most pages: no need to count
        return directions.pop() if directions else LEFT_TO_RIGHT
    chars: Counter[tuple[float, float]] = Counter()
    for _, line, direction in raw_lines:
        chars[direction] += sum(len(s["text"]) for s in line["spans"])
    return chars.most_common(1)[0][0]


def _direction(line: dict) -> tuple[float, float]:
    if line["dir"] == LEFT_TO_RIGHT:  # most lines: spares the rounding
        return LEFT_TO_RIGHT
    dx, dy = line["dir"]
    return round(dx, 2) + 0.0, round(dy, 2) + 0.0  # + 0.0: -0.0 and 0.0 are one direction


def _text_space(direction: tuple[float, float]):
    """A function mapping page rectangles to text space, where lines run left to right."""
    if direction == LEFT_TO_RIGHT:
        return tuple  # the page's own space
    cos, sin = direction

    def to_text_space(rect) -> Box:
        x0, y0, x1, y1 = rect
        xs, ys = [], []
        for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):
            xs.append(x * cos + y * sin)
            ys.append(-x * sin + y * cos)
        return min(xs), min(ys), max(xs), max(ys)

    return to_text_space


def _line(raw: dict, block: int, to_text_space) -> _Line | None:
    spans = raw["spans"]
    if len(spans) == 1:  # most lines
        span = spans[0]
        text = " ".join(span["text"].split())
        return _Line(text, to_text_space(raw["bbox"]), round(span["size"] * 2) / 2, _bold(span), _faint(span),
                     block) if text else None
    inked = [s for s in spans if s["text"].strip()]
    if not inked:
        return None
    text = " ".join("".join(s["text"] for s in spans).split())
    sizes: dict[float, int] = {}
    for s in inked:
        size = round(s["size"] * 2) / 2
        sizes[size] = sizes.get(size, 0) + len(s["text"])
    return _Line(
        text=text, box=to_text_space(raw["bbox"]), size=max(sizes, key=sizes.__getitem__),
        bold=all(_bold(s) for s in inked),
        faint=all(_faint(s) for s in inked),
        block=block,
    )


def _bold(span: dict) -> bool:
    return bool(span["flags"] & pymupdf.TEXT_FONT_BOLD) or _bold_font(span["font"])


@lru_cache(maxsize=1024)
def _bold_font(name: str) -> bool:
    return re.search(r"bold|black|heavy|semibold|demi", name, re.IGNORECASE) is not None


def _faint(span: dict) -> bool:
    """Light grey or translucent; invisible text (alpha 0) is an OCR layer and counts as ink."""
    red, green, blue = (span["color"] >> 16) & 255, (span["color"] >> 8) & 255, span["color"] & 255
    light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.75 * 255
    return light or 0 < span["alpha"] < 255


def _inside(box: Box, outer: Box) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


def _union(boxes) -> Box:
    x0s, y0s, x1s, y1s = zip(*boxes)
    return min(x0s), min(y0s), max(x1s), max(y1s)


# --- lines to paragraphs --------------------------------------------------------------------

def _stitched(lines: list[_Line]) -> list[_Line]:
    """Pieces of one printed line back into one: extraction (and OCR above all) cuts lines
    at wide gaps of justified text, each piece with its own guess of the font size; a section
    number set apart from its heading joins it, however wide the gap."""
    stitched: list[_Line] = []
    for line in lines:
        last = stitched[-1] if stitched else None
        if (last is not None and (not _elsewhere(line, last) or _SECTION_NUMBER.match(last.text))
                and line.box[0] >= last.box[2] - 1 and line.box[1] < last.box[3] - 0.5 * (line.box[3] - line.box[1])):
            longer = last if len(last.text) >= len(line.text) else line
            stitched[-1] = _Line(f"{last.text} {line.text}", _union([last.box, line.box]), longer.size,
                                 last.bold and line.bold, last.faint and line.faint, last.block)
        else:
            stitched.append(line)
    return stitched


def _paragraphs(lines: list[_Line]) -> list[_Paragraph]:
    """Consecutive lines of one block and one style, each below the one before, form a
    paragraph; a bullet starts a new one."""
    paragraphs: list[_Paragraph] = []
    previous: _Line | None = None
    for line in lines:
        bullet = bool(_LIST_ITEM.match(line.text))
        gap = line.box[1] - previous.box[3] if previous else 0.0
        if (previous is None or bullet or line.block != previous.block or line.bold != previous.bold
                or abs(line.size - previous.size) > 1 or gap > 0.8 * (line.box[3] - line.box[1])
                or _elsewhere(line, previous)):
            paragraphs.append(_Paragraph([line], is_list=bullet))
        else:
            paragraphs[-1].lines.append(line)
        previous = line
    return paragraphs


def _elsewhere(line: _Line, previous: _Line) -> bool:
    """Whether a line goes on somewhere else than the line before ends: far to its side (the
    next column), or above it."""
    same_row = line.box[1] < previous.box[3] - 0.5 * (line.box[3] - line.box[1])
    return line.box[3] < previous.box[1] or same_row and line.box[0] - previous.box[2] > 2 * line.size


# --- running headers, footers and watermarks ------------------------------------------------

def _normal(text: str) -> str:
    """A line with its numbers blanked, so 'Page 3 of 9' repeats like 'Page 4 of 9'."""
    return re.sub(r"\d+", "#", " ".join(text.lower().split()))


def _drop_running_lines(pages: list[_Page]) -> None:
    """Drop page numbers and lines that repeat at the top or bottom of several pages."""
    edges = {id(page): _edge_lines(page) for page in pages}
    counts = Counter(text for page in pages for text in {_normal(line.text) for line in edges[id(page)]})
    needed = min(REPEATED_PAGES, len(pages))
    repeated = {text for text, n in counts.items() if n >= needed} if len(pages) >= 2 else set()
    for page in pages:
        lines = {id(line): line for line in edges[id(page)]}
        numbers = {id(line) for line in edges[id(page)] if _PAGE_NUMBER.match(line.text)}
        running = numbers | {id(line) for line in edges[id(page)] if _normal(line.text) in repeated}
        # A number beside text that stays is the text's (a section number: "1   Scope"); a
        # repeated line stays a running one whatever is beside it (a footer's section number).
        running = {i for i in running
                   if i not in numbers or all(id(mate) in running for mate in _row_mates(lines[i], page))}
        if all(id(line) in running for line in page.lines):
            running = numbers  # a repeated line that is all the page says is its content
        page.lines = [line for line in page.lines if id(line) not in running]


def _row_mates(line: _Line, page: _Page) -> list[_Line]:
    """The page's other lines beside `line`, on its row."""
    return [other for other in page.lines
            if other is not line and other.box[1] < line.box[3] and line.box[1] < other.box[3]]


def _edge_lines(page: _Page) -> list[_Line]:
    """Lines where running headers and footers are: the page's first and last lines, and
    those in its top and bottom margins."""
    by_y = sorted(page.lines, key=lambda line: line.box[1])
    margin = (page.bottom - page.top) * MARGIN_FRACTION
    return [line for index, line in enumerate(by_y)
            if index < EDGE_LINES or index >= len(by_y) - EDGE_LINES
            or line.box[3] < page.top + margin or line.box[1] > page.bottom - margin]


def _body_size(pages: list[_Page]) -> float:
    sizes: Counter[float] = Counter()
    for page in pages:
        for line in page.lines:
            sizes[line.size] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 10.0


def _watermark(line: _Line, body_size: float) -> bool:
    return line.faint and line.size >= WATERMARK_SIZE_RATIO * body_size


# --- headings -------------------------------------------------------------------------------

@dataclass
class _HeadingPlan:
    """Which paragraphs are headings (id -> depth), and headings the outline names that the
    text does not show (page -> [(y, title, depth)]), to be added where the outline points."""

    depths: dict[int, int] = field(default_factory=dict)
    added: dict[int, list[tuple[float, str, int]]] = field(default_factory=dict)


def _heading_key(text: str) -> str:
    return _NOT_WORD.sub("", _NUMBERING.sub("", text).lower())


def _outline_headings(doc: pymupdf.Document, pages: list[_Page]) -> _HeadingPlan | None:
    """Headings from the PDF outline: each entry matched to its paragraph on its page, or
    added at its destination when the page's text does not show it. None when there is no
    outline, or one whose titles mostly are not on their pages (a stale or generated one)."""
    # Where an entry points on its page is only needed for titles the page does not show,
    # and resolving every entry's destination (get_toc(simple=False)) is slow.
    toc = doc.get_toc(simple=True)
    entries = [i for i, (_, title, number) in enumerate(toc) if 1 <= number <= doc.page_count and title.strip()]
    if not entries:
        return None
    plan = _HeadingPlan()
    by_number = {page.number: page for page in pages}
    indexes: dict[int, dict[str, list[_Paragraph]]] = {}
    destinations = None
    matrices: dict[int, pymupdf.Matrix] = {}  # loading a page for each entry that points there is slow
    for index in entries:
        level, title, number = toc[index]
        depth = min(level - 1, MAX_HEADING_DEPTH)
        page = by_number.get(number)
        key = _heading_key(title)
        if page is not None and key:
            if number not in indexes:
                indexes[number] = _heading_index(page)
            match = _take_heading(page, indexes[number], key, plan.depths)
            if match is not None:
                plan.depths[id(match)] = depth
                continue
        if destinations is None:
            destinations = [entry[3] for entry in doc.get_toc(simple=False)]
        if number not in matrices:
            matrices[number] = doc[number - 1].transformation_matrix
        y = _destination_y(matrices[number], destinations[index])
        plan.added.setdefault(number, []).append((y, title.strip(), depth))
    return plan if len(plan.depths) >= len(entries) / 2 else None


def _heading_index(page: _Page) -> dict[str, list[_Paragraph]]:
    """The page's paragraphs by heading key, and by their first line's key (marked with a
    leading newline) for headings set in the body's type that run into the text below."""
    index: dict[str, list[_Paragraph]] = {}
    for paragraph in page.paragraphs:
        index.setdefault(_heading_key(paragraph.text), []).append(paragraph)
        if len(paragraph.lines) > 1:
            index.setdefault("\n" + _heading_key(paragraph.lines[0].text), []).append(paragraph)
    return index


def _take_heading(page: _Page, index: dict[str, list[_Paragraph]], key: str,
                  taken: dict[int, int]) -> _Paragraph | None:
    """The first unused paragraph reading as `key`; one that only begins with it is split."""
    for candidates in (index.get(key), index.get("\n" + key)):
        while candidates and id(candidates[0]) in taken:
            candidates.pop(0)
    if index.get(key):
        return index[key].pop(0)
    if index.get("\n" + key):
        paragraph = index["\n" + key].pop(0)
        heading = _Paragraph(paragraph.lines[:1])
        position = page.paragraphs.index(paragraph)
        page.paragraphs[position:position + 1] = [heading, _Paragraph(paragraph.lines[1:], paragraph.is_list)]
        return heading
    return None


def _destination_y(page_matrix: pymupdf.Matrix, destination: dict) -> float:
    point = destination.get("to") if isinstance(destination, dict) else None
    if not isinstance(point, pymupdf.Point):
        return 0.0
    return (point * page_matrix).y


def _font_headings(pages: list[_Page], body_size: float) -> _HeadingPlan:
    """Headings from type: short paragraphs larger than the body text, or bold where the body
    is not; bigger type is a shallower heading."""
    chars: Counter[tuple[float, bool]] = Counter()
    for page in pages:
        for p in page.paragraphs:
            chars[p.style] += len(p.text)
        chars.update(page.table_styles)
    body_bold = chars.most_common(1)[0][0][1] if chars else False

    def heading_style(p: _Paragraph) -> bool:
        size, bold = p.style
        text = p.text
        if (p.is_list or len(text) > HEADING_MAX_CHARS or len(p.lines) > 3 or not re.search(r"[^\W\d_]", text)
                or _LEADER.search(text)):
            return False  # a list item, a paragraph, a number, a line of a table of contents
        return size >= body_size * HEADING_SIZE_RATIO or (bold and not body_bold and size >= body_size * 0.95)

    candidates: list[_Paragraph] = []
    for page in pages:
        kept: list[_Paragraph] = []
        # A cover page (the first of several, all of it in large or bold type) has one heading,
        # the title in its largest type; its other lines (organisation, date...) are text.
        cover = (page is pages[0] and page.number == 1 and len(pages) > 1 and len(page.paragraphs) > 1
                 and all(heading_style(p) for p in page.paragraphs))
        title = max(page.paragraphs, key=lambda p: p.style[0]) if cover else None
        for p in page.paragraphs:
            if not heading_style(p) or cover and p is not title:
                kept.append(p)
            elif candidates and kept and kept[-1] is candidates[-1] and _continues_heading(kept[-1], p):
                kept[-1] = candidates[-1] = _Paragraph(kept[-1].lines + p.lines)  # a heading on two lines
            else:
                kept.append(p)
                candidates.append(p)
        page.paragraphs = kept
    styles = sorted({p.style for p in candidates}, key=lambda style: (-style[0], not style[1]))
    depth_of = {style: min(depth, MAX_HEADING_DEPTH) for depth, style in enumerate(styles)}
    return _HeadingPlan(depths={id(p): depth_of[p.style] for p in candidates})


def _continues_heading(heading: _Paragraph, line: _Paragraph) -> bool:
    """Whether a heading-styled paragraph is the next line of the heading just above it."""
    above, below = heading.box, line.box
    return (line.style == heading.style and 0 <= below[1] - above[3] < 0.6 * (below[3] - below[1])
            and below[0] < above[2] and above[0] < below[2])


# --- elements -------------------------------------------------------------------------------

def _page_elements(page: _Page, headings: _HeadingPlan) -> list[Element]:
    units: list[_Paragraph | _Table] = [*page.paragraphs, *page.tables]
    ordered = [units[i] for i in reading_order([u.box for u in units])]
    added = sorted(headings.added.get(page.number, []))
    meta = lambda **more: element_metadata(page_number=page.number, **more)  # noqa: E731
    elements: list[Element] = []
    for unit in ordered:
        while added and added[0][0] <= unit.box[1] + 1:
            _, title, depth = added.pop(0)
            elements.append(Title(title, metadata=meta(category_depth=depth)))
        if isinstance(unit, _Table):
            elements.append(table(unit.rows, page.number))
        elif id(unit) in headings.depths:
            elements.append(Title(unit.text.rstrip(" .:"), metadata=meta(category_depth=headings.depths[id(unit)])))
        elif unit.is_list:
            elements.append(ListItem(_BULLET_SIGN.sub("", unit.text, count=1), metadata=meta()))
        elif elements and type(elements[-1]) is NarrativeText and _continues(elements[-1].text, unit.text):
            elements[-1].text = join_lines([elements[-1].text, unit.text])
        else:
            elements.append(NarrativeText(unit.text, metadata=meta()))
    elements.extend(Title(title, metadata=meta(category_depth=depth)) for _, title, depth in added)
    return elements


def _continues(text: str, next_text: str) -> bool:
    """Whether a paragraph goes on in the next one: a sentence cut by a column or a formula."""
    return text[-1] not in _SENTENCE_END and next_text[0].islower()


def _file_metadata(doc: pymupdf.Document) -> dict:
    info = doc.metadata or {}
    found = {
        "title": (info.get("title") or "").strip(), "author": (info.get("author") or "").strip(),
        "created": _iso_date(info.get("creationDate") or ""), "pages": doc.page_count,
    }
    return {k: v for k, v in found.items() if v}


def _iso_date(pdf_date: str) -> str | None:
    """'D:20220406201541+02'00'' -> '2022-04-06T20:15:41+02:00' (None when unreadable)."""
    match = _PDF_DATE.match(pdf_date.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    text = f"{year}-{month or '01'}-{day or '01'}"
    if hour:
        text += f"T{hour}:{minute or '00'}:{second or '00'}"
        if zone:
            offset = zone.replace("'", "")  # +02'00' -> +0200
            text += "Z" if zone == "Z" else f"{offset[:3]}:{offset[3:5] or '00'}"
    return text
