"""The two commands as a user runs them: real processes, the network unreachable."""

import json

from tests.conftest import run_cli


def test_ingest_reports_failures_with_reasons_and_exits_1_then_search_prints_citations(docs, data_dir):
    env = {"PGKB_DATA_DIR": str(data_dir), "PGKB_COLLECTION": "cli"}
    result = run_cli("ingest", str(docs), env=env)
    assert result.returncode == 1, result.stderr
    out = " ".join(result.stdout.split())
    assert "5 seen: 2 ingested, 0 updated, 0 unchanged, 1 skipped, 2 failed (2 new)" in out
    assert "skipped unsupported type .xyz 1" in out
    assert "failures corrupt 1, empty file 1" in out
    assert "failed (new) broken.pdf: corrupt" in out and "failed (new) empty.docx: empty file" in out

    # Again, with a report: every file is unchanged, the broken ones still broken, as known.
    report_file = docs.parent / "report.json"
    again = run_cli("ingest", str(docs), "--report", str(report_file), env=env)
    assert again.returncode == 0, again.stderr
    report = json.loads(report_file.read_text())
    assert report["status"] == "partial" and report["counts"]["unchanged"] == 2 and report["counts"]["failed"] == 2
    assert {f["key"]: f["outcome"] for f in report["files"]} == {
        "broken.pdf": "failed", "empty.docx": "failed", "handbook.docx": "unchanged", "photo.xyz": "skipped",
        "policy.pdf": "unchanged"}
    assert [f["reason"] for f in report["files"] if f["key"] == "empty.docx"] == \
        ["empty file (unchanged since; --force tries again)"]
    assert "parse" not in report["stage_seconds"]  # the failed files were remembered, not parsed again

    found = run_cli("search", "when must I submit my travel expense claim", "-k", "2", "--json", env=env)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert len(hits) == 2
    assert hits[0]["document_key"] == "policy.pdf"
    assert hits[0]["citation"] == "policy.pdf, p. 1, Travel Policy > Submitting a claim"

    narrowed = run_cli("search", "when must I submit my travel expense claim", "--filter",
                       "source=handbook.docx", "--json", env=env)
    assert {h["document_key"] for h in json.loads(narrowed.stdout)} == {"handbook.docx"}

    shown = run_cli("search", "pool cars", "-k", "1", env=env)
    assert "policy.pdf, p. 2, Travel Policy > Company cars" in " ".join(shown.stdout.split())


def test_usage_errors_exit_2_with_a_one_line_message(tmp_path, data_dir):
    env = {"PGKB_DATA_DIR": str(data_dir)}
    missing = run_cli("ingest", str(tmp_path / "nowhere"), env=env)
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    model = run_cli("ingest", str(tmp_path), "--model", "example-org/no-such-model", env=env)
    assert model.returncode == 2 and "not on this machine" in model.stderr
    tag = run_cli("ingest", str(tmp_path), "--tag", "department", env=env)
    assert tag.returncode == 2 and "--tag takes KEY=VALUE" in tag.stderr
    unknown = run_cli("search", "x", "--collection", "never-made", env=env)
    assert unknown.returncode == 2 and "does not exist" in unknown.stderr
