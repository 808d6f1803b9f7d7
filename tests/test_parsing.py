"""Parsing real generated documents (PDF, Word, Excel, Markdown) and parsing in workers."""

import os
import shutil
import threading
import time

import pytest

from ingest.chunking import chunk_elements  # first: ingest opts out of unstructured's telemetry
from ingest.options import parse_options
from ingest.parsers import ParseError, ParseOptions, parse  # noqa: I001
from ingest.parsers.pool import ParseLimits, ParserPool
from pgkb.settings import Settings
from tests.documents import (
    write_docx,
    write_pdf,
    write_ragged_table_docx,
    write_scanned_pdf,
    write_xlsx,
)

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

SECTIONS = [
    (1, "Scope", ["This policy covers every journey made for the company, at home and abroad."]),
    (1, "Claims", [
        "Claims are made in the finance portal within thirty days of the journey's end.",
        (("Item", "Limit (EUR)", "Receipt needed"), ("Hotel", "150", "yes"), ("Meals", "60", "yes"),
         ("Taxi", "40", "over 25"), ("Train", "no limit", "yes"), ("Parking", "30", "no")),
    ]),
    (2, "Receipts", ["Keep every receipt for seven years; photos of receipts are accepted."]),
    (1, "Cars", ["Pool cars are booked in the facilities calendar and returned before six."]),
]
EXPECTED_PATHS = [
    (("Expense Policy", "Scope"), 1),
    (("Expense Policy", "Claims"), 2),
    (("Expense Policy", "Claims", "Receipts"), 2),
    (("Expense Policy", "Cars"), 3),
]


def chunks_of(document, embedder, max_tokens=256):
    return chunk_elements(document.elements, "doc", embedder.count_tokens, max_tokens, document.metadata)


@pytest.mark.parametrize("outline", [True, False], ids=["outline", "font-sizes"])
def test_pdf_headings_give_section_paths_and_pages(tmp_path, embedder, outline):
    path = write_pdf(tmp_path / "policy.pdf", "Expense Policy", SECTIONS, outline=outline,
                     page_break_before=["Claims", "Cars"])
    document = parse(path, PDF)
    titles = [(e.text, e.metadata.category_depth, e.metadata.page_number)
              for e in document.elements if e.category == "Title"]
    assert titles == [("Expense Policy", 0, 1), ("Scope", 1, 1), ("Claims", 1, 2), ("Receipts", 2, 2), ("Cars", 1, 3)]
    chunks = chunks_of(document, embedder)
    assert [(c.section_path, c.page_start) for c in chunks] == EXPECTED_PATHS
    assert all(c.page_start == c.page_end for c in chunks)
    assert document.metadata == {"title": "Expense Policy", "author": "pgkb examples",
                                 "created": "2024-01-02T03:04:05+01:00", "pages": 3}


def test_outline_titles_the_pages_do_not_show_are_added_where_they_point(tmp_path):
    import pymupdf

    path = write_pdf(tmp_path / "policy.pdf", "Expense Policy", SECTIONS, page_break_before=["Claims", "Cars"])
    with pymupdf.open(path) as doc:
        height = doc[2].rect.height

        def entry(title, y):  # pointing at page 3, y in PDF space (up from the bottom)
            return [2, title, 3, {"kind": pymupdf.LINK_GOTO, "page": 2, "to": pymupdf.Point(0, y)}]

        toc = doc.get_toc(simple=False)
        toc.insert(4, entry("Vehicle fleet", height - 5))  # the top of the page, before "Cars"
        toc.append(entry("Returns", 5))                     # its foot
        doc.set_toc(toc)
        doc.save(tmp_path / "outlined.pdf")
    elements = parse(tmp_path / "outlined.pdf", PDF).elements
    assert [(e.category, e.text[:9], e.metadata.category_depth) for e in elements if e.metadata.page_number == 3] == [
        ("Title", "Vehicle f", 1), ("Title", "Cars", 1), ("NarrativeText", "Pool cars", None), ("Title", "Returns", 1)]


def test_a_two_column_page_reads_column_by_column(tmp_path):
    paragraphs = [f"Paragraph {n} starts here and explains rule number {n} of the travel handbook in a few "
                  f"plain words, so that every reader knows what rule {n} asks of them." for n in range(1, 21)]
    path = write_pdf(tmp_path / "columns.pdf", "Handbook", [(1, "Rules", paragraphs)], columns=2, paper="a4")
    document = parse(path, PDF)
    body = [e for e in document.elements if e.category == "NarrativeText"]
    assert {e.metadata.page_number for e in body} == {1}
    assert [e.text for e in body] == paragraphs  # whole, in order: left column, then right

    import pymupdf

    with pymupdf.open(path) as pdf:  # the page really has columns, side by side
        blocks = [b for b in pdf[0].get_text("blocks") if b[4].startswith("Paragraph ")]
        middle = pdf[0].rect.width / 2
        left, right = [b for b in blocks if b[2] < middle], [b for b in blocks if b[0] > middle]
        assert left and right and right[0][1] < left[-1][1]


def test_a_table_is_one_element_and_stays_in_one_chunk(tmp_path, embedder):
    path = write_pdf(tmp_path / "policy.pdf", "Expense Policy", SECTIONS)
    document = parse(path, PDF)
    tables = [e for e in document.elements if e.category == "Table"]
    assert len(tables) == 1
    assert tables[0].text.splitlines() == [
        "Item | Limit (EUR) | Receipt needed", "Hotel | 150 | yes", "Meals | 60 | yes", "Taxi | 40 | over 25",
        "Train | no limit | yes", "Parking | 30 | no"]
    assert "<th>Limit (EUR)</th>" in tables[0].metadata.text_as_html
    holding = [c for c in chunks_of(document, embedder) if "Hotel | 150" in c.text]
    assert len(holding) == 1 and tables[0].text in holding[0].text and "Table" in holding[0].element_types


def test_ruled_tables_are_found_however_their_rules_are_drawn(tmp_path):
    import pymupdf

    rows = [("Item", "Limit"), ("Hotel", "150"), ("Taxi", "40")]
    xs, ys = (72, 222, 372), (100, 130, 160, 190)

    def grid_lines(shape):
        for y in ys:
            shape.draw_line((xs[0], y), (xs[-1], y))
        for x in xs:
            shape.draw_line((x, ys[0]), (x, ys[-1]))

    def one_path_each(page):  # every rule its own path
        for y in ys:
            page.draw_line((xs[0], y), (xs[-1], y))
        for x in xs:
            page.draw_line((x, ys[0]), (x, ys[-1]))

    def one_path(page):  # the whole grid one path
        shape = page.new_shape()
        grid_lines(shape)
        shape.finish(width=0.5)
        shape.commit()

    def cell_boxes(page):  # a rectangle around each cell
        for top, bottom in zip(ys, ys[1:]):
            for left, right in zip(xs, xs[1:]):
                page.draw_rect(pymupdf.Rect(left, top, right, bottom), width=0.5)

    def serpentine(page):  # the rows' rules and the sides in one stroke, then the middle rule
        corners = [(xs[0], ys[0])]
        for y0, y1 in zip(ys, ys[1:]):
            x = xs[-1] if corners[-1][0] == xs[0] else xs[0]
            corners += [(x, y0), (x, y1)]
        corners.append((xs[-1] if corners[-1][0] == xs[0] else xs[0], ys[-1]))
        page.draw_polyline(corners, width=0.5)
        page.draw_line((xs[1], ys[0]), (xs[1], ys[-1]))

    path = tmp_path / "tables.pdf"
    with pymupdf.open() as doc:
        for draw in (one_path_each, one_path, cell_boxes, serpentine):
            page = doc.new_page()
            draw(page)
            for row, top in zip(rows, ys):
                for cell, left in zip(row, xs):
                    page.insert_text((left + 6, top + 20), cell)
        page = doc.new_page()  # a thick bar and two rules over text: no table
        page.draw_line((72, 60), (520, 60), width=6)
        page.draw_line((72, 90), (520, 90))
        page.draw_line((72, 700), (520, 700))
        page.insert_text((72, 120), "Item Limit Hotel 150")
        doc.save(path)
    tables = [e for e in parse(path, PDF).elements if e.category == "Table"]
    assert [t.metadata.page_number for t in tables] == [1, 2, 3, 4]
    assert all(t.text.splitlines() == ["Item | Limit", "Hotel | 150", "Taxi | 40"] for t in tables)


def test_running_header_footer_page_numbers_and_watermark_appear_in_no_chunk(tmp_path, embedder):
    path = write_pdf(tmp_path / "policy.pdf", "Expense Policy", SECTIONS, page_break_before=["Claims", "Cars"],
                     header="ACME Corporation internal", footer="Expense policy v2", watermark="DRAFT COPY")
    chunks = chunks_of(parse(path, PDF), embedder)
    text = "\n".join(c.text for c in chunks)
    assert "thirty days" in text and "seven years" in text
    for running in ("ACME Corporation", "Expense policy v2", "Page 2 of 3", "DRAFT"):
        assert running not in text


def test_an_encrypted_pdf_opens_with_the_right_password_and_says_why_without(tmp_path):
    path = write_pdf(tmp_path / "secret.pdf", "Expense Policy", SECTIONS, password="open sesame")
    with pytest.raises(ParseError) as refused:
        parse(path, PDF)
    assert refused.value.reason == "encrypted" and "--password" in str(refused.value)
    with pytest.raises(ParseError, match="none of the 1 passwords"):
        parse(path, PDF, ParseOptions(passwords=("wrong",)))
    document = parse(path, PDF, ParseOptions(passwords=("wrong", "open sesame")))
    assert any("thirty days" in e.text for e in document.elements)

    passwords = tmp_path / "passwords.txt"
    passwords.write_text("first guess\nopen sesame\n")
    options = parse_options(Settings(passwords_file=str(passwords)))
    assert options.passwords == ("first guess", "open sesame") and "sesame" not in repr(options)
    with ParserPool(options) as pool:
        assert pool.parse(path, PDF).metadata["pages"] >= 1


def test_chinese_pdf_lines_join_without_spaces(tmp_path, embedder):
    text = ("员工出差后应在三十天内提交报销申请。每一笔超过二十五欧元的费用都需要附上收据。"
            "经理批准后，财务部门会在下一次发薪时支付。")
    path = write_pdf(tmp_path / "zh.pdf", "差旅政策", [(1, "报销", [text])])
    document = parse(path, PDF)
    assert [e.text for e in document.elements] == ["差旅政策", "报销", text]


def test_chinese_text_is_split_at_sentence_punctuation(embedder):
    from unstructured.documents.elements import ElementMetadata, NarrativeText, Title

    sentences = [f"第{n}条规定员工在出差期间应当保存所有的发票和收据，并在返回后按照财务制度及时提交报销申请{mark}"
                 for n, mark in zip(range(1, 31), "。！？" * 10)]
    elements = [Title("差旅制度", metadata=ElementMetadata(category_depth=0, page_number=1)),
                NarrativeText("".join(sentences), metadata=ElementMetadata(page_number=1))]
    chunks = chunk_elements(elements, "zh.txt", embedder.count_tokens, 96)
    assert len(chunks) > 3 and all(c.token_count <= 96 for c in chunks)
    bodies = [c.text.removeprefix("差旅制度\n\n") for c in chunks]
    assert "".join(bodies) == "".join(sentences)  # nothing lost, nothing cut inside a character
    assert all(body[-1] in "。！？" for body in bodies)  # every chunk ends a sentence
    assert all(c.section_path == ("差旅制度",) for c in chunks)


def test_docx_headings_lists_tables_and_what_must_not_leak(tmp_path, embedder):
    sections = [
        (1, "Leave", ["Full-time staff have 25 days of paid leave a year.",
                      ["Ask two weeks ahead.", "Record it in the HR portal."]]),
        (2, "Sick leave", ["Call your manager before ten."]),
        (1, "Equipment", [(("Item", "Owner"), ("Laptop", "IT"), ("Phone", "Facilities"))]),
    ]
    path = write_docx(tmp_path / "handbook.docx", "Staff Handbook", sections, page_break_before=["Equipment"],
                      header="Header text ACME", footer="Footer text page", comment="Reviewer remark XYZ",
                      tracked=("Lunch is at noon.", "Inserted sentence stays.", "Deleted sentence goes."))
    document = parse(path, DOCX)
    kinds = [(e.category, e.text, e.metadata.category_depth, e.metadata.page_number) for e in document.elements]
    assert kinds[:6] == [
        ("Title", "Staff Handbook", 0, 1), ("Title", "Leave", 1, 1),
        ("NarrativeText", "Full-time staff have 25 days of paid leave a year.", None, 1),
        ("ListItem", "Ask two weeks ahead.", 0, 1), ("ListItem", "Record it in the HR portal.", 0, 1),
        ("Title", "Sick leave", 2, 1),
    ]
    assert ("Title", "Equipment", 1, 2) in kinds
    table = next(e for e in document.elements if e.category == "Table")
    assert table.text == "Item | Owner\nLaptop | IT\nPhone | Facilities" and table.metadata.page_number == 2
    text = "\n".join(e.text for e in document.elements)
    assert "Lunch is at noon. Inserted sentence stays." in text
    for hidden in ("Deleted sentence", "Header text", "Footer text", "Reviewer remark"):
        assert hidden not in text
    assert document.metadata["title"] == "Staff Handbook"
    paths = [c.section_path for c in chunks_of(document, embedder)]
    assert paths == [("Staff Handbook", "Leave"), ("Staff Handbook", "Leave", "Sick leave"),
                     ("Staff Handbook", "Equipment")]


def test_a_docx_that_python_docx_cannot_map_still_parses(tmp_path):
    document = parse(write_ragged_table_docx(tmp_path / "ragged.docx"), DOCX)
    assert [e.text for e in document.elements] == ["Before the table.", "A | Merged B1-B3\nC | ", "After the table."]


def test_office_files_that_are_not_what_they_say(tmp_path):
    old_word = tmp_path / "old.docx"
    old_word.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    locked = tmp_path / "locked.xlsx"
    locked.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "EncryptedPackage".encode("utf-16-le") + b"\x00" * 600)
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    reasons = {}
    for path, media_type in ((old_word, DOCX), (locked, XLSX), (broken, DOCX)):
        with pytest.raises(ParseError) as failure:
            parse(path, media_type)
        reasons[path.name] = failure.value.reason
    assert reasons == {"old.docx": "unsupported", "locked.xlsx": "encrypted", "broken.docx": "corrupt"}


def test_xlsx_sheets_are_sections_and_every_chunk_repeats_the_header_row(tmp_path, embedder):
    from datetime import date

    staff = [("Name", "Department", "Start date")] + [
        (f"Employee {n}", ["Finance", "Sales", "IT"][n % 3], date(2020, 1 + n % 12, 1 + n % 28))
        for n in range(1, 6001)]
    path = write_xlsx(tmp_path / "book.xlsx", {
        "Rates": [("City", "Per diem"), ("Berlin", 60), ("London", 80.5)],
        "Staff": staff,
    })
    document = parse(path, XLSX)
    assert [(e.category, e.text) for e in document.elements if e.category == "Title"] == [
        ("Title", "Rates"), ("Title", "Staff")]
    chunks = chunks_of(document, embedder, max_tokens=128)
    assert chunks[0].section_path == ("Rates",) and "London | 80.5" in chunks[0].text
    staff_chunks = [c for c in chunks if c.section_path == ("Staff",)]
    assert len(staff_chunks) > 100 and all(c.token_count <= 128 for c in chunks)
    for chunk in staff_chunks:
        body = chunk.text.removeprefix("Staff\n\n")
        assert body.startswith("Name | Department | Start date\n")
    late = next(c for c in staff_chunks if "Employee 5000 |" in c.text)
    assert "Employee 5000 | IT | 2020-09-17" in late.text and "Name | Department | Start date" in late.text
    rows = [line for c in staff_chunks for line in c.text.splitlines() if line.startswith("Employee ")]
    assert len(rows) == 6000


def test_markdown_code_fences_hold_no_headings(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# Setup\n\nRun this:\n\n```bash\n# not a heading\npip install pgkb\n```\n\n## Use\n\nSearch.\n")
    document = parse(path, "text/markdown")
    assert [(e.category, e.text) for e in document.elements] == [
        ("Title", "Setup"), ("NarrativeText", "Run this:"),
        ("NarrativeText", "```bash\n# not a heading\npip install pgkb\n```"), ("Title", "Use"),
        ("NarrativeText", "Search.")]


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_a_page_without_text_layer_is_read_by_ocr(tmp_path):
    path = write_scanned_pdf(tmp_path / "scan.pdf", ["Quarterly revenue grew", "by twelve percent."])
    document = parse(path, PDF, ParseOptions(ocr_languages="eng"))
    text = " ".join(e.text for e in document.elements).lower()
    assert "revenue" in text and "twelve" in text


def test_pages_without_text_layer_are_reported_when_ocr_is_off(tmp_path):
    import pymupdf

    scan = write_scanned_pdf(tmp_path / "scan.pdf", ["Quarterly revenue grew"])
    with pytest.raises(ParseError) as failure:
        parse(scan, PDF, ParseOptions(ocr_languages="none"))
    assert failure.value.reason == "no text layer" and "tesseract" in str(failure.value)

    mixed = write_pdf(tmp_path / "mixed.pdf", "Expense Policy", SECTIONS[:1])
    with pymupdf.open(mixed) as doc, pymupdf.open(scan) as scanned:
        doc.insert_pdf(scanned)
        doc.save(tmp_path / "mixed-with-scan.pdf")
    document = parse(tmp_path / "mixed-with-scan.pdf", PDF, ParseOptions(ocr_languages="none"))
    assert document.metadata["pages_without_text"] == [2]
    assert document.warnings == ["no text layer on pages 2: install tesseract-ocr to OCR them"]
    assert any("every journey" in e.text for e in document.elements)


def test_a_worker_that_hangs_crashes_or_runs_out_of_memory_fails_only_its_file(tmp_path):
    good = write_pdf(tmp_path / "good.pdf", "Expense Policy", SECTIONS)
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as f:
        f.truncate(1536 * 1024 * 1024)  # sparse: no disk used, but reading it needs 1.5 GB
    with ParserPool(ParseOptions(), ParseLimits(seconds=0.05, memory_mb=1024)) as pool:
        # A fresh worker cannot even import PyMuPDF in 50 ms: the time limit ends it.
        with pytest.raises(ParseError) as timeout:
            pool.parse(good, PDF)
        assert timeout.value.reason == "timeout"
        pool.limits = ParseLimits(seconds=60, memory_mb=1024)
        with pytest.raises(ParseError) as memory:
            pool.parse(huge, "text/plain")
        assert memory.value.reason == "out of memory"
        assert pool.parse(good, PDF).metadata["title"] == "Expense Policy"

        worker = next(iter(pool._workers))
        worker.process.kill()  # a worker that died while idle is replaced
        worker.process.wait()
        assert pool.parse(good, PDF).metadata["pages"] >= 1

        crash = {}

        def parse_in_thread():
            try:
                pool.parse(good, PDF)
            except ParseError as exc:
                crash["reason"] = exc.reason

        pool.close()  # fresh worker, killed while it is still starting on the file
        thread = threading.Thread(target=parse_in_thread)
        thread.start()
        deadline = time.monotonic() + 10
        while not pool._workers and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(next(iter(pool._workers)).process.pid, 9)
        thread.join(30)
        assert crash == {"reason": "crashed"}
        assert pool.parse(good, PDF).metadata["pages"] >= 1


def test_an_ingest_run_opens_encrypted_pdfs_with_the_passwords_it_is_given(tmp_path, settings, embedder):
    from dataclasses import replace

    from ingest import ingest

    folder = tmp_path / "docs"
    folder.mkdir()
    write_pdf(folder / "secret.pdf", "Expense Policy", SECTIONS, password="open sesame")
    (folder / "~$secret.docx").write_bytes(b"an Office lock file")  # never a document
    first = ingest(folder, settings, embedder=embedder)
    assert [(f.key, f.outcome, f.reason.split(":")[0]) for f in first.files] == [("secret.pdf", "failed", "encrypted")]
    second = ingest(folder, replace(settings, passwords=("open sesame",)), embedder=embedder)
    assert [(f.key, f.outcome) for f in second.files] == [("secret.pdf", "ingested")] and second.files[0].chunks >= 4
