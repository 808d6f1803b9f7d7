"""Incremental ingest: unchanged files are skipped, edited ones replaced, deleted ones pruned on
request, and user metadata (tags, sidecars, folder files) changes without re-embedding."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from ingest import ingest
from ingest.run import UsageError
from retrieval import KnowledgeBase
from store import Store
from tests.conftest import HANDBOOK_SECTIONS, POLICY_SECTIONS, CountingEmbedder
from tests.documents import write_docx, write_pdf

GUIDE = "# Parking\n\nVisitors park in the bays by the main gate.\n\n# Bicycles\n\nBicycle racks are behind building B."


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "kb"
    (folder / "legal").mkdir(parents=True)
    write_pdf(folder / "policy.pdf", "Travel Policy", POLICY_SECTIONS)
    write_docx(folder / "legal" / "handbook.docx", "Staff Handbook", HANDBOOK_SECTIONS)
    (folder / "guide.md").write_text(GUIDE)
    return folder


def stored(settings) -> dict:
    """What the collection holds: each document's chunks (id, text) and when its row was written."""
    store = Store.open(settings)
    with store.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT d.key, d.updated_at, c.id, c.text FROM documents d JOIN collections k ON k.id = d.collection_id "
            "LEFT JOIN chunks c ON c.document_id = d.id WHERE k.name = :name ORDER BY d.key, c.ordinal"
        ), {"name": settings.collection}).all()
    store.close()
    state: dict = {}
    for key, updated_at, chunk_id, chunk_text in rows:
        state.setdefault(key, {"updated_at": updated_at, "chunks": []})["chunks"].append((chunk_id, chunk_text))
    return state


def outcomes(report) -> dict[str, str]:
    return {f.key: f.outcome for f in report.files}


def test_a_second_run_finds_everything_unchanged_and_writes_nothing(folder, settings, embedder):
    counting = CountingEmbedder(embedder)
    first = ingest(folder, settings, embedder=counting)
    assert set(outcomes(first).values()) == {"ingested"} and counting.calls >= 1
    before = stored(settings)

    counting.calls = 0
    second = ingest(folder, settings, embedder=counting)
    assert outcomes(second) == {"guide.md": "unchanged", "legal/handbook.docx": "unchanged", "policy.pdf": "unchanged"}
    assert counting.calls == 0 and second.stage_seconds.keys() == {"read"}  # not parsed, not embedded
    assert stored(settings) == before  # same rows, same ids, same timestamps


def test_an_edited_file_alone_is_parsed_and_embedded_again(folder, settings, embedder):
    counting = CountingEmbedder(embedder)
    ingest(folder, settings, embedder=counting)
    before = stored(settings)

    (folder / "guide.md").write_text(GUIDE + "\n\n# Lockers\n\nLockers on floor 2 take a one euro coin.")
    counting.embedded.clear()
    report = ingest(folder, settings, embedder=counting)
    assert outcomes(report) == {"guide.md": "updated", "legal/handbook.docx": "unchanged", "policy.pdf": "unchanged"}
    # Only the new text reached the model: the guide's unchanged sections kept their vectors.
    assert counting.embedded and all("Lockers" in t for t in counting.embedded)
    after = stored(settings)
    assert {k: after[k] for k in ("policy.pdf", "legal/handbook.docx")} == \
        {k: before[k] for k in ("policy.pdf", "legal/handbook.docx")}
    assert any("Lockers" in t for _, t in after["guide.md"]["chunks"])
    assert not any("Lockers" in t for _, t in before["guide.md"]["chunks"])


def test_documents_of_deleted_files_stay_unless_pruned(folder, settings, embedder):
    ingest(folder, settings, embedder=embedder)
    (folder / "guide.md").unlink()

    kept = ingest(folder, settings, embedder=embedder)
    assert kept.pruned == [] and "guide.md" in stored(settings)

    pruned = ingest(folder, settings, embedder=embedder, prune=True)
    assert pruned.pruned == ["guide.md"]
    assert sorted(stored(settings)) == ["legal/handbook.docx", "policy.pdf"]
    with Store.open(settings).engine.connect() as conn:  # the chunks went with their document
        orphans = conn.execute(text("SELECT count(*) FROM chunks c LEFT JOIN documents d ON d.id = c.document_id "
                                    "WHERE d.id IS NULL")).scalar()
    assert orphans == 0


def test_prune_refuses_a_single_file(folder, settings, embedder):
    with pytest.raises(UsageError, match="--prune needs a folder"):
        ingest(folder / "guide.md", settings, embedder=embedder, prune=True)


def test_user_metadata_reaches_filters_and_hits_and_a_change_rewrites_no_chunk(folder, settings, embedder):
    (folder / "pgkb.toml").write_text('[metadata]\ndepartment = "operations"\nreviewed = 2024-03-01\n')
    (folder / "legal" / "pgkb.yaml").write_text("metadata:\n  department: legal\n  access: [staff, lawyers]\n")
    (folder / "guide.md.meta.json").write_text(json.dumps({"owner": "facilities"}))
    report = ingest(folder, settings, embedder=embedder, tags={"source_system": "sharepoint"})
    # The metadata files are configuration, not documents.
    assert sorted(outcomes(report)) == ["guide.md", "legal/handbook.docx", "policy.pdf"]

    kb = KnowledgeBase(settings)
    legal = kb.search("holiday", k=10, filters={"metadata.department": "legal"})
    assert legal and {h.document_key for h in legal} == {"legal/handbook.docx"}
    assert legal[0].metadata["access"] == ["staff", "lawyers"] and legal[0].metadata["source_system"] == "sharepoint"
    hits = kb.search("parking", k=10, filters={"metadata.owner": "facilities"})
    assert {h.document_key for h in hits} == {"guide.md"}
    assert kb.search("travel", k=10, filters={"metadata.reviewed": {"gte": "2024-01-01"}})  # TOML date as ISO text
    before = stored(settings)

    (folder / "guide.md.meta.json").write_text(json.dumps({"owner": "reception"}))
    counting = CountingEmbedder(embedder)
    changed = ingest(folder, settings, embedder=counting, tags={"source_system": "sharepoint"})
    assert [(f.key, f.outcome, f.reason) for f in changed.files if f.outcome != "unchanged"] == \
        [("guide.md", "updated", "tags only")]
    assert counting.calls == 0 and "parse" not in changed.stage_seconds
    after = stored(settings)
    assert after["guide.md"]["chunks"] == before["guide.md"]["chunks"]  # the same chunk rows
    hits = kb.search("parking", k=10, filters={"metadata.owner": "reception"})
    assert {h.document_key for h in hits} == {"guide.md"} and hits[0].metadata["owner"] == "reception"
    assert not kb.search("parking", k=10, filters={"metadata.owner": "facilities"})
    kb.close()


def test_a_bad_sidecar_fails_its_file_alone(folder, settings, embedder):
    (folder / "guide.md.meta.json").write_text("{not json")
    report = ingest(folder, settings, embedder=embedder)
    failed = {f.key: f.reason for f in report.failed}
    assert list(failed) == ["guide.md"] and "guide.md.meta.json" in failed["guide.md"]
    assert report.count("ingested") == 2


def test_force_and_new_chunking_options_ingest_unchanged_files_again(folder, settings, embedder):
    ingest(folder, settings, embedder=embedder)
    forced = ingest(folder, settings, embedder=embedder, force=True)
    assert set(outcomes(forced).values()) == {"updated"}

    smaller = settings.__class__(**{**settings.__dict__, "chunk_tokens": 40})
    recut = ingest(folder, smaller, embedder=embedder)
    assert set(outcomes(recut).values()) == {"updated"}
    assert ingest(folder, smaller, embedder=embedder).count("unchanged") == 3


def test_embedding_texts_without_their_headings_embeds_every_chunk_again(folder, settings, embedder):
    counting = CountingEmbedder(embedder)
    ingest(folder, settings, embedder=counting)
    assert any(t.startswith("Travel Policy > ") for t in counting.embedded)  # the default: path first
    before = stored(settings)

    counting.embedded.clear()
    plain = settings.__class__(**{**settings.__dict__, "embed_headings": False})
    report = ingest(folder, plain, embedder=counting)
    assert set(outcomes(report).values()) == {"updated"}
    after = stored(settings)
    # Embedded again as their text alone: the chunks under a path. guide.md's chunks begin with
    # their one heading, so the model reads them the same either way, and their vectors stay.
    assert set(counting.embedded) == {t for key, document in after.items() if key != "guide.md"
                                      for _, t in document["chunks"]}
    texts = {key: [t for _, t in document["chunks"]] for key, document in after.items()}
    assert texts == {key: [t for _, t in document["chunks"]] for key, document in before.items()}  # stored: the same


def test_a_file_that_failed_is_tried_again_only_once_it_changes(folder, settings, embedder):
    (folder / "notes.pdf").write_bytes(b"%PDF-1.7\n" + b"not really a PDF " * 100)
    first = ingest(folder, settings, embedder=embedder)
    assert [(f.key, f.reason.split(":")[0]) for f in first.failed] == [("notes.pdf", "corrupt")]

    again = ingest(folder, settings, embedder=embedder)
    assert [f.key for f in again.failed] == ["notes.pdf"] and "unchanged since" in again.failed[0].reason
    assert "parse" not in again.stage_seconds

    write_pdf(folder / "notes.pdf", "Notes", POLICY_SECTIONS)  # fixed: read at once
    fixed = ingest(folder, settings, embedder=embedder)
    assert outcomes(fixed)["notes.pdf"] == "ingested" and not fixed.failed
    assert stored(settings)["notes.pdf"]["chunks"]


def test_prune_refuses_a_folder_with_nothing_it_reads_and_keeps_everything(folder, settings, embedder, tmp_path):
    ingest(folder, settings, embedder=embedder)
    before = sorted(stored(settings))
    empty = tmp_path / "mount-point"  # an unmounted share looks like this
    empty.mkdir()
    (empty / "desktop.ini").write_text("[.ShellClassInfo]")
    with pytest.raises(UsageError, match=r"--prune refused: .*mount-point holds no file pgkb reads"):
        ingest(empty, settings, embedder=embedder, prune=True)
    assert sorted(stored(settings)) == before


def test_prune_refuses_to_remove_most_of_a_collection_unless_told(folder, settings, embedder):
    ingest(folder, settings, embedder=embedder)
    (folder / "guide.md").unlink()
    (folder / "policy.pdf").unlink()
    with pytest.raises(UsageError, match=r"would remove 2 of the 3 documents from .*kb, more than 50%.*--yes"):
        ingest(folder, settings, embedder=embedder, prune=True)
    assert sorted(stored(settings)) == ["guide.md", "legal/handbook.docx", "policy.pdf"]
    report = ingest(folder, settings, embedder=embedder, prune=True, prune_any_share=True)
    assert report.pruned == ["guide.md", "policy.pdf"] and sorted(stored(settings)) == ["legal/handbook.docx"]


def test_the_cli_names_what_it_pruned_and_exits_2_on_a_refused_prune(folder, settings, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "PGKB_DATA_DIR": str(settings.data_dir), "PGKB_COLLECTION": settings.collection,
           "PGKB_PII": "0"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "ingest", "-q", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)

    assert run(str(folder)).returncode == 0
    (folder / "guide.md").unlink()
    pruned = run(str(folder), "--prune")
    assert pruned.returncode == 0 and "1 documents whose files are gone: guide.md" in " ".join(pruned.stdout.split())
    (tmp_path / "empty").mkdir()
    refused = run(str(tmp_path / "empty"), "--prune")
    assert refused.returncode == 2 and "holds no file pgkb reads" in refused.stderr
    assert sorted(stored(settings)) == ["legal/handbook.docx", "policy.pdf"]
