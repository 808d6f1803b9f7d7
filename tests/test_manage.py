"""Managing the knowledge base: `pgkb collections`, `documents`, `rm` and `drop` as a user runs
them (real processes, a real embedded database, a generated folder), and the Store methods
under them."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from ingest import ingest
from pgkb.settings import Settings
from store import (
    CollectionSummary,
    DocumentSummary,
    StoreError,
    UnknownDocuments,
    hnsw_index_name,
)
from store.tables import collection_statistics, ingest_runs, term_statistics
from tests.conftest import ROOT, run_cli
from tests.term_statistics import assert_statistics_exact

# Each document has a word no other has, so a search for it finds that document alone.
DOCUMENTS = {
    "ferries.md": "# Ferries\n\nThe harbour ferry leaves at seven; bring the yellow boarding card.\n\n"
                  "## Winter timetable\n\nFrom November the ferry sails twice a day.\n",
    "orchards.md": "# Orchards\n\nPrune the apple trees in February, before the buds swell.\n",
    "[draft] telescopes.md": "# Telescopes\n\nCollimate the mirror before every observing night.\n",
}


@pytest.fixture
def collection(data_dir, embedder, tmp_path, request) -> Settings:
    """A collection of the test's own: the documents above and a file that cannot be read."""
    for name, body in DOCUMENTS.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(500))
    settings = Settings(data_dir=data_dir, collection=f"manage-{request.node.name.removeprefix('test_')[:40]}")
    report = ingest(tmp_path, settings, embedder=embedder)
    assert report.count("ingested") == len(DOCUMENTS) and report.count("failed") == 1
    return settings


def pgkb(settings: Settings, *args: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """`pgkb ARGS` on the settings' data directory; stdin is no terminal unless one is given."""
    script = shutil.which("pgkb", path=str(Path(sys.executable).parent))
    assert script
    return subprocess.run([script, *args], stdin=stdin, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PGKB_DATA_DIR": str(settings.data_dir)}, cwd=ROOT)


def pgkb_on_a_terminal(settings: Settings, typed: str, *args: str) -> subprocess.CompletedProcess:
    """`pgkb ARGS` with a terminal for stdin, on which `typed` is typed."""
    terminal, process_side = os.openpty()
    try:
        os.write(terminal, typed.encode() + b"\n")
        return pgkb(settings, *args, stdin=process_side)
    finally:
        os.close(terminal)
        os.close(process_side)


def found_keys(settings: Settings, query: str) -> set[str]:
    found = run_cli("search", query, "-c", settings.collection, "--json",
                    env={"PGKB_DATA_DIR": str(settings.data_dir)})
    assert found.returncode == 0, found.stderr
    return {hit["document_key"] for hit in json.loads(found.stdout)}


def test_collections_and_documents_list_what_is_stored(collection):
    listed = pgkb(collection, "collections", "--json")
    assert listed.returncode == 0, listed.stderr
    (mine,) = [c for c in json.loads(listed.stdout) if c["name"] == collection.collection]
    assert mine["model"] == "sentence-transformers/all-MiniLM-L6-v2" and mine["dims"] == 384
    assert (mine["documents"], mine["failed_documents"], mine["chunks"]) == (3, 1, 4)
    assert mine["size_bytes"] > 4 * 384 * 4  # at least the vectors
    assert mine["last_run"]["status"] == "partial" and mine["last_run"]["finished_at"] >= mine["last_run"]["started_at"]

    table = pgkb(collection, "collections")
    (row,) = [line for line in table.stdout.splitlines() if line.startswith(collection.collection + " ")]
    assert row.split()[1:6] == ["sentence-transformers/all-MiniLM-L6-v2", "384", "3", "1", "4"]

    documents = pgkb(collection, "documents", collection.collection, "--json")
    assert documents.returncode == 0, documents.stderr
    by_key = {d["key"]: d for d in json.loads(documents.stdout)}
    assert list(by_key) == sorted([*DOCUMENTS, "broken.pdf"])
    assert (by_key["ferries.md"]["status"], by_key["ferries.md"]["chunks"], by_key["ferries.md"]["error"]) == \
        ("ingested", 2, None)
    assert by_key["broken.pdf"]["status"] == "failed" and by_key["broken.pdf"]["error"].startswith("corrupt")
    assert by_key["broken.pdf"]["chunks"] == 0 and by_key["ferries.md"]["pages"] is None

    failed = pgkb(collection, "documents", collection.collection, "--failed")
    assert failed.returncode == 0, failed.stderr
    assert "broken.pdf" in failed.stdout and "corrupt" in failed.stdout and "ferries.md" not in failed.stdout
    shown = pgkb(collection, "documents", collection.collection)
    assert "[draft] telescopes.md" in shown.stdout  # as stored: a key's brackets are not markup

    unknown = pgkb(collection, "documents", "never-made")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "collection 'never-made' does not exist" in unknown.stderr and repr(collection.collection) in unknown.stderr


def test_rm_removes_all_the_keys_or_none_and_keeps_bm25_statistics_exact(collection, store):
    typo = pgkb(collection, "rm", collection.collection, "ferries.md", "orchard.md")
    assert typo.returncode == 1
    assert "no document with the key(s) 'orchard.md'; nothing was removed" in typo.stderr
    assert len(store.list_documents(collection.collection)) == 4

    removed = pgkb(collection, "rm", collection.collection, "ferries.md", "broken.pdf")
    assert removed.returncode == 0, removed.stderr
    assert "removed 2 document(s) and 2 chunk(s)" in removed.stdout
    assert [d.key for d in store.list_documents(collection.collection)] == ["[draft] telescopes.md", "orchards.md"]
    # A search returns 5 hits by default, more than the collection's chunks: before the rm, every
    # document's (ferries.md's first, holding all three words).
    assert found_keys(collection, "harbour ferry timetable") == {"[draft] telescopes.md", "orchards.md"}
    assert_statistics_exact(store.engine, collection.collection)
    with store.engine.connect() as conn:
        words = set(conn.execute(text(
            "SELECT lexeme FROM term_statistics s JOIN collections c ON c.id = s.collection_id WHERE c.name = :name"),
            {"name": collection.collection}).scalars())
    assert "ferri" not in words and "orchard" in words  # the removed document's words are gone


def test_drop_asks_for_the_name_on_a_terminal_and_removes_everything(collection, store):
    collection_id = store.collection(collection.collection).id

    no_terminal = pgkb(collection, "drop", collection.collection)
    assert no_terminal.returncode == 2 and "needs --yes where there is no terminal" in no_terminal.stderr
    mistyped = pgkb_on_a_terminal(collection, "manage-something-else", "drop", collection.collection)
    assert mistyped.returncode == 1 and "not dropped" in mistyped.stderr
    assert "holds 4 document(s) and 4 chunk(s). Type its name" in mistyped.stderr
    assert store.find_collection(collection.collection) is not None

    dropped = pgkb_on_a_terminal(collection, collection.collection, "drop", collection.collection)
    assert dropped.returncode == 0, dropped.stderr
    assert f"dropped collection {collection.collection!r}: 4 document(s), 4 chunk(s), 1 ingest run(s)" in dropped.stdout
    assert collection.collection not in [c.name for c in store.list_collections()]
    with store.engine.connect() as conn:
        assert conn.execute(select(func.to_regclass(hnsw_index_name(collection_id)))).scalar() is None
        for table in (ingest_runs, collection_statistics, term_statistics):
            assert conn.execute(select(func.count()).where(table.c.collection_id == collection_id)).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM chunks WHERE collection_id = :id"), {"id": collection_id}) \
            .scalar() == 0

    again = pgkb(collection, "drop", collection.collection, "--yes")
    assert again.returncode == 2 and "does not exist" in again.stderr


def test_the_store_api_returns_frozen_records_and_names_what_is_missing(collection, store):
    summary = store.collection_summary(collection.collection)
    assert isinstance(summary, CollectionSummary) and summary.chunks == 4
    documents = store.list_documents(collection.collection, failed_only=True)
    assert [(d.key, d.status) for d in documents] == [("broken.pdf", "failed")]
    assert isinstance(documents[0], DocumentSummary)
    with pytest.raises(dataclasses.FrozenInstanceError):
        documents[0].key = "other"  # type: ignore[misc]

    with pytest.raises(UnknownDocuments) as unknown:
        store.remove_documents(collection.collection, ["orchards.md", "nowhere.md"])
    assert unknown.value.keys == ["nowhere.md"] and store.collection_summary(collection.collection).documents == 3
    with pytest.raises(StoreError, match=r"collection 'nowhere' does not exist \(the collections are .*'manage-"):
        store.drop_collection("nowhere")

    removal = store.remove_documents(collection.collection, ["orchards.md"])
    assert (removal.keys, removal.chunks) == (("orchards.md",), 1)
    dropped = store.drop_collection(collection.collection)
    assert (dropped.documents, dropped.chunks, dropped.runs) == (3, 3, 1)

