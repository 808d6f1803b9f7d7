"""Issue 28: huge documents, interrupted parses and odd text encodings (items 4, 11 and two low ones).

Real files, the shared embedded PostgreSQL and real `ingest` processes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
import pymupdf
import pytest
from sqlalchemy import create_engine, text

from ingest import ingest
from ingest.parsers import ParseError, ParseOptions, parse
from store import Chunk, DocumentRecord, resolve_url
from tests.conftest import ROOT
from tests.documents import write_docx

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

SPACE = {"model": "test/random", "dims": 8, "pooling": "mean", "normalize": True}
# More than PostgreSQL's protocol allows as parameters of one statement (65,535).
OVER_PARAMETER_LIMIT = 70_000


def test_a_document_of_more_chunks_than_a_statement_takes_parameters_is_written_and_found(store, settings):
    collection = store.collection(settings.collection, SPACE)
    count = OVER_PARAMETER_LIMIT
    chunks = [Chunk("big.txt", i, f"line {i}", (), None, None, ("NarrativeText",), 2, f"hash-{i}")
              for i in range(count)]
    vectors = np.random.default_rng(0).normal(size=(count, 8)).astype(np.float32)
    record = DocumentRecord("big.txt", "/docs/big.txt", "0" * 64, 1, None, "text/plain")
    with store.bulk_load(collection) as load:
        store.write_document(collection, record, chunks, vectors)
        # The embedding cache's lookup of every chunk of such a document (what failed).
        found = store.stored_vectors(collection, (c.content_hash for c in chunks))
        assert len(found) == count and np.allclose(found["hash-7"], vectors[7])
        load.deferred = False  # no HNSW index: building it over these rows takes longer than the rest
    # Pruning more files than a statement takes parameters.
    gone = ["big.txt", *(f"gone-{i}.txt" for i in range(OVER_PARAMETER_LIMIT))]
    assert store.delete_documents(collection, gone) == 1
    assert store.stored_vectors(collection, (c.content_hash for c in chunks)) == {}


def test_a_text_larger_than_the_cap_fails_alone_and_is_never_read_whole(tmp_path, settings, embedder):
    folder = tmp_path / "docs"
    folder.mkdir()
    paragraph = "Expense claims are paid with the next salary once a manager approves them.\n\n"
    (folder / "huge.txt").write_text(paragraph * 30_000, encoding="utf-8")  # 2.3 MB
    (folder / "one-line.txt").write_text("x" * 300_000, encoding="utf-8")   # no line break at all
    (folder / "small.md").write_text("# Leave\n\n" + paragraph, encoding="utf-8")
    capped = replace(settings, pii=False, max_document_chars=200_000)
    report = ingest(folder, capped, embedder=embedder)
    assert report.status == "partial"
    outcomes = {f.key: (f.outcome, f.reason) for f in report.files}
    too_large = ("failed", "too large: more than 200,000 characters of text (PGKB_MAX_DOCUMENT_CHARS)")
    assert outcomes == {"huge.txt": too_large, "one-line.txt": too_large, "small.md": ("ingested", None)}
    # Recorded: the next run does not read it again while it and the cap stay the same...
    again = ingest(folder, capped, embedder=embedder)
    assert {f.key: f.outcome for f in again.files} == {"huge.txt": "failed", "one-line.txt": "failed",
                                                        "small.md": "unchanged"}
    assert "unchanged since" in next(f.reason for f in again.files if f.key == "huge.txt")
    # ...and a raised cap tries it again.
    raised = ingest(folder, replace(capped, max_document_chars=400_000), embedder=embedder)
    assert {f.key: f.outcome for f in raised.files} == {"huge.txt": "failed", "one-line.txt": "ingested",
                                                         "small.md": "unchanged"}


def test_every_format_is_held_to_the_cap(tmp_path):
    path = write_docx(tmp_path / "long.docx", "Handbook", [(1, "Leave", ["Paid leave is 25 days a year. " * 40])])
    with pytest.raises(ParseError) as refused:
        parse(path, DOCX, ParseOptions(max_chars=1000))
    assert refused.value.reason == "too large"
    assert parse(path, DOCX, ParseOptions(max_chars=5000)).title == "Handbook"


CHINESE = "员工手册：每位全职员工每年享有二十五天带薪年假，请提前两周在人事系统中申请。"
TRADITIONAL = "員工手冊：每位全職員工每年享有二十五天帶薪年假，請提前兩週在人事系統中申請。"
GERMAN = "Die Mitarbeiterin hat Anspruch auf fünfundzwanzig Urlaubstage; Kündigung nur schriftlich, Größe egal."


@pytest.mark.parametrize("text, encoding, recorded", [
    (CHINESE, "gbk", "gb18030"),
    (CHINESE, "gb18030", "gb18030"),
    (TRADITIONAL, "big5", "big5"),
    (CHINESE, "utf-16", "utf-16"),     # with its byte order mark
    (CHINESE, "utf-16-be", "utf_16_be"),
    (CHINESE, "utf-32", "utf-32"),
    (GERMAN, "cp1252", "cp1252"),
    (CHINESE + " " + GERMAN, "utf-8-sig", None),
], ids=["gbk", "gb18030", "big5", "utf-16", "utf-16-be", "utf-32", "cp1252", "utf-8-sig"])
def test_text_files_in_other_encodings_are_read_as_written(tmp_path, text, encoding, recorded):
    path = tmp_path / "notes.txt"
    path.write_bytes(f"# Handbook\n\n{text}\n\n{text}\n".encode(encoding))
    document = parse(path, "text/plain")
    assert [e.text for e in document.elements] == ["Handbook", text, text]
    assert document.metadata.get("encoding") == recorded


def test_bytes_that_are_no_text_say_so(tmp_path):
    path = tmp_path / "noise.txt"
    path.write_bytes(b"\xff\xfe\x00\xd8" + bytes(range(256)) * 4)  # a UTF-16 mark, then a broken surrogate
    with pytest.raises(ParseError) as refused:
        parse(path, "text/plain")
    assert refused.value.reason == "corrupt" and "UTF-16" in refused.value.detail


def test_a_docx_entity_reference_or_comment_inside_a_run_keeps_the_rest_of_the_run(tmp_path):
    path = write_docx(tmp_path / "entities.docx", "Handbook", [(1, "Leave", ["Paid leave is 25 days a year."])])
    with zipfile.ZipFile(path) as package:
        parts = {name: package.read(name) for name in package.namelist()}
    body = parts["word/document.xml"].decode()
    assert "Paid leave is 25 days a year." in body
    # An entity only the file's own DTD declares, predefined and numeric references, a comment.
    body = re.sub(r"^(<\?xml[^>]*\?>)", r'\1<!DOCTYPE w:document [<!ENTITY days "DAYS">]>', body)
    body = body.replace("Paid leave is 25 days a year.",
                        "Paid leave &amp; &#x4E2D; is 25 &days; a year<!-- a note -->, in writing.")
    parts["word/document.xml"] = body.encode()
    with zipfile.ZipFile(path, "w") as package:
        for name, data in parts.items():
            package.writestr(name, data)
    texts = [e.text for e in parse(path, DOCX).elements]
    assert "Paid leave & 中 is 25  a year, in writing." in texts


def write_slow_pdf(path: Path, pages: int = 3000) -> Path:
    """A PDF that takes a worker far longer to parse than to write: one dense page, copied."""
    doc = pymupdf.open()
    page = doc.new_page()
    line = "Travel claims are paid with the next salary once a manager approves them. " * 2
    page.insert_text((40, 40), "\n".join(f"{i} {line}" for i in range(60)), fontsize=6)
    for _ in range(pages - 1):
        doc.fullcopy_page(0)
    doc.save(path)
    return path


def parsing(run: subprocess.Popen, path: Path) -> bool:
    """Whether one of the run's parser workers has the file open."""
    for child in psutil.Process(run.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(f.path == str(path) for f in child.open_files()):
                return True
    return False


def test_a_double_ctrl_c_during_a_parse_interrupts_the_run_and_leaves_the_file_to_the_next(
        tmp_path, data_dir, settings):
    folder = tmp_path / "docs"
    folder.mkdir()
    slow = write_slow_pdf(folder / "slow.pdf")
    run = subprocess.Popen(
        [sys.executable, "-m", "ingest", str(folder), "--quiet", "--workers", "1"], cwd=ROOT,
        env={**os.environ, "PGKB_DATA_DIR": str(data_dir), "PGKB_COLLECTION": settings.collection, "PGKB_PII": "0"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # a terminal's foreground job: Ctrl-C reaches the run and its workers
    )
    try:
        deadline = time.monotonic() + 120
        while not parsing(run, slow.resolve()):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        os.killpg(run.pid, signal.SIGINT)
        # The second Ctrl-C once the first is taken (two at once may arrive as one signal).
        assert "stopping after the documents in progress" in run.stderr.readline()
        os.killpg(run.pid, signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode != 0, (out, err)
    assert "crashed" not in out + err
    engine = create_engine(resolve_url(settings))
    try:
        with engine.connect() as conn:
            documents = conn.execute(text(
                "SELECT d.key, d.status FROM documents d JOIN collections c ON c.id = d.collection_id "
                "WHERE c.name = :name"), {"name": settings.collection}).all()
            runs = conn.execute(text(
                "SELECT r.status FROM ingest_runs r JOIN collections c ON c.id = r.collection_id "
                "WHERE c.name = :name"), {"name": settings.collection}).scalars().all()
    finally:
        engine.dispose()
    assert documents == []  # not recorded as failed: the next run parses it
    assert runs == ["interrupted"]


def test_an_encoding_is_told_from_the_first_text_that_is_not_plain_ascii(tmp_path):
    path = tmp_path / "notes.txt"
    ascii_start = "The handbook follows.\n\n" * 20_000  # more than the sample the encoding is told from
    path.write_bytes(ascii_start.encode() + f"{GERMAN}\n".encode("cp1252"))
    document = parse(path, "text/plain")
    assert document.elements[-1].text == GERMAN and document.metadata["encoding"] == "cp1252"


def test_a_page_that_cannot_be_read_costs_itself_and_pages_that_all_fail_say_why(tmp_path, monkeypatch):
    from ingest.parsers import pdf

    path = tmp_path / "two-pages.pdf"
    with pymupdf.open() as doc:
        for words in ("The first page reads well.", "The second page is damaged."):
            doc.new_page().insert_text((72, 72), words)
        doc.save(path)
    read_page = pdf._read_page

    def failing(pages):
        def read(page, languages):
            if page.number in pages:
                raise RuntimeError("damaged content stream")
            return read_page(page, languages)
        return read

    monkeypatch.setattr(pdf, "_read_page", failing({1}))
    parsed = parse(path, "application/pdf")
    assert "The first page reads well." in " ".join(e.text for e in parsed.elements)
    assert "page 2 could not be read (RuntimeError: damaged content stream)" in parsed.warnings

    monkeypatch.setattr(pdf, "_read_page", failing({0, 1}))
    with pytest.raises(ParseError) as failed:
        parse(path, "application/pdf")
    assert failed.value.reason == "unreadable pages"  # not "no text": the exception is the reason
    assert "page 1 could not be read (RuntimeError: damaged content stream) (and 1 more)" in str(failed.value)
