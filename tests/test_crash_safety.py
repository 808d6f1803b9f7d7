"""Runs that are killed, interrupted or run twice at once leave the store as one clean run does.

Real `ingest` processes on a real folder and the shared embedded PostgreSQL; each ends in a
snapshot of the collection (documents, chunks, vectors) compared with a clean run's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from pgkb.settings import Settings
from store import resolve_url
from tests.conftest import HANDBOOK_SECTIONS, POLICY_SECTIONS, ROOT
from tests.documents import write_docx, write_pdf
from tests.term_statistics import assert_statistics_exact

TOPICS = ["parking", "lockers", "canteen", "security badges", "printing", "meeting rooms", "visitors", "recycling"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Sixteen documents (PDF, DOCX, Markdown), each with text of its own."""
    folder = tmp_path_factory.mktemp("crash-corpus")
    for i, topic in enumerate(TOPICS):
        sections = [(1, f"{topic.title()} rules {i}", [f"Rule {i}.{n}: the {topic} policy says item {n} applies "
                                                        f"on floor {n + i} from {8 + n}:00." for n in range(6)])]
        write_pdf(folder / f"{i:02d}-{topic.replace(' ', '-')}.pdf", f"{topic.title()} {i}", POLICY_SECTIONS + sections)
        write_docx(folder / f"{i:02d}-{topic.replace(' ', '-')}.docx", f"Handbook {i}", HANDBOOK_SECTIONS + sections)
    return folder


@pytest.fixture(scope="module")
def engine(data_dir):
    engine = create_engine(resolve_url(Settings(data_dir=data_dir)))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def clean(corpus, data_dir, engine):
    """The collection as one uninterrupted run leaves it."""
    assert start(corpus, data_dir, "crash_clean").wait(timeout=300) == 0
    return snapshot(engine, "crash_clean")


def start(folder, data_dir, collection: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", str(folder), "--quiet", "--workers", "1"], cwd=ROOT,
        # float32: vectors then agree to the fifth decimal whatever batches the texts fell in.
        # Batches of 512 tokens: documents are embedded and written a few at a time, so a kill
        # or a Ctrl-C finds the run between them (the default's first batch holds this corpus).
        env={**os.environ, "PGKB_DATA_DIR": str(data_dir), "PGKB_COLLECTION": collection,
             "PGKB_PRECISION": "float32", "PGKB_BATCH_TOKENS": "512"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )


def snapshot(engine, collection: str) -> dict:
    """Every document's identity and every chunk with its vector, by (document key, ordinal)."""
    with engine.connect() as conn:
        documents = dict(conn.execute(text(
            "SELECT d.key, d.sha256 FROM documents d JOIN collections c ON c.id = d.collection_id WHERE c.name = :name"
        ), {"name": collection}).all())
        rows = conn.execute(text(
            "SELECT d.key, k.ordinal, k.text, k.content_hash, k.section_path, k.page_start, k.page_end, "
            "k.embedding::text FROM chunks k JOIN documents d ON d.id = k.document_id "
            "JOIN collections c ON c.id = k.collection_id WHERE c.name = :name"
        ), {"name": collection}).all()
    chunks = {}
    for key, ordinal, chunk_text, content_hash, section_path, page_start, page_end, embedding in rows:
        assert (key, ordinal) not in chunks, f"duplicate chunk {key} #{ordinal}"
        chunks[(key, ordinal)] = ((chunk_text, content_hash, tuple(section_path), page_start, page_end),
                                  np.array(embedding.strip("[]").split(","), dtype=np.float32))
    return {"documents": documents, "chunks": chunks}


def assert_same(state: dict, clean: dict) -> None:
    assert state["documents"] == clean["documents"]
    assert state["chunks"].keys() == clean["chunks"].keys()
    for position, (fields, vector) in state["chunks"].items():
        clean_fields, clean_vector = clean["chunks"][position]
        assert fields == clean_fields, position
        # Batches of other sizes round differently in the last bits.
        assert np.allclose(vector, clean_vector, atol=1e-5), position


def assert_each_document_whole(state: dict, clean: dict) -> None:
    """Every stored document has exactly the chunks a clean run gives it: none half-written."""
    for key in state["documents"]:
        mine = {pos: fields for pos, (fields, _) in state["chunks"].items() if pos[0] == key}
        theirs = {pos: fields for pos, (fields, _) in clean["chunks"].items() if pos[0] == key}
        assert mine == theirs, f"{key} is stored half-written"
    assert {key for key, _ in state["chunks"]} <= set(state["documents"])


def documents_in(engine, collection: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM documents d JOIN collections c ON c.id = d.collection_id WHERE c.name = :name"
        ), {"name": collection}).scalar()


def wait_for_documents(engine, collection: str, process: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + 120
    while documents_in(engine, collection) < count:
        assert process.poll() is None, f"the run ended before {count} documents: {process.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_killing_a_run_at_any_point_then_rerunning_gives_the_clean_result(corpus, data_dir, engine, clean):
    # Killed while starting up, then after 1, 5 and 11 of 16 documents (often in the middle
    # of the next one's transaction).
    for stored_before_kill in (0, 1, 5, 11):
        run = start(corpus, data_dir, "crash_killed")
        if stored_before_kill:
            wait_for_documents(engine, "crash_killed", run, stored_before_kill)
        else:
            time.sleep(1.0)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
        assert_each_document_whole(snapshot(engine, "crash_killed"), clean)
        assert_statistics_exact(engine, "crash_killed")

    rerun = start(corpus, data_dir, "crash_killed")
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    assert_same(snapshot(engine, "crash_killed"), clean)


def test_ctrl_c_stops_after_the_documents_in_progress_and_says_how_to_resume(corpus, data_dir, engine, clean):
    # Its own session, as a terminal's foreground job: Ctrl-C reaches the run and its parser workers.
    run = start(corpus, data_dir, "crash_interrupted", start_new_session=True)
    wait_for_documents(engine, "crash_interrupted", run, 1)
    os.killpg(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "run the same command again to finish" in err and "Traceback" not in err
    assert "stopped early" in out
    stopped = snapshot(engine, "crash_interrupted")
    assert 1 <= len(stopped["documents"]) < len(clean["documents"])
    assert_each_document_whole(stopped, clean)
    with engine.connect() as conn:
        status = conn.execute(text(
            "SELECT r.status FROM ingest_runs r JOIN collections c ON c.id = r.collection_id "
            "WHERE c.name = 'crash_interrupted'"
        )).scalar_one()
    assert status == "interrupted"

    resumed = start(corpus, data_dir, "crash_interrupted")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert_same(snapshot(engine, "crash_interrupted"), clean)


def test_two_runs_of_the_same_folder_at_once_end_as_one_run(corpus, data_dir, engine, clean):
    runs = [start(corpus, data_dir, "crash_together") for _ in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        assert "error" not in err.lower() and "deadlock" not in err.lower()
    assert_same(snapshot(engine, "crash_together"), clean)
    assert_statistics_exact(engine, "crash_together")
