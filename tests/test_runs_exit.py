"""What a run tries again and how it exits, through the `ingest` command as a cron job runs it:
encrypted PDFs are tried again when the passwords change, and only a failure new in this run
(or changed) makes the exit status 1."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import create_engine, text

from pgkb.settings import Settings
from store import resolve_url
from tests.conftest import POLICY_SECTIONS, run_cli
from tests.documents import write_pdf


def ingest_cli(folder: Path, settings: Settings, *more: str, report: Path | None = None):
    args = [str(folder), "--data-dir", str(settings.data_dir), "--collection", settings.collection, "--no-pii",
            "--quiet", *more, *(["--report", str(report)] if report else [])]
    return run_cli("ingest", *args)


def flat(output: str) -> str:
    return " ".join(output.split())


def test_new_passwords_try_an_encrypted_pdf_again_and_are_never_stored(tmp_path, settings):
    folder = tmp_path / "docs"
    folder.mkdir()
    write_pdf(folder / "secret.pdf", "Expense Policy", POLICY_SECTIONS, password="open sesame")

    wrong = ingest_cli(folder, settings, "--password", "first guess")
    assert wrong.returncode == 1, wrong.stderr
    assert "failed (new) secret.pdf: encrypted: the PDF needs a password; none of the 1 passwords given opens it" \
        in flat(wrong.stdout)

    # The same set again (in another order, repeated) is not tried again...
    same = ingest_cli(folder, settings, "--password", "first guess", "--password", "first guess")
    assert same.returncode == 0 and "none of the 1 passwords given opens it (unchanged since" in flat(same.stdout)

    # ...a changed one is, and its message counts this run's passwords.
    more = ingest_cli(folder, settings, "--password", "first guess", "--password", "second guess")
    assert more.returncode == 1 and "none of the 2 passwords given opens it" in flat(more.stdout)
    assert "unchanged since" not in more.stdout

    right = ingest_cli(folder, settings, "--password", "open sesame")
    assert right.returncode == 0, right.stdout + right.stderr
    assert "1 seen: 1 ingested" in flat(right.stdout)

    # What tells the sets apart is keyed by a secret in the data folder, readable by its owner
    # only; the database holds neither the passwords nor anything to test guesses against.
    key_file = settings.data_dir / "passwords.key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key_file.read_bytes()) == 32
    engine = create_engine(resolve_url(settings))
    with engine.connect() as conn:
        dump = " ".join(str(row) for table in ("documents", "ingest_runs", "collections")
                        for row in conn.execute(text(f"SELECT * FROM {table}")))
    engine.dispose()
    assert "guess" not in dump and "sesame" not in dump


def test_only_a_new_or_changed_failure_exits_1_unless_strict(tmp_path, settings):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.md").write_text("# Notes\n\nThe office opens at eight in the morning.\n")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(2000))
    report = tmp_path / "report.json"

    first = ingest_cli(folder, settings, report=report)
    assert first.returncode == 1, first.stderr
    assert "2 seen: 1 ingested, 0 updated, 0 unchanged, 0 skipped, 1 failed (1 new)" in flat(first.stdout)
    assert "failed (new) broken.pdf: corrupt" in flat(first.stdout)
    assert [(f["key"], f.get("new")) for f in json.loads(report.read_text())["files"]] == [
        ("broken.pdf", True), ("notes.md", None)]

    # Nothing new: a cron job sees 0, and the summary and report still list the known failure.
    again = ingest_cli(folder, settings, report=report)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 failed (0 new)" in flat(again.stdout) and "failed (known) broken.pdf: corrupt" in flat(again.stdout)
    written = json.loads(report.read_text())
    assert written["counts"]["failed"] == 1 and written["counts"]["failed_new"] == 0
    assert [(f["key"], f["outcome"], f["new"]) for f in written["files"] if f["outcome"] == "failed"] == [
        ("broken.pdf", "failed", False)]

    strict = ingest_cli(folder, settings, "--strict")
    assert strict.returncode == 1, strict.stderr

    # Still broken, but other bytes: a new failure.
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(3000))
    changed = ingest_cli(folder, settings)
    assert changed.returncode == 1, changed.stderr
    assert "failed (new) broken.pdf: corrupt" in flat(changed.stdout)
    assert ingest_cli(folder, settings).returncode == 0
