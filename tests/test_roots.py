"""A collection remembers the folders it was ingested from (its roots): another folder is
refused unless added as a root, a folder inside a root keeps its documents' keys, and a run
prunes only what lies under the folder it was given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from ingest import ingest
from ingest.roots import RootRefused
from store import Store
from tests.conftest import ROOT, run_cli


def write(folder, files: dict[str, str]):
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def pgkb(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`pgkb ARGS` (the management commands) as a process of its own."""
    command = "from retrieval.commands import main; raise SystemExit(main())"
    return subprocess.run([sys.executable, "-c", command, *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env}, cwd=ROOT)


def stored_keys(settings) -> list[str]:
    store = Store.open(settings)
    try:
        return [document.key for document in store.list_documents(settings.collection)]
    finally:
        store.close()


def test_another_folder_is_refused_unless_added_as_a_root_and_prune_keeps_to_its_folder(tmp_path, settings):
    examples = write(tmp_path / "examples", {"parking.md": "# Parking\n\nVisitors park by the main gate.\n"})
    mine = write(tmp_path / "mine", {"leave.md": "# Leave\n\n25 days a year.\n",
                                     "cars.md": "# Cars\n\nPool cars are booked in the calendar.\n",
                                     "bikes.md": "# Bikes\n\nRacks are behind building B.\n"})
    common = ["--data-dir", str(settings.data_dir), "-c", settings.collection, "--no-pii", "-q"]
    assert run_cli("ingest", str(examples), *common).returncode == 0

    refused = run_cli("ingest", str(mine), *common)
    assert refused.returncode == 2, refused.stderr
    assert f"holds the documents of {examples}, and {mine} is another folder" in refused.stderr
    assert "--add-root" in refused.stderr and "Traceback" not in refused.stderr
    assert stored_keys(settings) == ["parking.md"]

    assert run_cli("ingest", str(mine), *common, "--add-root").returncode == 0
    (mine / "bikes.md").unlink()
    pruned = run_cli("ingest", str(mine), *common, "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert stored_keys(settings) == ["cars.md", "leave.md", "parking.md"]  # the other root's document stays

    env = {"PGKB_DATA_DIR": str(settings.data_dir)}
    listed = pgkb("collections", "--json", env=env)
    (mine_listed,) = [c for c in json.loads(listed.stdout) if c["name"] == settings.collection]
    assert mine_listed["roots"] == [str(examples), str(mine)]
    table = pgkb("collections", env={**env, "COLUMNS": "400"})
    (row,) = [line for line in table.stdout.splitlines() if line.startswith(settings.collection + " ")]
    assert row.rstrip().endswith(f"{examples}, {mine}")


def test_a_folder_or_file_inside_a_root_keeps_its_keys_and_prunes_only_there(tmp_path, settings, embedder):
    root = write(tmp_path / "kb", {"office/a.md": "# Desks\n\nDesks are booked for a day.\n",
                                   "office/b.md": "# Printers\n\nThe printer is on floor 2.\n",
                                   "office/c.md": "# Kitchen\n\nThe kitchen closes at 18:00.\n",
                                   "travel.md": "# Travel\n\nClaims are paid monthly.\n"})
    ingest(root, settings, embedder=embedder)  # personal data masking on: roots are stored as masked
    keys = ["office/a.md", "office/b.md", "office/c.md", "travel.md"]
    assert stored_keys(settings) == keys

    (root / "office" / "a.md").write_text("# Desks\n\nDesks are booked for a week.\n")
    (root / "office" / "c.md").unlink()
    report = ingest(root / "office", settings, embedder=embedder, prune=True)
    assert {f.key: f.outcome for f in report.files} == {"office/a.md": "updated", "office/b.md": "unchanged"}
    assert report.pruned == ["office/c.md"]  # travel.md is outside the folder: not pruned
    assert stored_keys(settings) == ["office/a.md", "office/b.md", "travel.md"]

    one = ingest(root / "office" / "b.md", settings, embedder=embedder)
    assert [(f.key, f.outcome) for f in one.files] == [("office/b.md", "unchanged")]

    with pytest.raises(RootRefused, match=r"holds .*kb, a root of collection .*nothing was done"):
        ingest(tmp_path, replace(settings, pii=False), embedder=embedder, add_root=True)


def test_two_roots_never_replace_each_others_documents(tmp_path, settings, embedder):
    quick = replace(settings, pii=False)
    first = write(tmp_path / "first", {"readme.md": "# First\n\nThe first team's notes.\n"})
    second = write(tmp_path / "second", {"readme.md": "# Second\n\nThe second team's notes.\n"})
    ingest(first, quick, embedder=embedder)
    report = ingest(second, quick, embedder=embedder, add_root=True)
    (outcome,) = report.files
    assert outcome.outcome == "failed" and outcome.reason.startswith(
        f"another root's document has its key ({first}/readme.md)")
    assert report.status == "failed"


def test_a_collection_follows_its_folder_when_the_folder_moved(tmp_path, settings):
    """A moved folder or a new checkout (the old one deleted): its documents keep their keys and
    are found unchanged; a folder beside a root that still exists is still refused."""
    first = write(tmp_path / "checkout-1" / "examples", {"parking.md": "# Parking\n\nVisitors park by the gate.\n",
                                                         "cars/pool.md": "# Pool cars\n\nBook them a day ahead.\n"})
    common = ["--data-dir", str(settings.data_dir), "-c", settings.collection, "--no-pii", "--report"]
    assert run_cli("ingest", str(first), *common, str(tmp_path / "first.json")).returncode == 0
    moved = tmp_path / "checkout-2" / "examples"
    moved.parent.mkdir()
    first.rename(moved)
    followed = run_cli("ingest", str(moved), *common, str(tmp_path / "moved.json"))
    assert followed.returncode == 0, followed.stderr
    assert f"was ingested from {first}, which is gone: {moved} takes its place" in followed.stderr
    report = json.loads((tmp_path / "moved.json").read_text())
    assert {f["key"]: f["outcome"] for f in report["files"]} == {"cars/pool.md": "unchanged",
                                                                 "parking.md": "unchanged"}
    assert stored_keys(settings) == ["cars/pool.md", "parking.md"]
    listed = pgkb("collections", "--json", env={"PGKB_DATA_DIR": str(settings.data_dir)})
    (collection,) = [c for c in json.loads(listed.stdout) if c["name"] == settings.collection]
    assert collection["roots"] == [str(moved)]
    # Pruning follows too: a file deleted in the moved folder goes, by its old key.
    (moved / "parking.md").unlink()
    assert run_cli("ingest", str(moved), *common, str(tmp_path / "pruned.json"), "--prune",
                   "--yes").returncode == 0
    assert stored_keys(settings) == ["cars/pool.md"]
    beside = write(tmp_path / "elsewhere", {"bikes.md": "# Bikes\n\nRacks behind building B.\n"})
    assert run_cli("ingest", str(beside), *common, str(tmp_path / "beside.json")).returncode == 2
