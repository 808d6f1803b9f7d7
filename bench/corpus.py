"""Benchmark corpora: the PDFs and DOCX of a folder that open, copied, and scaled up with
copies whose content differs.

    files = build_corpus(Path("../shared/corpus"), Path("/tmp/corpus-4x"), copies=4)

Copy 0 of each file is the original, byte for byte. Copy n > 0 carries marks of its own, so
that a pipeline that skips known files or reuses the vectors of identical chunks does the
work again for each copy, as for new documents:
- DOCX: " copyN" at the end of every paragraph that has text, so every chunk differs.
- PDF: a token of eight letters, drawn from the file, the copy and the place, in small type
  under every text block of every page, at the block's left edge. Tokens differ from block to
  block, so none repeats like a running header or reads as a page number; pages without a
  text layer get none, so they remain pages to OCR.
The marks add text, and a PDF mark is a line of its own, so a chunk cut from the middle of a
long paragraph can still equal the original's. On ../shared/corpus at 2x, as pgkb chunks
them (2026-11): a copy has 16% more chunks and 9% more text than its original (most of it
from one 400-page PDF of tiny pages), and 7% of the PDF copies' distinct chunk texts are also
among the originals' (DOCX: none).
Copies keep the originals' relative paths under `copy-N/`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

DOCUMENT_SUFFIXES = (".pdf", ".docx")
_DOCX_BODY = "word/document.xml"
# WordprocessingML paragraph starts (not <w:pPr>, not an empty <w:p/>), text that is not
# empty, and paragraph ends.
_DOCX_TAGS = re.compile(rb"(?P<start><w:p(?:\s[^>]*[^/>])?>)|(?P<text><w:t(?:\s[^>]*)?>[^<]+<)|(?P<end></w:p>)")


def readable_documents(source: Path) -> list[Path]:
    """The PDFs and DOCX under `source` that open, in a stable order: a PDF that PyMuPDF
    opens without a password and that has pages; a DOCX that is a zip holding word/document.xml."""
    return [path for path in sorted(source.rglob("*"))
            if path.is_file() and path.suffix.lower() in DOCUMENT_SUFFIXES and _opens(path)]


def build_corpus(source: Path, dest: Path, copies: int, limit: int | None = None,
                 sample: int | None = None) -> list[Path]:
    """`copies` copies of the readable documents of `source` (the first `limit` of them, if
    given; of those, `sample` spread evenly over their sizes, if given) in `dest`, copy 0
    unchanged and each later copy marked; returns the files written."""
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    originals = evenly_spread(readable_documents(source)[:limit], sample)
    written = []
    for copy in range(copies):
        for original in originals:
            target = dest / f"copy-{copy}" / original.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            if copy == 0:
                shutil.copyfile(original, target)
            elif original.suffix.lower() == ".pdf":
                _mark_pdf(original, target, copy)
            else:
                _mark_docx(original, target, copy)
            written.append(target)
    return written


def evenly_spread(paths: list[Path], count: int | None) -> list[Path]:
    """`count` of `paths` spread evenly over their sizes (all of them when `count` is None or
    not smaller): the files sorted by size, the middle one of each of `count` equal slices,
    returned in `paths`' order. A sample of small and large files alike, where one taken at
    even steps through the folders would be mostly one-page test files."""
    if count is None or count >= len(paths):
        return paths
    by_size = sorted(paths, key=lambda path: path.stat().st_size)
    chosen = {by_size[i * len(paths) // count + len(paths) // (2 * count)] for i in range(count)}
    return [path for path in paths if path in chosen]


def _opens(path: Path) -> bool:
    if path.suffix.lower() == ".pdf":
        import pymupdf

        try:
            with pymupdf.open(path) as doc:
                return not doc.needs_pass and doc.page_count > 0
        except Exception:  # not a PDF PyMuPDF can read
            return False
    try:
        with zipfile.ZipFile(path) as archive:
            return _DOCX_BODY in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _mark(original: Path, copy: int, place: str) -> str:
    """Eight letters standing for the file, the copy and the place in it (letters, since a
    running-header check blanks digits out)."""
    digest = hashlib.sha256(f"{original.name}|{copy}|{place}".encode()).hexdigest()[:8]
    return "".join(chr(ord("a") + int(digit, 16)) for digit in digest)


def _mark_pdf(original: Path, target: Path, copy: int) -> None:
    import pymupdf

    with pymupdf.open(original) as doc:
        for page in doc:
            # (x0, y0, x1, y1, text, number, type): type 0 is text.
            text_blocks = [block for block in page.get_text("blocks") if block[6] == 0 and block[4].strip()]
            for number, block in enumerate(text_blocks):
                left, bottom = block[0], block[3]
                page.insert_text((left, bottom + 5), _mark(original, copy, f"{page.number}.{number}"), fontsize=5)
        doc.save(target, garbage=1)


def _mark_docx(original: Path, target: Path, copy: int) -> None:
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(target, "w") as marked:
        for entry in source.infolist():
            content = source.read(entry)
            if entry.filename == _DOCX_BODY:
                content = _marked_paragraphs(content, f" copy{copy}")
            marked.writestr(entry, content)


def _marked_paragraphs(document_xml: bytes, mark: str) -> bytes:
    """`mark` as a run at the end of every paragraph that has text (paragraphs nest, in text boxes)."""
    run = b'<w:r><w:t xml:space="preserve">%s</w:t></w:r>' % escape(mark).encode()
    pieces, copied, has_text = [], 0, []  # has_text: one flag per open paragraph, innermost last
    for tag in _DOCX_TAGS.finditer(document_xml):
        if tag.group("start"):
            has_text.append(False)
        elif tag.group("text") and has_text:
            has_text[-1] = True
        elif tag.group("end") and has_text and has_text.pop():
            pieces += [document_xml[copied:tag.start()], run]
            copied = tag.start()
    pieces.append(document_xml[copied:])
    return b"".join(pieces)
