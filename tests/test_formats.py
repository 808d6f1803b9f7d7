"""The formats beyond PDF, Word, Excel and text: PowerPoint, HTML, e-mail (with attachments),
EPUB, CSV/TSV, legacy office files through LibreOffice, and pictures through OCR. Every file
here is written by the test; LibreOffice and Tesseract tests skip where they are missing."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import zipfile
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import pytest

from ingest import ingest
from ingest.parsers import ParseError, ParseOptions, parse
from ingest.parsers.mail import MAX_ATTACHMENTS
from ingest.parsers.pool import ParseLimits, ParserPool
from ingest.sources import media_type_of
from retrieval import KnowledgeBase
from tests.documents import write_pdf

needs_libreoffice = pytest.mark.skipif(shutil.which("soffice") is None,
                                       reason="LibreOffice is not installed (libreoffice-writer-nogui)")
needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr is not installed")

SLIDE = "Quarterly revenue grew by eleven percent in the northern region."
NOTE = "Remind the board that the figures are unaudited."
PAGE = "Visitors must sign in at the reception desk before entering the laboratory."
MAIL = "The quarterly offsite moves to the lakeside hotel on Friday."
ATTACHED = "Every contractor invoice needs two signatures before payment."
CHAPTER = "The lighthouse keeper lit the lamp every evening at dusk."
ROW = ("Gearbox", "Replaced the worn clutch plate on pump seven")
LEGACY = "Archived minutes record that the canteen opens at seven thirty."
PICTURE = "Fire doors must stay closed"


def write_pptx(path: Path) -> Path:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    cover = deck.slides.add_slide(deck.slide_layouts[0])
    cover.shapes.title.text = "Annual review"
    slide = deck.slides.add_slide(deck.slide_layouts[5])  # title only
    slide.shapes.title.text = "Sales results"
    slide.shapes.add_textbox(Inches(1), Inches(4), Inches(6), Inches(1)).text_frame.text = "Below the table."
    slide.shapes.add_textbox(Inches(1), Inches(1.5), Inches(6), Inches(1)).text_frame.text = SLIDE
    grid = slide.shapes.add_table(2, 2, Inches(1), Inches(2.5), Inches(6), Inches(1)).table
    for (row, column), value in {(0, 0): "Region", (0, 1): "Growth", (1, 0): "North", (1, 1): "11%"}.items():
        grid.cell(row, column).text = value
    group = slide.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(5), Inches(6), Inches(1)).text_frame.text = "Inside a group."
    slide.notes_slide.notes_text_frame.text = NOTE
    deck.slides.add_slide(deck.slide_layouts[6]).shapes.add_textbox(
        Inches(1), Inches(1), Inches(4), Inches(1)).text_frame.text = "An untitled slide."
    deck.save(str(path))
    return path


def write_html(path: Path, encoding: str = "utf-8") -> Path:
    page = (f"<html><head><meta charset='{encoding}'><title>Lab rules</title>"
            "<meta name='description' content='How to visit the lab'><style>p {{color: red}}</style></head>"
            "<body><nav><a href='/'>Home</a> Menu entry</nav><header>Site banner</header>"
            f"<h1>Visiting</h1><p>{PAGE}</p><h2>Badges</h2><ul><li>Wear it</li><li>Return it</li></ul>"
            "<table><tr><th>Day</th><th>Hours</th></tr><tr><td>Monday</td><td>9-17</td></tr></table>"
            "<script>var tracking = 1;</script><footer>Copyright footer</footer></body></html>")
    path.write_bytes(page.encode(encoding))
    return path


def write_eml(path: Path, attachments: dict[str, bytes]) -> Path:
    message = EmailMessage()
    message["Subject"] = "Offsite planning"
    message["From"] = "Alice Example <alice@example.com>"
    message["To"] = "team@example.com"
    message["Cc"] = "bob@example.com"
    message["Date"] = "Mon, 07 Dec 2026 09:30:00 +0000"
    message.set_content(f"Hello all,\n\n{MAIL}\n")
    message.add_alternative(f"<html><body><p>Hello all,</p><p>{MAIL}</p></body></html>", subtype="html")
    for name, data in attachments.items():
        if name.endswith(".eml"):
            message.add_attachment(email.message_from_bytes(data, policy=email.policy.default), filename=name)
        else:
            message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    path.write_bytes(bytes(message))
    return path


def write_epub(path: Path) -> Path:
    chapters = {"one.xhtml": ("Arrival", "<h1>Arrival</h1><p>The ship docked at noon.</p>"),
                "two.xhtml": ("The Light", f"<h1>The Light</h1><h2>Evenings</h2><p>{CHAPTER}</p>")}
    with zipfile.ZipFile(path, "w") as book:
        book.writestr("mimetype", "application/epub+zip")
        book.writestr("META-INF/container.xml", (
            "<?xml version='1.0'?><container version='1.0' xmlns='urn:oasis:names:tc:opendocument:xmlns:container'>"
            "<rootfiles><rootfile full-path='OEBPS/book.opf' media-type='application/oebps-package+xml'/>"
            "</rootfiles></container>"))
        items = "".join(f"<item id='c{n}' href='{name}' media-type='application/xhtml+xml'/>"
                        for n, name in enumerate(chapters))
        # The spine reads chapter two after one although the manifest lists them the other way round.
        book.writestr("OEBPS/book.opf", (
            "<?xml version='1.0'?><package xmlns='http://www.idpf.org/2007/opf' version='3.0'>"
            "<metadata xmlns:dc='http://purl.org/dc/elements/1.1/'><dc:title>Keeper's Log</dc:title>"
            "<dc:creator>A. Writer</dc:creator><dc:language>en</dc:language></metadata>"
            f"<manifest>{items}</manifest><spine><itemref idref='c0'/><itemref idref='c1'/></spine></package>"))
        for name, (title, body) in chapters.items():
            book.writestr(f"OEBPS/{name}", (
                "<?xml version='1.0' encoding='utf-8'?><html xmlns='http://www.w3.org/1999/xhtml'>"
                f"<head><title>{title}</title></head><body>{body}</body></html>"))
    return path


def write_csv(path: Path, delimiter: str) -> Path:
    rows = [("Part", "Work done"), ROW] + [(f"Part {n}", f"Routine check number {n}") for n in range(200)]
    path.write_text("Maintenance log\n" + "".join(delimiter.join(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_rtf(path: Path, text: str) -> Path:
    path.write_text("{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Times;}}\\f0\\fs24 " + text + "\\par}", encoding="ascii")
    return path


def write_png(path: Path, text: str) -> Path:
    import pymupdf

    scratch = pymupdf.open()
    page = scratch.new_page(width=420, height=120)
    page.insert_text((20, 60), text, fontsize=22)
    page.get_pixmap(dpi=200).save(str(path))
    return path


def write_tiff(path: Path, texts: list[str]) -> Path:
    from PIL import Image

    frames = [Image.open(write_png(path.with_suffix(f".{n}.png"), text)).convert("L") for n, text in enumerate(texts)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    for n in range(len(texts)):
        path.with_suffix(f".{n}.png").unlink()
    return path


def parsed(path: Path, options: ParseOptions | None = None):
    media_type = media_type_of(path)
    assert media_type, path
    return parse(path, media_type, options or ParseOptions())


def texts(document) -> list[tuple[str, str, int | None]]:
    return [(type(e).__name__, e.text, e.metadata.page_number) for e in document.elements]


# --- each format ------------------------------------------------------------------------------

def test_pptx_slides_are_sections_in_reading_order_with_notes_and_slide_numbers(tmp_path):
    document = parsed(write_pptx(tmp_path / "deck.pptx"))
    assert texts(document) == [
        ("Title", "Annual review", 1),
        ("Title", "Sales results", 2), ("NarrativeText", SLIDE, 2), ("Table", "Region | Growth\nNorth | 11%", 2),
        ("NarrativeText", "Below the table.", 2), ("NarrativeText", "Inside a group.", 2),
        ("Title", "Notes", 2), ("NarrativeText", NOTE, 2),
        ("Title", "Slide 3", 3), ("NarrativeText", "An untitled slide.", 3),
    ]
    assert "<th>Region</th>" in document.elements[3].metadata.text_as_html
    assert document.metadata["slides"] == 3


@pytest.mark.parametrize("encoding", ["utf-8", "gbk", "cp1252"])
def test_html_keeps_content_and_drops_boilerplate_in_any_encoding(tmp_path, encoding):
    document = parsed(write_html(tmp_path / "page.html", encoding))
    assert texts(document) == [
        ("Title", "Visiting", None), ("NarrativeText", PAGE, None), ("Title", "Badges", None),
        ("ListItem", "Wear it", None), ("ListItem", "Return it", None), ("Table", "Day | Hours\nMonday | 9-17", None),
    ]
    assert document.metadata == {"title": "Lab rules", "description": "How to visit the lab"}


def test_html_in_a_legacy_encoding_without_declaring_it_is_read(tmp_path):
    path = tmp_path / "old.htm"
    path.write_bytes("<html><body><h1>员工手册</h1><p>每位全职员工每年享有二十五天带薪年假。</p></body></html>".encode("gbk"))
    assert [e.text for e in parsed(path).elements] == ["员工手册", "每位全职员工每年享有二十五天带薪年假。"]


def test_eml_subject_headers_body_and_attachments(tmp_path):
    pdf = write_pdf(tmp_path / "invoice.pdf", "Invoices", [(1, "Approval", [ATTACHED])]).read_bytes()
    document = parsed(write_eml(tmp_path / "mail.eml", {"invoices.pdf": pdf, "../../etc/passwd": b"x"}))
    assert [e.text for e in document.elements] == ["Offsite planning", "Hello all,", MAIL]
    assert document.metadata == {"title": "Offsite planning", "from": "Alice Example <alice@example.com>",
                                 "to": "team@example.com", "cc": "bob@example.com",
                                 "date": "2026-12-07T09:30:00+00:00"}
    assert [(a.name, a.data) for a in document.attachments] == [("invoices.pdf", pdf), ("_.._etc_passwd", b"x")]


def test_epub_chapters_in_spine_order_with_their_headings_nested(tmp_path):
    document = parsed(write_epub(tmp_path / "book.epub"))
    assert [(e.text, e.metadata.category_depth) for e in document.elements] == [
        ("Arrival", 0), ("The ship docked at noon.", None), ("The Light", 0), ("Evenings", 1), (CHAPTER, None)]
    assert document.metadata == {"title": "Keeper's Log", "author": "A. Writer", "language": "en", "chapters": 2}


@pytest.mark.parametrize("name, delimiter", [("log.csv", ","), ("log.tsv", "\t"), ("excel.csv", ";")])
def test_csv_and_tsv_read_like_a_sheet(tmp_path, name, delimiter):
    document = parsed(write_csv(tmp_path / name, delimiter))
    title, note, grid = document.elements
    assert (title.text, note.text) == (Path(name).stem, "Maintenance log")
    assert grid.text.splitlines()[:2] == ["Part | Work done", " | ".join(ROW)]


@needs_libreoffice
def test_legacy_files_are_converted_by_libreoffice(tmp_path):
    document = parsed(write_rtf(tmp_path / "minutes.rtf", LEGACY))
    assert [e.text for e in document.elements] == [LEGACY]
    assert document.metadata["converted_from"] == ".rtf"


def test_without_libreoffice_a_legacy_file_fails_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no soffice there
    with pytest.raises(ParseError) as refused:
        parsed(write_rtf(tmp_path / "minutes.rtf", LEGACY))
    assert refused.value.reason == "unsupported"
    assert "apt-get install libreoffice-writer-nogui" in refused.value.detail


@needs_tesseract
def test_pictures_are_read_by_ocr_one_page_per_tiff_frame(tmp_path):
    assert "Fire doors" in " ".join(e.text for e in parsed(write_png(tmp_path / "sign.png", PICTURE)).elements)
    document = parsed(write_tiff(tmp_path / "scan.tiff", ["First page words", "Second page words"]))
    assert {e.metadata.page_number for e in document.elements} == {1, 2}
    assert "second page" in " ".join(e.text for e in document.elements if e.metadata.page_number == 2).lower()


def test_without_ocr_a_picture_fails_with_the_reason(tmp_path):
    with pytest.raises(ParseError) as refused:
        parsed(write_png(tmp_path / "sign.png", PICTURE), ParseOptions(ocr_languages="none"))
    assert "install tesseract-ocr" in refused.value.detail


# --- a folder of every format, through the ingest run and a search ---------------------------------

def test_a_folder_of_every_new_format_ingests_and_each_is_found_where_it_was(tmp_path, settings, embedder):
    folder = tmp_path / "share"
    folder.mkdir()
    write_pptx(folder / "review.pptx")
    write_html(folder / "lab.html")
    pdf = write_pdf(tmp_path / "invoices.pdf", "Invoices", [(1, "Approval", [ATTACHED])]).read_bytes()
    write_eml(folder / "offsite.eml", {"invoices.pdf": pdf})
    write_epub(folder / "log.epub")
    write_csv(folder / "maintenance.csv", ",")
    write_csv(folder / "maintenance.tsv", "\t")
    expected = {"review.pptx", "lab.html", "offsite.eml", "offsite.eml/invoices.pdf", "log.epub",
                "maintenance.csv", "maintenance.tsv"}
    if shutil.which("soffice"):
        write_rtf(folder / "minutes.rtf", LEGACY)
        expected.add("minutes.rtf")
    if shutil.which("tesseract"):
        write_png(folder / "sign.png", PICTURE)
        expected.add("sign.png")
    settings = replace(settings, collection="formats", pii=False)
    report = ingest(folder, settings, embedder=embedder)
    assert {f.key: f.outcome for f in report.files} == dict.fromkeys(expected, "ingested")

    with KnowledgeBase(settings) as kb:
        def best(query: str):
            return kb.search(query, k=1)[0]

        slide = best(SLIDE)
        assert (slide.document_key, slide.page_end, slide.section_path[0]) == ("review.pptx", 2, "Sales results")
        note = best(NOTE)
        assert note.section_path == ("Sales results", "Notes")
        assert best(PAGE).section_path == ("Visiting",)
        assert best(MAIL).document_key == "offsite.eml"
        assert best(ATTACHED).document_key == "offsite.eml/invoices.pdf"
        chapter = best(CHAPTER)
        assert (chapter.document_key, chapter.section_path) == ("log.epub", ("The Light", "Evenings"))
        row = best(" ".join(ROW))
        assert row.section_path == ("maintenance",) and "Part | Work done\n" in row.text
        later = best("Part 150 Routine check number 150")  # a later chunk of the table repeats its header
        assert "Part 150 |" in later.text and "Part | Work done\n" in later.text
        if "minutes.rtf" in expected:
            assert best(LEGACY).document_key == "minutes.rtf"
        if "sign.png" in expected:
            assert (best(PICTURE).document_key, best(PICTURE).page_start) == ("sign.png", 1)

    # Unchanged, the message's attachment is too; gone with --prune, its attachment goes as well.
    again = ingest(folder, settings, embedder=embedder)
    assert {f.key: f.outcome for f in again.files} == dict.fromkeys(expected, "unchanged")
    (folder / "offsite.eml").unlink()
    pruned = ingest(folder, settings, embedder=embedder, prune=True)
    assert sorted(pruned.pruned) == ["offsite.eml", "offsite.eml/invoices.pdf"]


# --- malformed files fail alone, with a reason, within the limits -------------------------------

def test_a_malformed_file_of_each_format_fails_alone_with_a_reason(tmp_path, settings, embedder):
    folder = tmp_path / "bad"
    folder.mkdir()
    good = write_pptx(tmp_path / "good.pptx").read_bytes()
    (folder / "cut.pptx").write_bytes(good[: len(good) // 2])
    (folder / "notes.pptx").write_text("plain text under a slide deck's name")
    (folder / "empty.html").write_text("<html><body><nav>only a menu</nav><script>x()</script></body></html>")
    (folder / "noise.eml").write_bytes(os.urandom(3000).replace(b":", b"."))
    (folder / "broken.msg").write_bytes(b"not an outlook file")
    book = write_epub(tmp_path / "book.epub").read_bytes()
    (folder / "cut.epub").write_bytes(book[: len(book) // 2])
    (folder / "binary.csv").write_bytes(b"\x00\x01\x02" * 100 + os.urandom(500))
    (folder / "fake.png").write_bytes(b"this is no picture")
    (folder / "fine.md").write_text("# Fine\n\nThis file is well formed and gets ingested.\n")
    report = ingest(folder, replace(settings, collection="malformed", pii=False), embedder=embedder)
    outcomes = {f.key: (f.outcome, f.reason) for f in report.files}
    assert outcomes.pop("fine.md") == ("ingested", None)
    assert all(outcome == "failed" and reason for outcome, reason in outcomes.values()), outcomes
    assert outcomes["cut.pptx"][1].startswith("corrupt: not a readable PowerPoint file")
    assert outcomes["empty.html"][1] == "no text"
    assert outcomes["noise.eml"][1].startswith("corrupt: not an e-mail message")
    assert outcomes["broken.msg"][1].startswith("corrupt: not a readable Outlook message")
    assert outcomes["cut.epub"][1].startswith("corrupt: not a readable EPUB file")


def test_an_attachment_bomb_fails_alone(tmp_path, settings, embedder):
    folder = tmp_path / "mail"
    folder.mkdir()
    note = b"A short note attached to the message.\n"
    write_eml(folder / "many.eml", {f"note{n}.txt": note for n in range(MAX_ATTACHMENTS + 1)})
    # Messages attached to messages, deeper than the run opens them.
    inner = write_eml(tmp_path / "inner.eml", {"deepest.txt": note}).read_bytes()
    for level in range(4):
        inner = write_eml(tmp_path / f"level{level}.eml", {f"level{level}.eml": inner}).read_bytes()
    (folder / "deep.eml").write_bytes(inner)
    write_eml(folder / "fine.eml", {"note.txt": note})
    report = ingest(folder, replace(settings, collection="bombs", pii=False), embedder=embedder)
    outcomes = {f.key: (f.outcome, f.reason) for f in report.files}
    assert outcomes["many.eml"] == ("failed", f"too many attachments: {MAX_ATTACHMENTS + 1} attachments, more "
                                              f"than the {MAX_ATTACHMENTS} a message may bring")
    assert outcomes["fine.eml"] == ("ingested", None) and outcomes["fine.eml/note.txt"] == ("ingested", None)
    deepest = [key for key in outcomes if key.startswith("deep.eml/") and key.count("/") == 4]
    assert deepest and all(outcomes[key] == ("failed", "attachment bomb: attached 4 files deep, more than 3")
                           for key in deepest)
    assert outcomes["deep.eml"] == ("ingested", None)


def test_a_libreoffice_conversion_that_hangs_is_stopped_by_the_time_limit(tmp_path, monkeypatch):
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    fake = bin_folder / "soffice"
    marker = tmp_path / "still-running"
    fake.write_text(f"#!/bin/sh\nsleep 30\ntouch {marker}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    rtf = write_rtf(tmp_path / "minutes.rtf", LEGACY)
    good = tmp_path / "fine.md"
    good.write_text("# Fine\n\nA file parsed after the one that hung.\n")
    with ParserPool(ParseOptions(), ParseLimits(seconds=3, memory_mb=2048)) as pool:
        pool.parse(good, "text/markdown")  # the worker started and warm
        with pytest.raises(ParseError) as hung:
            pool.parse(rtf, "application/rtf")
        assert hung.value.reason == "timeout"
        assert pool.parse(good, "text/markdown").title == "Fine"
    # The conversion died with its worker: it never got to the end of its sleep.
    assert not any(p for p in _processes_running(str(fake)))


def _processes_running(command: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if command in cmdline:
            found.append(int(pid))
    return found



def test_an_emails_sender_and_recipients_are_masked_whole_even_without_a_name_model(tmp_path):
    from ingest.options import masker_options
    from ingest.pii import load_masker
    from pgkb.settings import Settings

    document = parsed(write_eml(tmp_path / "mail.eml", {}))
    assert "Alice Example" in document.metadata["from"]
    load_masker(masker_options(Settings(collection="mail-masking"))).mask_document(document)
    for header in ("from", "to", "cc"):
        assert "example.com" not in document.metadata[header] and "Alice" not in document.metadata[header]
