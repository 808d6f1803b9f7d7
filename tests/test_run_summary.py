"""What the `ingest` command says at the end of a run, through a real process: each failure
once, a headline and a recorded status that say what a failure means, and no pages counted
for formats that have none."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_a_run_with_a_failure_says_so_once_and_honestly(tmp_path, settings):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "parking.md").write_text("# Parking\n\nVisitors park in the bays by the main gate.\n")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 200)
    report_file = tmp_path / "report.json"
    run = run_cli("ingest", str(folder), "--data-dir", str(settings.data_dir), "--collection", settings.collection,
                  "--no-pii", "--quiet", "--report", str(report_file))
    assert run.returncode == 1, run.stderr
    output = run.stdout + run.stderr
    # The summary's line, and no warning before it.
    assert [line for line in output.splitlines() if "broken.pdf" in line] == [
        line for line in run.stdout.splitlines() if line.startswith("  failed (new)  broken.pdf: corrupt")], output
    headline = run.stdout.splitlines()[0]
    assert "1 of 2 files failed (listed below), the others are stored" in headline, headline
    assert "done" not in headline
    assert "pages" not in " ".join(run.stdout.split())  # Markdown has none: not "from 0 pages"
    report = json.loads(report_file.read_text())
    assert report["status"] == "partial"

    (folder / "parking.md").unlink()  # every file it reads fails: nothing is stored by the run
    again = run_cli("ingest", str(folder), "--data-dir", str(settings.data_dir), "--collection",
                    settings.collection, "--no-pii", "--quiet", "--report", str(report_file))
    assert again.stdout.splitlines()[0].startswith(f"collection {settings.collection}: nothing stored: 1 of 1 files")
    assert json.loads(report_file.read_text())["status"] == "failed"
