"""Inputs and events that used to stop a whole run, and the run's bookkeeping (issue 28).

Each input here once ended the run with a traceback (or never ended it); now each fails or is
skipped alone, with its reason, and the run is recorded and reported. Real files, the real
embedded PostgreSQL and the real model.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from sqlalchemy import create_engine, text

from ingest import FileOutcome, IngestReport, cli, ingest
from ingest import sources as ingest_sources
from ingest.chunking import chunk_elements
from ingest.metadata import MetadataError, UserMetadata
from ingest.parsers import parse
from ingest.sources import discover
from pgkb.settings import Settings
from store import Store, resolve_url
from tests.conftest import POLICY_SECTIONS, ROOT
from tests.documents import write_pdf


@contextmanager
def within(seconds: int):
    """Fails the block that runs past `seconds` (a loop that never ends, as these once did)."""
    def overran(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, overran)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, expected", [
    ("chunk_tokens", 0, "at least 32"), ("chunk_tokens", 1, "at least 32"), ("chunk_tokens", -400, "at least 32"),
    ("chunk_tokens", 40.5, "a whole number"), ("batch_tokens", 0, "at least 1"), ("workers", -1, "at least 0"),
    ("parse_seconds", 0, "at least 1"), ("parse_memory_mb", -1, "at least 1"), ("dims", -8, "at least 0"),
    ("pii_threshold", 1.5, "at most 1"), ("pii_threshold", float("nan"), "at least 0"), ("bm25_k1", -0.1, "at least 0"),
    ("bm25_b", 2, "at most 1"), ("bm25_b", "0.5", "a number"),
])
def test_a_numeric_setting_out_of_range_is_refused_with_its_name(name, value, expected):
    with pytest.raises(ValueError, match=f"setting {name} .*must be {expected}"):
        Settings(**{name: value})
    if not isinstance(value, str):  # given as its environment variable, too
        with pytest.raises(ValueError, match=f"setting {name} "):
            Settings.from_env({Settings.__dataclass_fields__[name].metadata["env"]: str(value)})


def test_the_bounds_themselves_are_accepted():
    settings = Settings(chunk_tokens=32, batch_tokens=1, workers=0, parse_seconds=1, parse_memory_mb=1, dims=0,
                        pii_threshold=0, bm25_k1=0, bm25_b=1)
    assert replace(settings, pii_threshold=1.0, bm25_b=0.0).pii_threshold == 1.0


def test_a_section_path_too_deep_to_shorten_to_its_share_still_ends(tmp_path, embedder):
    # Six nested headings shortened to "He…" still take more than half of 32 tokens: the
    # shortening loop never ended (chunk sizes 0, 1 and negative ran into the same loop).
    path = tmp_path / "deep.md"
    path.write_text("".join(f"{'#' * depth} Heading level {depth} with quite a lot of words in its title\n\n"
                            for depth in range(1, 7)) + "Some text under the deepest heading. " * 20 + "\n")
    with within(60):
        chunks = chunk_elements(parse(path, "text/markdown").elements, "deep.md", embedder.count_tokens, 32)
    assert any("Some text" in chunk.text for chunk in chunks)


# --- inputs that stopped the whole run ------------------------------------------------------------

def run_record(settings: Settings, run_id: int) -> dict:
    engine = create_engine(resolve_url(settings))
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT status, options, errors FROM ingest_runs WHERE id = :id"),
                               {"id": run_id}).one()
    finally:
        engine.dispose()
    return row._asdict()


def stored(settings: Settings) -> dict:
    """The documents the collection holds, by key: their status."""
    store = Store.open(settings)
    try:
        collection = store.find_collection(settings.collection)
        return {key: state.status for key, state in store.document_states(collection).items()} if collection else {}
    finally:
        store.close()


def outcomes(report) -> dict[str, tuple[str, str | None]]:
    return {f.key: (f.outcome, f.reason) for f in report.files}


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """The test's settings without masking, which none of these tests is about."""
    return replace(settings, pii=False)


def test_a_file_name_too_long_for_its_sidecar_is_ingested_and_found_unchanged_again(tmp_path, quick, embedder):
    # 246 bytes: the name is legal, its sidecar's (+ ".meta.json") is over the 255-byte limit.
    name = "报" * 80 + "ab.txt"
    assert len(name.encode()) == 246
    (tmp_path / name).write_text("The quarterly report names the winners of the staff awards.")
    first = ingest(tmp_path, quick, embedder=embedder)
    assert outcomes(first) == {name: ("ingested", None)} and first.status == "succeeded"
    again = ingest(tmp_path, quick, embedder=embedder)
    assert outcomes(again) == {name: ("unchanged", None)}


def unreadable(folder: Path) -> str:
    """A file that exists and cannot be opened for reading, named `locked.txt` in `folder`.

    As a user: a file of mode 000. As root, who reads any mode: a link to a write-only file
    of the kernel's (read through --follow-links), which refuses root too.
    """
    path = folder / "locked.txt"
    if os.geteuid() != 0:
        path.write_text("secret")
        path.chmod(0)
        return "Permission denied"
    for candidate in ("/sys/bus/pci/rescan", "/sys/bus/cpu/uevent", "/sys/kernel/uevent_helper"):
        try:
            open(candidate, "rb").close()
        except PermissionError:
            path.symlink_to(candidate)
            return "Permission denied"
        except OSError:
            continue
    pytest.skip("no file here that root cannot open for reading (no /sys write-only file)")


def test_unreadable_failing_and_vanished_files_fail_alone_with_their_reason(tmp_path, quick, embedder, monkeypatch):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ok.txt").write_text("The canteen opens at eight in the morning.")
    (folder / "gone.txt").write_text("This file is deleted after the folder is listed.")
    denied = unreadable(folder)
    (folder / "memory.txt").symlink_to("/proc/self/mem")  # a read at offset 0 fails with EIO

    def listed_then_deleted(*args):
        paths = discover(*args)
        (folder / "gone.txt").unlink()
        return paths

    monkeypatch.setattr("ingest.run.discover", listed_then_deleted)
    report = ingest(folder, replace(quick, follow_links=True), embedder=embedder)
    assert outcomes(report) == {
        "ok.txt": ("ingested", None),
        "gone.txt": ("failed", "cannot read: No such file or directory"),
        "locked.txt": ("failed", f"cannot read: {denied}"),
        "memory.txt": ("failed", "cannot read: Input/output error"),
    }
    assert report.status == "partial"
    assert run_record(quick, report.run_id)["status"] == "partial"


def test_a_file_name_that_is_not_utf8_fails_alone_and_the_run_is_recorded(tmp_path, quick, embedder):
    gbk = os.fsdecode("中文".encode("gbk") + b".txt")  # as a Windows share or an old zip leaves it
    (tmp_path / gbk).write_text("Text under a name in GBK bytes.")
    (tmp_path / "ok.txt").write_text("The library lends books for three weeks.")
    report = ingest(tmp_path, quick, embedder=embedder)
    shown = "\\xd6\\xd0\\xce\\xc4.txt"  # its bytes, as escapes
    assert outcomes(report) == {"ok.txt": ("ingested", None),
                                shown: ("failed", "file name is not UTF-8: rename the file")}
    record = run_record(quick, report.run_id)
    assert record["status"] == "partial" and record["errors"] == [
        {"key": shown, "reason": "file name is not UTF-8: rename the file", "sha256": None}]
    assert stored(quick) == {"ok.txt": "ingested"}


def alias_bomb(levels: int = 6) -> str:
    """YAML whose aliases nest: `levels` levels of ten make 10**levels strings once expanded
    (the issue's 500 bytes made 9.3 GB; six levels stay harmless if aliases are expanded)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nmetadata:\n  department: *l{levels}\n"


@pytest.mark.parametrize("content, reason", [
    ("metadata:\n  2024-01-01: launch\n", "quote dates used as keys"),
    (alias_bomb(), "line 2, column 10: aliases (*name) are not supported"),
    ("metadata:\n  owner: '张三 110101199003070062\n  floor: [1,\n",
     "line 4, column 1: found unexpected end of stream (while scanning a quoted scalar from line 2, column 10)"),
    ("metadata:\n  notes: " + "x" * (1 << 20) + "\n", "larger than 1 MiB"),
])
def test_folder_metadata_that_cannot_be_used_fails_its_files_alone_with_a_reason(tmp_path, content, reason):
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "pgkb.yaml").write_text(content)
    metadata = UserMetadata(tmp_path, {})
    with within(30), pytest.raises(MetadataError) as error:
        metadata.for_file(tmp_path / "team" / "plan.txt")
    assert str(error.value).startswith("pgkb.yaml: ") and reason in str(error.value)
    assert "110101199003070062" not in str(error.value)  # the file's content is never quoted
    assert metadata.for_file(tmp_path / "elsewhere.txt") == {}


def test_a_date_key_in_folder_metadata_fails_the_folders_files_and_the_run_goes_on(tmp_path, quick, embedder):
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "pgkb.yaml").write_text("metadata:\n  2024-01-01: launch\n")
    (tmp_path / "team" / "plan.txt").write_text("The launch plan lists every step.")
    (tmp_path / "ok.txt").write_text("The office closes at six.")
    report = ingest(tmp_path, quick, embedder=embedder)
    assert report.files[0].key == "ok.txt" and report.files[0].outcome == "ingested"
    assert report.files[1].key == "team/plan.txt" and report.files[1].outcome == "failed"
    assert "quote dates used as keys" in report.files[1].reason


# --- links, unsupported files, workers, log lines -------------------------------------------------

def test_links_out_of_the_folder_are_skipped_unless_asked(tmp_path, quick, embedder):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd.txt").write_text("root:x:0:0:root:/root:/bin/bash")
    (outside / "notes.txt").write_text("Notes kept outside the ingested folder.")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "policy.txt").write_text("Visitors sign in at the front desk.")
    (folder / "passwd.txt").symlink_to(outside / "passwd.txt")
    (folder / "elsewhere").symlink_to(outside, target_is_directory=True)
    (folder / "same-policy.txt").symlink_to(folder / "policy.txt")  # within the folder: read

    report = ingest(folder, quick, embedder=embedder)
    left_out = ("skipped", "link out of the folder (--follow-links reads it)")
    assert outcomes(report) == {"elsewhere": left_out, "passwd.txt": left_out, "policy.txt": ("ingested", None),
                                "same-policy.txt": ("ingested", None)}
    assert stored(quick) == {"policy.txt": "ingested", "same-policy.txt": "ingested"}

    followed = ingest(folder, replace(quick, follow_links=True), embedder=embedder)
    assert outcomes(followed) == {"elsewhere/notes.txt": ("ingested", None), "elsewhere/passwd.txt": ("ingested", None),
                                  "passwd.txt": ("ingested", None), "policy.txt": ("unchanged", None),
                                  "same-policy.txt": ("unchanged", None)}


def test_a_link_cycle_is_listed_once_when_links_are_followed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "doc.txt").write_text("text")
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert discover(tmp_path, follow_links=True) == [tmp_path / "a" / "doc.txt"]


def test_a_link_to_a_folder_within_the_folder_lists_its_files_once_where_they_are(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "doc.txt").write_text("text")
    (tmp_path / "a").symlink_to(tmp_path / "b", target_is_directory=True)  # sorts first
    assert discover(tmp_path) == discover(tmp_path, follow_links=True) == [tmp_path / "b" / "doc.txt"]


def test_an_unsupported_file_is_skipped_by_its_name_without_being_read(tmp_path, quick, embedder, monkeypatch):
    with open(tmp_path / "disk.iso", "wb") as f:
        f.truncate(5 << 30)  # 5 GB, sparse: it takes no disk, hashing it took seconds
    (tmp_path / "readme.txt").write_text("Burn the image to a USB stick.")
    hashed = []
    hash_file = ingest_sources._sha256

    def noting(path):
        assert path.suffix != ".iso", "the unsupported file was read"
        hashed.append(path.name)
        return hash_file(path)

    monkeypatch.setattr(ingest_sources, "_sha256", noting)
    report = ingest(tmp_path, quick, embedder=embedder)
    assert outcomes(report) == {"disk.iso": ("skipped", "unsupported type .iso"), "readme.txt": ("ingested", None)}
    assert hashed == ["readme.txt"]


def test_workers_are_capped_at_the_cpu_cores_and_the_files(tmp_path, quick, embedder, caplog):
    for i in range(3):
        (tmp_path / f"{i}.txt").write_text(f"Document number {i} of three.")
    cores = len(os.sched_getaffinity(0))
    report = ingest(tmp_path, replace(quick, workers=1000), embedder=embedder)
    assert run_record(quick, report.run_id)["options"]["workers"] == min(cores, 3)
    assert f"1000 workers asked for; {cores} used, one per CPU core" in caplog.text


def test_a_file_name_with_a_line_break_cannot_forge_log_lines(tmp_path, quick, embedder, caplog):
    caplog.set_level(logging.INFO, logger="ingest.stages")  # a failure is logged at INFO (the summary lists it)
    name = "report.docx\nWARNING ingest.run: all files ingested.docx"
    (tmp_path / name).write_bytes(b"")  # an empty file: it fails, and the failure is logged
    report = ingest(tmp_path, quick, embedder=embedder)
    assert outcomes(report) == {name: ("failed", "empty file")}
    logged = [record.getMessage() for record in caplog.records if record.name == "ingest.stages"]
    assert logged == [f"{name!r}: empty file"]


# --- the command line ----------------------------------------------------------------------------

def cli_args(folder: Path, settings: Settings, *more: str) -> list[str]:
    return [str(folder), "--data-dir", str(settings.data_dir), "--collection", settings.collection,
            "--no-pii", "--quiet", *more]


def test_a_chunk_size_of_zero_is_a_usage_error_not_a_loop(tmp_path, settings, capsys):
    (tmp_path / "a.txt").write_text("Any text at all.")
    with within(120):
        assert cli.main(cli_args(tmp_path, settings, "--chunk-tokens", "0")) == 2
    assert capsys.readouterr().err == "error: setting chunk_tokens (PGKB_CHUNK_TOKENS) must be at least 32, got 0\n"


def test_an_unwritable_report_path_still_prints_the_summary_and_names_the_error(tmp_path, settings, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("The gym is on the second floor.")
    assert cli.main(cli_args(tmp_path / "docs", settings, "--report", str(tmp_path))) == 1
    out, err = capsys.readouterr()
    assert "1 seen: 1 ingested" in " ".join(out.split())
    assert f"error: cannot write the report to {tmp_path}: Is a directory" in err


def test_a_collection_name_with_markup_is_printed_as_it_is():
    report = IngestReport("team[/]notes[bold]", status="succeeded",
                          files=[FileOutcome("x[/].iso", "skipped", "unsupported type .iso[/]")])
    console = Console(file=io.StringIO(), width=200)
    cli.print_summary(report, console)
    out = console.file.getvalue()
    assert "collection team[/]notes[bold]: done" in out and "unsupported type .iso[/] 1" in out


def test_passwords_can_come_from_standard_input(tmp_path, settings, capsys, monkeypatch):
    write_pdf(tmp_path / "secret.pdf", "Salaries", POLICY_SECTIONS, password="open sesame")
    monkeypatch.setattr(sys, "stdin", io.StringIO("wrong guess\nopen sesame\n"))
    assert cli.main(cli_args(tmp_path, settings, "--passwords-stdin")) == 0
    assert "1 seen: 1 ingested" in " ".join(capsys.readouterr().out.split())


@contextmanager
def long_run(tmp_path: Path, settings: Settings):
    """An `ingest` subprocess with enough text to be still busy when the test interferes,
    given once its run is recorded; yields it, an engine on its database and its report's path."""
    words = [f"{a}{b}" for a in ("ship", "order", "claim", "desk", "badge") for b in ("", "s", "ing", "ed", "er")]
    random = np.random.default_rng(7)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "long.txt").write_text(
        "\n\n".join(" ".join(random.choice(words, 60)) + "." for _ in range(3000)))
    report_file = tmp_path / "report.json"
    Store.open(settings).close()  # the tables exist before the polling below
    run = subprocess.Popen([sys.executable, "-m", "ingest", *cli_args(tmp_path / "docs", settings),
                            "--report", str(report_file)], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    engine = create_engine(resolve_url(settings))
    try:
        deadline = time.monotonic() + 120
        while not latest_run(engine, settings.collection):
            assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
            time.sleep(0.05)
        yield run, engine, report_file
    finally:
        run.kill()
        engine.dispose()


def test_sigterm_ends_the_run_as_aborted_with_its_summary_and_report(tmp_path, data_dir):
    with long_run(tmp_path, Settings(data_dir=data_dir, collection="sigterm")) as (run, engine, report_file):
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 143, err
        assert "stopped before its end" in out and "error: the run stopped before its end: stopped by SIGTERM" in err
        report = json.loads(report_file.read_text())
        assert (report["status"], report["error"]) == ("aborted", "stopped by SIGTERM")
        assert latest_run(engine, "sigterm") == "aborted"


def test_a_postgresql_stopped_mid_run_ends_it_with_its_summary_and_report(tmp_path, new_data_dir):
    """The run's own server goes down while it works: the run cannot record its end in the
    database, but prints its summary, writes its report and says why."""
    with long_run(tmp_path, Settings(data_dir=new_data_dir, collection="stopped")) as (run, engine, report_file):
        engine.dispose()
        postmaster = int((new_data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGQUIT)  # PostgreSQL's immediate shutdown: the server is gone at once
        out, err = run.communicate(timeout=300)
        assert run.returncode == 1, err
        assert "stopped before its end" in out and "the database went away" in err
        report = json.loads(report_file.read_text())
        assert report["status"] == "aborted" and report["error"].startswith("the database went away")


def latest_run(engine, collection: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT r.status FROM ingest_runs r JOIN collections c ON c.id = r.collection_id "
            "WHERE c.name = :name ORDER BY r.id DESC LIMIT 1"), {"name": collection}).scalar()


def test_folder_metadata_linked_from_out_of_the_folder_is_not_read_unless_asked(tmp_path, quick, embedder):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secrets.yaml").write_text("metadata:\n  api_token: s3cret-from-elsewhere\n")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "policy.txt").write_text("Visitors sign in at the front desk.")
    (folder / "pgkb.yaml").symlink_to(outside / "secrets.yaml")

    report = ingest(folder, quick, embedder=embedder)
    assert outcomes(report) == {
        "policy.txt": ("failed", "pgkb.yaml: a link out of the folder (--follow-links reads it)")}
    followed = ingest(folder, replace(quick, follow_links=True), embedder=embedder)
    assert outcomes(followed) == {"policy.txt": ("ingested", None)}
    with create_engine(resolve_url(quick)).connect() as conn:
        assert conn.execute(text("SELECT d.tags FROM documents d JOIN collections c ON c.id = d.collection_id "
                                 "WHERE c.name = :name"), {"name": quick.collection}).scalar() == {
            "api_token": "s3cret-from-elsewhere"}


def test_a_run_killed_outright_is_marked_aborted_by_the_next(tmp_path, data_dir, embedder):
    settings = Settings(data_dir=data_dir, collection="killed", pii=False)
    with long_run(tmp_path, settings) as (run, engine, _):
        run.kill()  # SIGKILL: no chance to record its end
        run.wait(timeout=60)
        assert latest_run(engine, "killed") == "running"
        (tmp_path / "later").mkdir()
        (tmp_path / "later" / "note.txt").write_text("A short note.")
        ingest(tmp_path / "later", settings, embedder=embedder, add_root=True)
        with engine.connect() as conn:
            runs = conn.execute(text(
                "SELECT r.status, r.errors FROM ingest_runs r JOIN collections c ON c.id = r.collection_id "
                "WHERE c.name = 'killed' ORDER BY r.id")).all()
    assert [status for status, _ in runs] == ["aborted", "succeeded"]
    assert "ended without recording its end" in runs[0].errors[0]["reason"]
