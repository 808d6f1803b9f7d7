"""`ingest --engine ray` on a real local Ray cluster (2 CPUs, on 127.0.0.1) gives what the
local engine gives: the same documents, chunk texts, vectors and report outcomes, also after
a re-run, a changed file, a failing file, and a Ray worker process killed in the middle of a run.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import threading

import psutil
import pytest
from sqlalchemy import create_engine

from ingest import ingest
from ingest.report import UNCHANGED_SINCE
from pgkb.settings import Settings
from store import resolve_url
from tests.conftest import HANDBOOK_SECTIONS, POLICY_SECTIONS, ROOT
from tests.documents import write_docx, write_pdf
from tests.test_crash_safety import assert_same, snapshot
from tests.test_formats import write_eml

# Before ray is imported: its cluster binds 127.0.0.1, not the machine's outward address, and reports nothing.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray")

TOPICS = ["parking", "lockers", "canteen", "badges"]


@pytest.fixture(scope="module")
def cluster(blocked_log):
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    _forget_ray_cloud_probe(blocked_log)


def _forget_ray_cloud_probe(blocked_log) -> None:
    """Ray's head (its usage-stats module, ray/_common/usage/usage_lib.py) asks the cloud
    metadata address which cloud it runs on, whatever RAY_USAGE_STATS_ENABLED says; the guard
    refuses it. That attempt alone is Ray's, not pgkb's, and is not counted against the test."""
    entries = blocked_log.read_text().split("\npid ")
    kept = [entry for entry in entries if entry.strip() and "usage_lib.py" not in entry]
    blocked_log.write_text("\npid ".join(kept))


@pytest.fixture(autouse=True)
def no_ray_cloud_probe(blocked_log):
    yield
    _forget_ray_cloud_probe(blocked_log)


@pytest.fixture
def corpus(tmp_path):
    """Eight documents of their own text, a message with one of them attached, and a PDF that is not one."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i, topic in enumerate(TOPICS):
        sections = [(1, f"{topic.title()} rules {i}", [f"Rule {i}.{n}: the {topic} policy says item {n} applies "
                                                        f"on floor {n + i} from {8 + n}:00." for n in range(6)])]
        write_pdf(folder / f"{i:02d}-{topic}.pdf", f"{topic.title()} {i}", POLICY_SECTIONS + sections)
        write_docx(folder / f"{i:02d}-{topic}.docx", f"Handbook {i}", HANDBOOK_SECTIONS + sections)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 200)
    # An attachment is a file of the driver's own (taken out of the message): it travels as bytes.
    write_eml(folder / "mail.eml", {"attached.pdf": (folder / "00-parking.pdf").read_bytes()})
    return folder


@pytest.fixture
def db(data_dir):
    engine = create_engine(resolve_url(Settings(data_dir=data_dir)))
    yield engine
    engine.dispose()


def run(folder, data_dir, collection: str, engine: str, **kwargs):
    # float32: vectors agree to the fifth decimal whatever batches the texts fell in.
    settings = Settings(data_dir=data_dir, collection=collection, precision="float32", batch_tokens=512)
    return ingest(folder, settings, engine=engine, **kwargs)


def outcomes(report) -> list[tuple]:
    return [(f.key, f.outcome, f.reason, f.chunks, f.pages, f.pii_counts) for f in report.files]


def test_ray_gives_what_the_local_engine_gives_then_skips_updates_and_fails_alike(cluster, corpus, data_dir, db):
    local, on_ray = run(corpus, data_dir, "ray_local", "local"), run(corpus, data_dir, "ray_ray", "ray")

    assert outcomes(on_ray) == outcomes(local)
    assert on_ray.counts()["failed"] == 1 and on_ray.counts()["ingested"] == 10
    assert_same(snapshot(db, "ray_ray"), snapshot(db, "ray_local"))

    again = run(corpus, data_dir, "ray_ray", "ray")
    assert {f.outcome for f in again.files} == {"unchanged", "failed"}
    assert [f.reason for f in again.failed] == [f"{local.failed[0].reason}{UNCHANGED_SINCE}"]

    write_docx(corpus / "01-lockers.docx", "Handbook 1", HANDBOOK_SECTIONS + [(1, "New", ["Lockers close at 20:00."])])
    changed_local, changed_ray = run(corpus, data_dir, "ray_local", "local"), run(corpus, data_dir, "ray_ray", "ray")
    assert [f.key for f in changed_ray.files if f.outcome == "updated"] == ["01-lockers.docx"]
    assert outcomes(changed_ray) == outcomes(changed_local)
    assert_same(snapshot(db, "ray_ray"), snapshot(db, "ray_local"))


def test_a_worker_killed_mid_run_then_a_rerun_finishes_the_job(cluster, corpus, data_dir, db):
    run(corpus, data_dir, "ray_kill_local", "local")
    killed: list[int] = []
    lock = threading.Lock()

    def kill_a_parsing_worker(outcome, report) -> None:
        with lock:
            if killed:
                return
            for process in psutil.process_iter(["pid", "cmdline"]):
                if "ray::_cut_task" in " ".join(process.info["cmdline"] or ()):
                    process.kill()
                    killed.append(process.info["pid"])
                    return

    first = run(corpus, data_dir, "ray_kill_ray", "ray", on_file=kill_a_parsing_worker)
    assert killed, "no parsing task was running to be killed"
    assert [f.key for f in first.failed] == ["broken.pdf"]  # Ray ran the killed worker's task again
    rerun = run(corpus, data_dir, "ray_kill_ray", "ray")
    assert {f.outcome for f in rerun.files} <= {"unchanged", "failed", "ingested"}
    assert_same(snapshot(db, "ray_kill_ray"), snapshot(db, "ray_kill_local"))


def test_the_cluster_listens_on_loopback_only(cluster):
    listening = {c.laddr.ip for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN
                 and c.pid in _ray_pids()}
    assert listening and all(_loopback(ip) for ip in listening), listening


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def _ray_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["cmdline"]) if "ray" in " ".join(p.info["cmdline"] or ())}


def test_the_command_runs_on_a_cluster_at_an_address(cluster, corpus, data_dir):
    done = subprocess.run(
        [sys.executable, "-m", "ingest", str(corpus), "--quiet", "--engine", "ray", "--ray-address", cluster],
        env={**os.environ, "PGKB_DATA_DIR": str(data_dir), "PGKB_COLLECTION": "ray_cli", "RAY_AUTH_MODE": "token"},
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 1, done.stderr  # broken.pdf failed anew
    assert "10 ingested" in done.stdout and "broken.pdf" in done.stdout, done.stdout


def test_without_ray_the_engine_says_what_to_install(corpus, data_dir):
    code = ("import sys; sys.modules['ray'] = None; from ingest.cli import main; "
            f"sys.exit(main([{str(corpus)!r}, '--engine', 'ray']))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PGKB_DATA_DIR": str(data_dir)},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2
    assert "pip install 'pgkb[ray]'" in done.stderr and "Traceback" not in done.stderr
