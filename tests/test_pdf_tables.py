"""PDF tables without ruling lines and booktabs tables, notes under tables, and the PDF spot
check's other findings (issue 23), on PDFs the tests write; the table benchmark's metric on a
generated PDF with a hand-written ground truth."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from bench import tables as table_bench
from bench.fixtures import write_table_set
from ingest.chunking import chunk_elements
from ingest.parsers import ParseOptions, pdf_aligned_tables
from ingest.parsers.pdf import parse_pdf
from tests.documents import write_table_pdf

ROWS = [("Region", "Sales 2023", "Sales 2024", "Growth"), ("North", "120", "131", "9%"), ("South", "95", "97", "2%"),
        ("East", "80", "92", "15%"), ("West", "60", "58", "-3%")]
NOTE = "Note: figures for 2024 are provisional."
BODY = ("The committee met four times during the year to review the accounts, the budget and the plans of "
        "each region, and it reported its findings to the board in the spring and in the autumn.")


def _elements(path: Path) -> list:
    return parse_pdf(path, ParseOptions(ocr_languages="none")).elements


def _kinds_and_texts(path: Path) -> list[tuple[str, str]]:
    return [(type(e).__name__, e.text) for e in _elements(path)]


@pytest.mark.parametrize("rules", ["none", "booktabs", "grid"])
def test_a_table_is_one_table_element_with_its_header_and_the_note_under_it_stays_out(tmp_path, rules):
    path = write_table_pdf(tmp_path / f"{rules}.pdf", ROWS, rules=rules, note=NOTE)
    elements = _elements(path)
    tables = [e for e in elements if type(e).__name__ == "Table"]
    assert len(tables) == 1, [(type(e).__name__, e.text) for e in elements]
    assert tables[0].text == "\n".join(" | ".join(row) for row in ROWS)
    assert "<thead><tr><th>Region</th><th>Sales 2023</th>" in tables[0].metadata.text_as_html
    texts = [e.text for e in elements if type(e).__name__ != "Table"]
    assert NOTE in texts and "The text goes on after the table." in texts


def test_an_unruled_table_is_split_between_rows_with_its_header_repeated(tmp_path, embedder):
    rows = [("Item", "Quantity", "Unit price", "Total")] + [
        (f"Article {i}", f"{i * 3}", f"{i}.50 EUR", f"{i * 7}.00 EUR") for i in range(1, 36)]
    path = write_table_pdf(tmp_path / "long.pdf", rows)
    elements = _elements(path)
    chunks = chunk_elements(elements, "long.pdf", embedder.count_tokens, 128)
    table_chunks = [c for c in chunks if "Table" in c.element_types]
    assert len(table_chunks) > 2
    for chunk in table_chunks:
        assert "Item | Quantity | Unit price | Total" in chunk.text
    assert any("Article 35 | 105 | 35.50 EUR | 245.00 EUR" in c.text for c in table_chunks)


def test_a_wrapped_cell_stays_whole(tmp_path):
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    lines = [(130, "Country", "Cases", "Share"), (148, "Austria", "3,375", "86.2"),
             (166, "Czech", "17,655", "98.6"), (178, "republic", "", ""), (196, "Denmark", "1,662", "3.1"),
             (214, "Estonia", "430", "94.2")]
    for y, *cells in lines:
        for x, text in zip((72, 250, 400), cells):
            if text:
                page.insert_text((x, y), text, fontsize=10)
    doc.save(tmp_path / "wrapped.pdf")
    tables = [e for e in _elements(tmp_path / "wrapped.pdf") if type(e).__name__ == "Table"]
    assert len(tables) == 1
    assert "Czech republic | 17,655 | 98.6" in tables[0].text.split("\n")


def test_a_word_hyphenated_in_a_wrapped_cell_is_mended_and_long_descriptions_keep_the_header(tmp_path):
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    lines = [(130, "Line", "Position", "Description"), (148, "23e", "19-39", "Qualified health plan expenses"),
             (166, "23f", "19-26", "Number of individuals given assis-"), (178, "", "", "tance with premiums"),
             (196, "24", "21-23", "Current page number"), (214, "24", "28-30", "Last page number")]
    for y, *cells in lines:
        for x, text in zip((72, 150, 250), cells):
            if text:
                page.insert_text((x, y), text, fontsize=10)
    doc.save(tmp_path / "hyphen.pdf")
    tables = [e for e in _elements(tmp_path / "hyphen.pdf") if type(e).__name__ == "Table"]
    assert len(tables) == 1
    assert tables[0].text.split("\n")[:3] == [
        "Line | Position | Description", "23e | 19-39 | Qualified health plan expenses",
        "23f | 19-26 | Number of individuals given assistance with premiums"]


def test_text_around_a_picture_is_no_table(tmp_path):
    # A contents page in three columns, a photo in the middle one: entries and captions line
    # up across the columns, but they are the picture's surroundings, not a table's rows.
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    entries = [["2 At a Glance", "42 Management Review", "150 Sustainable Growth"],
               ["4 Value Creation", "", "152 Extending Care"], ["6 Key Indicators", "", "155 ESG Governance"],
               ["8 Chairman's Statement", "", "162 Material Issues"], ["14 Inclusive Ecosystem", "PG 54", "166 ESG"],
               ["16 Digital Transformation", "54 Business Overview", "168 Natural Capital"]]
    for i, row in enumerate(entries):
        for x, text in zip((50, 230, 400), row):
            if text:
                page.insert_text((x, 130 + 16 * i), text, fontsize=10)
    photo = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 30), False)
    photo.clear_with(200)
    page.insert_image(pymupdf.Rect(230, 140, 330, 200), pixmap=photo)
    doc.save(tmp_path / "contents.pdf")
    elements = _elements(tmp_path / "contents.pdf")
    assert not [e for e in elements if type(e).__name__ == "Table"], [(type(e).__name__, e.text) for e in elements]
    assert "162 Material Issues" in " ".join(e.text for e in elements)


def test_bullets_of_a_symbol_font_make_a_list_not_a_table():
    # A Symbol-font bullet comes out of the text layer as U+F0B7, in the private use area.
    items = ["Introduction", "Clauses 1 to 5, 7, and 9 to 13", "Annex A to Annex D", "Annex F"]
    segments = [pdf_aligned_tables.Segment((72, y, 77, y + 10), "\uf0b7", 10) for y in range(100, 164, 16)]
    segments += [pdf_aligned_tables.Segment((100, y, 100 + 5 * len(text), y + 10), text, 10)
                 for y, text in zip(range(100, 164, 16), items)]
    assert pdf_aligned_tables.find_tables(segments, lambda top, bottom: []) == []


def _aligned_segments(rows: list[tuple[str, ...]], xs: tuple[float, ...]) -> list:
    return [pdf_aligned_tables.Segment((x, 100 + 16 * i, x + 5 * len(text), 110 + 16 * i), text, 10)
            for i, row in enumerate(rows) for x, text in zip(xs, row) if text]


@pytest.mark.parametrize("rows, xs", [
    # a listing, its lines numbered one by one
    ([(str(n), f"buffer[{n - 24}] = {n * 8};") for n in range(24, 30)], (72, 100)),
    # an index set in two columns
    ([("Achterknoten, 20", "regulaere, 30"), ("Anordnungsaxiome, 66", "Flaechenelement, 95"),
      ("Atlas, 24", "Formoperator, 12"), ("Aussenwinkel, 70", "Fundamentalform, 91, 93"),
      ("Bogenlaenge, 57", "Gauss-Krümmung, 92")], (72, 320)),
    # a formula: partial derivatives in a matrix
    ([("\u2202u \u2202x", "\u2202v \u2202x", "0"), ("\u2202u \u2202y", "\u2202v \u2202y", "0"),
      ("\u2202u \u2202z", "\u2202v \u2202z", "1")], (150, 220, 290)),
])
def test_listings_indexes_and_formulas_are_no_tables(rows, xs):
    assert pdf_aligned_tables.find_tables(_aligned_segments(rows, xs), lambda top, bottom: []) == []


def test_a_title_in_larger_type_above_a_table_is_not_its_row(tmp_path):
    title = [(72, 90, "Terminal Responses", 16), (400, 90, "page 2", 16)]
    rows = [(72 + 150 * c, 120 + 16 * r, text, 10) for r, row in enumerate(ROWS) for c, text in enumerate(row)]
    path = _write_page(tmp_path / "titled.pdf", [title + rows])
    tables = [e for e in _elements(path) if type(e).__name__ == "Table"]
    assert len(tables) == 1 and tables[0].text == "\n".join(" | ".join(row) for row in ROWS)


def _write_page(path: Path, pages: list[list[tuple[float, float, str, float]]]) -> Path:
    """Pages of (x, y, text, font size) lines, in Helvetica (bold from 13 points up)."""
    doc = pymupdf.open()
    for lines in pages:
        page = doc.new_page(width=595, height=842)
        for x, y, text, size in lines:
            page.insert_text((x, y), text, fontsize=size, fontname="hebo" if size >= 13 else "helv")
    doc.save(path)
    return path


def _body(y: float) -> list[tuple[float, float, str, float]]:
    words, lines, line = BODY.split(), [], ""
    for word in words:
        if len(line) + len(word) > 80:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    return [(72, y + 14 * i, text, 10) for i, text in enumerate([*lines, line])]


def test_two_columns_of_running_text_and_a_list_are_no_tables(tmp_path):
    column_text = [BODY[i:i + 38] for i in range(0, 38 * 8, 38)]
    two_columns = [(72, 100 + 14 * i, text, 10) for i, text in enumerate(column_text)]
    two_columns += [(320, 100 + 14 * i, text, 10) for i, text in enumerate(column_text)]
    items = ["the accounts of each region", "the budget for next year", "the plans for new offices",
             "the audit of the pension fund"]
    listed = [(72, 300 + 16 * i, "\u2022", 10) for i in range(len(items))]
    listed += [(100, 300 + 16 * i, text, 10) for i, text in enumerate(items)]
    path = _write_page(tmp_path / "columns.pdf", [two_columns + listed])
    assert not [e for e in _elements(path) if type(e).__name__ == "Table"]


def test_a_section_number_on_its_own_line_is_no_page_number(tmp_path):
    pages = [[(72, 60, "1", 14), (110, 60, "Scope of the policy", 14), *_body(90)],
             [(72, 60, "2", 14), (110, 60, "Claiming expenses", 14), *_body(90)]]
    path = _write_page(tmp_path / "numbers.pdf", pages)
    titles = [text for kind, text in _kinds_and_texts(path) if kind == "Title"]
    assert titles == ["1 Scope of the policy", "2 Claiming expenses"]


def test_a_running_footer_beside_a_section_number_is_dropped(tmp_path):
    # The footer names the page's section on the left: that number is no page number, and the
    # repeated footer beside it is still a running line.
    pages = [[(72, 60, "Scope of the policy", 14), *_body(90), (72, 800, section, 8),
              (250, 800, "Internal Revenue Manual", 8), (420, 800, "Cat. No. 28171E", 8)]
             for section in ("2.3.1", "2.3.2", "2.3.3.1", "2.3.4")]
    path = _write_page(tmp_path / "footers.pdf", pages)
    text = " ".join(text for _, text in _kinds_and_texts(path))
    assert "Internal Revenue Manual" not in text and "Cat. No." not in text


def test_cover_page_lines_are_not_headings(tmp_path):
    cover = [(72, 200, "Annual Report 2024", 26), (72, 240, "Northwind Trading Ltd", 16),
             (72, 270, "Prepared by the Finance Department", 14), (72, 300, "March 2025", 14)]
    pages = [cover, [(72, 60, "Introduction", 14), *_body(90)], [(72, 60, "Results", 14), *_body(90)]]
    path = _write_page(tmp_path / "cover.pdf", pages)
    found = _kinds_and_texts(path)
    titles = [text for kind, text in found if kind == "Title"]
    assert titles == ["Annual Report 2024", "Introduction", "Results"]
    texts = [text for _, text in found]
    assert any("Northwind Trading Ltd" in text for text in texts) and any("March 2025" in text for text in texts)


def test_the_table_benchmark_scores_adjacency_relations_against_a_ground_truth(tmp_path):
    write_table_set(tmp_path)  # a grid, a booktabs and an unruled table, each cell in the ground truth
    truth = table_bench.ground_truth(tmp_path / "sales-booktabs-str.xml")
    # 5 rows of 4 cells: 5 x 3 relations to the right, 4 x 4 downwards.
    assert sum(table_bench.relations(truth[1][0]).values()) == 31

    results = table_bench.run(tmp_path)
    assert results["documents"] == 3 and results["pages"] == 3
    ours = results["sides"][table_bench.PGKB]
    assert (ours["precision"], ours["recall"], ours["f1"]) == (1.0, 1.0, 1.0)
    # The peer reads the grid at least, so the quick run has a ratio.
    assert 0 < results["sides"][table_bench.PEER]["f1"] <= 1


def test_the_metric_relates_spanning_cells_and_skips_empty_ones():
    spanning = table_bench.Cell(0, 0, 0, 1, "total")
    cells = [spanning, table_bench.Cell(1, 0, 1, 0, "a"), table_bench.Cell(1, 1, 1, 1, ""),
             table_bench.Cell(1, 2, 1, 2, "c")]
    assert table_bench.relations(cells) == {("total", "a", "down"): 1, ("a", "c", "right"): 1}
    assert table_bench.normalised("Sales, 2023 (%)") == "sales2023"


def test_side_headings_beside_their_paragraphs_are_no_table(tmp_path):
    sections = [(100, ["2.3.1", "(01-17-2023)", "Program Scope", "and Objectives"],
                 ["(1) Overview: the business master file system provides read-only",
                  "access to accounts on the master file in Martinsburg. All entities,",
                  "master file tax modules and the most recent seven years of",
                  "retention data are on line."]),
                (180, ["2.3.2", "(01-20-2003)", "Command Code", "Overview"],
                 ["(1) The command code gives access to the retention tax modules of",
                  "accounts that merged to a new number after the tax module had",
                  "been dropped to retention, and to the modules removed before",
                  "the merge took place."])]
    lines = [(x, y + 14 * i, text, 10) for y, headings, paragraph in sections
             for x, column in ((72, headings), (200, paragraph)) for i, text in enumerate(column)]
    path = _write_page(tmp_path / "side-headings.pdf", [lines])
    elements = _elements(path)
    assert not [e for e in elements if type(e).__name__ == "Table"], [(type(e).__name__, e.text) for e in elements]
    text = " ".join(e.text for e in elements)
    assert "modules and the most recent seven years of retention data" in text


def test_blurbs_side_by_side_whose_lines_run_on_are_no_table(tmp_path):
    blurbs = [["2.5 kilograms of carbon", "intensity from our eastern", "operations in the year"],
              ["the first woman engineer", "on the offshore platform", "was hired by our team"],
              ["seven new partners", "joined the programme", "during the spring"]]
    lines = [(72 + 170 * column, 100 + 14 * i, text, 10)
             for column, blurb in enumerate(blurbs) for i, text in enumerate(blurb)]
    path = _write_page(tmp_path / "blurbs.pdf", [lines + _body(200)])
    elements = _elements(path)
    assert not [e for e in elements if type(e).__name__ == "Table"], [(type(e).__name__, e.text) for e in elements]


def test_words_set_as_spans_of_their_own_keep_their_spaces_in_a_table(tmp_path):
    # Some producers set each word and each space in a span of its own (here: the spaces in
    # another font): the cell is "Last Period Satisfied", not "LastPeriodSatisfied".
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    rows = [("Code", "Section", "Lines"), ("10", "Summary", "4"), ("11", "Last Period Satisfied", "12"),
            ("12-16", "Tax Module", "30")]
    for i, (code, name, lines) in enumerate(rows):
        y = 100 + 18 * i
        page.insert_text((72, y), code, fontsize=10)
        page.insert_text((400, y), lines, fontsize=10)
        x = 200.0
        for n, word in enumerate(name.split()):
            if n:
                page.insert_text((x, y), " ", fontsize=10, fontname="cour")
                x += pymupdf.get_text_length(" ", fontname="cour", fontsize=10)
            page.insert_text((x, y), word, fontsize=10)
            x += pymupdf.get_text_length(word, fontsize=10)
    doc.save(tmp_path / "spans.pdf")
    tables = [e for e in _elements(tmp_path / "spans.pdf") if type(e).__name__ == "Table"]
    assert len(tables) == 1
    assert tables[0].text.split("\n") == [" | ".join(row) for row in rows]


EXHIBIT_ROWS = [("1", "01-05", "Command Code (required)"), ("1", "06", "Command Definer Code (required):"),
                ("1", "07-16", "EIN (required)"), ("1", "17", "Display Source Code"), ("1", "18-19", "MFT (required)")]
EXHIBIT_LIST = ["A = adjustments", "M = installments", "R = return"]


def _exhibit(top: float, bold_title: str | None = None) -> list[tuple[float, float, str, float]]:
    """A manual's exhibit: its header a wider gap above the first row than rows from one
    another, a list inside the second row's description, on lines of their own."""
    lines = [(x, top, text, 9) for x, text in zip((72, 160, 250), ("LINE", "POSITION", "DESCRIPTION AND VALIDITY"))]
    y = top + 30
    for number, row in enumerate(EXHIBIT_ROWS):
        lines += [(x, y, text, 9) for x, text in zip((72, 160, 250), row)]
        y += 19
        if number == 1:
            lines += [(260, y + 19 * i, text, 9) for i, text in enumerate(EXHIBIT_LIST)]
            y += 19 * len(EXHIBIT_LIST)
    return lines


def test_a_header_set_apart_and_a_list_inside_a_cell_stay_in_their_table(tmp_path):
    path = _write_page(tmp_path / "exhibit.pdf", [_exhibit(130)])
    elements = _elements(path)
    tables = [e for e in elements if type(e).__name__ == "Table"]
    assert len(tables) == 1, [(type(e).__name__, e.text) for e in elements]
    assert tables[0].text.split("\n") == [
        "LINE | POSITION | DESCRIPTION AND VALIDITY", "1 | 01-05 | Command Code (required)",
        "1 | 06 | Command Definer Code (required): " + " ".join(EXHIBIT_LIST),
        *(" | ".join(row) for row in EXHIBIT_ROWS[2:])]


def test_a_footer_in_the_page_margin_is_no_row_of_the_table_above_it(tmp_path):
    # The last row's baseline at 775, the footer's at 803: as close as rows are, but in the
    # bottom margin of the page (842 points high).
    footer = [(72, 803, "Cat. No. 28171E", 9), (250, 803, "Internal Revenue Manual", 9), (450, 803, "Exhibit 2", 9)]
    path = _write_page(tmp_path / "footer.pdf", [_exhibit(612) + footer])
    elements = _elements(path)
    tables = [e for e in elements if type(e).__name__ == "Table"]
    assert len(tables) == 1 and "Manual" not in tables[0].text, [(type(e).__name__, e.text) for e in elements]
    assert tables[0].text.split("\n")[-1] == " | ".join(EXHIBIT_ROWS[-1])
    assert "Internal Revenue Manual" in " ".join(e.text for e in elements)


def test_headings_in_bold_body_type_stay_headings_when_tables_hold_most_of_the_text(tmp_path):
    # Outside its tables such a manual is mostly its bold exhibit titles: the body's type is
    # judged on all of its text, or every title would read as body text.
    doc = pymupdf.open()
    for number in range(1, 4):
        page = doc.new_page(width=595, height=842)
        page.insert_text((72, 90), f"Exhibit {number} Command Code Display", fontsize=9, fontname="hebo")
        for x, y, text, size in _exhibit(130):
            page.insert_text((x, y), text, fontsize=size)
    doc.save(tmp_path / "manual.pdf")
    elements = _elements(tmp_path / "manual.pdf")
    assert [e.text for e in elements if type(e).__name__ == "Title"] == [
        f"Exhibit {number} Command Code Display" for number in range(1, 4)]
    assert sum(1 for e in elements if type(e).__name__ == "Table") == 3


def test_figure_labels_a_caption_and_a_formula_below_them_are_no_table():
    # Two labels under a figure (the second on two lines), the caption across them, then a
    # formula set in pieces: three lines of two pieces or more, but only two rows of two
    # cells once the label's lines are joined.
    lines = [(265, 274, 9, [(242, "(a) K"), (314, "(b) the complex, subdivided at")]),
             (276, 284, 9, [(330, "its middle point")]),
             (297, 307, 10.9, [(210, "Figure 2.10: an example for remark 36.")]),
             (321, 336, 10.9, [(263, "X n"), (307, "n + 1")]),
             (330, 358, 10.9, [(90, "Proof: the sum is"), (324, "k"), (351, "= 1"), (531, "\u25a0")])]
    segments = [pdf_aligned_tables.Segment((x, top, x + 4.5 * len(text), bottom), text, size)
                for top, bottom, size, pieces in lines for x, text in pieces]
    assert pdf_aligned_tables.find_tables(segments, lambda top, bottom: []) == []


def test_a_ruled_table_on_a_page_turned_on_its_side_keeps_its_rows(tmp_path):
    # A landscape table set on a portrait page: its text runs up the page and its rows follow
    # one another rightwards. It must read as printed, not with rows and columns swapped.
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    left, bottom, row_height, column_width = 100, 700, 20, 120
    for i, row in enumerate(ROWS):
        for j, text in enumerate(row):
            page.insert_text((left + i * row_height + 14, bottom - j * column_width - 5), text, fontsize=10, rotate=90)
    width, height = len(ROWS) * row_height, len(ROWS[0]) * column_width
    for i in range(len(ROWS) + 1):
        page.draw_line((left + i * row_height, bottom - height), (left + i * row_height, bottom))
    for j in range(len(ROWS[0]) + 1):
        page.draw_line((left, bottom - j * column_width), (left + width, bottom - j * column_width))
    doc.save(tmp_path / "turned.pdf")
    tables = [e for e in _elements(tmp_path / "turned.pdf") if type(e).__name__ == "Table"]
    assert [t.text for t in tables] == ["\n".join(" | ".join(row) for row in ROWS)]


def _ruled_inside(path: Path, rows: list[tuple[str, ...]], row_rules: bool) -> Path:
    """Rows with rules between the columns but none on the table's left or right side, and
    rules between all rows (`row_rules`) or only above and below the header and under the body."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    xs, top, height = (72, 200, 310, 420)[:len(rows[0])], 100, 18
    for i, row in enumerate(rows):
        for x, text in zip(xs, row):
            page.insert_text((x + 4, top + height * i + 13), text, fontsize=10)
    bottom = top + height * len(rows)
    for i in (range(len(rows) + 1) if row_rules else (0, 1, len(rows))):
        page.draw_line((66, top + height * i), (520, top + height * i))
    for x in xs[1:]:
        page.draw_line((x - 4, top), (x - 4, bottom))
    doc.save(path)
    return path


@pytest.mark.parametrize("columns", [4, 3])
@pytest.mark.parametrize("row_rules", [True, False], ids=["rules between rows", "rules around the body"])
def test_a_table_ruled_inside_only_keeps_its_open_first_and_last_columns_and_its_rows(tmp_path, row_rules, columns):
    rows = [row[:columns] for row in ROWS]
    path = _ruled_inside(tmp_path / "inside.pdf", rows, row_rules)
    tables = [e for e in _elements(path) if type(e).__name__ == "Table"]
    assert [t.text for t in tables] == ["\n".join(" | ".join(row) for row in rows)]


def _fully_ruled(path: Path, xs: tuple[float, ...], ys: tuple[float, ...],
                 rows: list[tuple[tuple[str, ...], ...]]) -> Path:
    """A table ruled around and between all its rows and columns: row i between ys[i] and
    ys[i + 1], column j from xs[j], each cell given as its lines of text."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    for row, top in zip(rows, ys):
        for x, lines in zip(xs, row):
            for i, text in enumerate(lines):
                page.insert_text((x + 5, top + 14 + 16 * i), text, fontsize=10)
    for y in ys:
        page.draw_line((xs[0], y), (xs[-1], y))
    for x in xs:
        page.draw_line((x, ys[0]), (x, ys[-1]))
    doc.save(path)
    return path


def test_cells_wrapped_in_a_ruled_row_stay_one_row(tmp_path):
    # Both cells of a ruled row wrap onto a second line: that row is one row of the table, not
    # a row per line (its second line goes on in lower case).
    rows = [(("Grade",), ("Description",)),
            (("Grade 1", "(low grade)"),
             ("Cancer cells look a little different", "from normal cells and grow slowly.")),
            (("Grade 2", "(intermediate)"), ("Cancer cells do not look normal and", "grow faster than grade 1."))]
    path = _fully_ruled(tmp_path / "wrapped-ruled.pdf", (72, 190, 480), (100, 120, 160, 200), rows)
    tables = [e for e in _elements(path) if type(e).__name__ == "Table"]
    assert [t.text.split("\n") for t in tables] == [[
        "Grade | Description",
        "Grade 1 (low grade) | Cancer cells look a little different from normal cells and grow slowly.",
        "Grade 2 (intermediate) | Cancer cells do not look normal and grow faster than grade 1."]]


def test_a_bar_between_two_columns_of_text_under_rules_across_the_page_is_no_table(tmp_path):
    # A CV: section rules across the page and a bar (drawn as a thin box) between the headings'
    # column and the text's. One divider is no grid, even with rules running past it both ways.
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    for y in (100, 300, 500):
        page.draw_line((60, y), (540, y))
    page.draw_rect(pymupdf.Rect(296, 100, 299, 500), fill=(0, 0, 0))
    for y, heading, text in ((130, "Experience", "Acme Corp, Engineer"), (330, "Education", "MIT, BSc")):
        page.insert_text((72, y), heading, fontsize=10)
        page.insert_text((310, y), text, fontsize=10)
    doc.save(tmp_path / "cv.pdf")
    elements = _elements(tmp_path / "cv.pdf")
    assert not [e for e in elements if type(e).__name__ == "Table"], [(type(e).__name__, e.text) for e in elements]


def test_capitalised_lines_of_wrapped_cells_in_a_fully_ruled_table_stay_one_row(tmp_path):
    rows = [(("Country",), ("Capital",)), (("United States", "Of America"), ("Washington", "D.C.")),
            (("France",), ("Paris",))]
    path = _fully_ruled(tmp_path / "capitals.pdf", (72, 250, 420), (100, 120, 156, 176), rows)
    tables = [e for e in _elements(path) if type(e).__name__ == "Table"]
    assert [t.text.split("\n") for t in tables] == [
        ["Country | Capital", "United States Of America | Washington D.C.", "France | Paris"]]


def test_a_subtotal_without_its_label_stays_a_row_of_its_own(tmp_path):
    rows = [("Item", "Quantity", "Amount"), ("Apples", "3", "100"), ("Pears", "4", "200"), ("", "", "300"),
            ("Plums", "5", "250"), ("Cherries", "2", "80")]
    lines = [(x, 100 + 18 * i, text, 10) for i, row in enumerate(rows) for x, text in zip((72, 250, 400), row) if text]
    tables = [e for e in _elements(_write_page(tmp_path / "subtotal.pdf", [lines])) if type(e).__name__ == "Table"]
    assert [t.text.split("\n") for t in tables] == [[" | ".join(row) for row in rows]]


def test_double_rules_under_the_header_and_over_the_total_do_not_make_the_body_one_row(tmp_path):
    rows = [("Answer", "Freq.", "Percent"), ("I kept the assets", "344", "75.2"), ("I sold some of them", "53", "11.6"),
            ("I sold all of them", "61", "13.2"), ("Total", "458", "100.0")]
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    baselines = [110, 136, 148, 160, 186]
    for y, row in zip(baselines, rows):
        for x, text in zip((72, 250, 350), row):
            page.insert_text((x, y), text, fontsize=9)
    for y in (98, 122, 125, 171, 174, 192):  # top, double rules under the header and over the total, bottom
        page.draw_line((66, y), (420, y))
    page.draw_line((240, 98), (240, 192))
    doc.save(tmp_path / "double-rules.pdf")
    tables = [e for e in _elements(tmp_path / "double-rules.pdf") if type(e).__name__ == "Table"]
    assert [t.text.split("\n") for t in tables] == [[" | ".join(row) for row in rows]]
