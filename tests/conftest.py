"""Shared fixtures: the network guard, one embedded PostgreSQL, the offline model, documents.

The whole suite runs with the network unreachable beyond loopback: this process and every
child it starts (through PYTHONPATH's sitecustomize) refuse other connections and record
each attempt; a test during which anything tried fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

NETGUARD = Path(__file__).parent / "netguard"
ROOT = Path(__file__).parent.parent

# Before anything else is imported: every refused attempt, from collection on, is recorded.
BLOCKED_LOG = Path(tempfile.mkdtemp(prefix="pgkb-netguard-")) / "blocked.log"
BLOCKED_LOG.touch()
os.environ["PGKB_NETGUARD_LOG"] = str(BLOCKED_LOG)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), str(ROOT), os.environ.get("PYTHONPATH")]))
from pgkb.settings import Settings  # noqa: E402
from tests.documents import write_docx, write_pdf  # noqa: E402
from tests.netguard import sitecustomize as netguard  # noqa: E402,F401  (installs the guard)

# Fixtures of a running `pgkb serve` (tests/serving.py), for every test module.
pytest_plugins = ["tests.serving"]

# Settings must come from the tests alone, never from the developer's environment.
for name in [n for n in os.environ if n == "DATABASE_URL" or n.startswith("PGKB_")]:
    if name != "PGKB_NETGUARD_LOG":
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def blocked_log() -> Path:
    return BLOCKED_LOG


@pytest.fixture(autouse=True)
def nothing_reaches_the_network(blocked_log: Path):
    """Fails the test if anything tried the network, during it or (first test) at import."""
    yield
    attempts = blocked_log.read_text()
    blocked_log.write_text("")
    assert not attempts, f"something tried to reach the network:\n{attempts}"


@pytest.fixture(scope="session")
def reachable_tmp_path_factory():
    """Makes folders the embedded server's user may pass through. As root, PostgreSQL runs as
    another user, pytest's own temporary folders are private (0700), and pgkb rightly refuses
    to open them; a user would choose such a folder the same way."""
    base = Path(tempfile.mkdtemp(prefix="pgkb-tests-"))
    base.chmod(0o755)
    made = []

    def make(name: str) -> Path:
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
        folder.chmod(0o755)
        made.append(folder)
        return folder

    yield make
    from store.embedded import stop_embedded_server

    for folder in made:
        stop_embedded_server(folder)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir(reachable_tmp_path_factory) -> Path:
    """The data directory of the embedded server most tests share."""
    return reachable_tmp_path_factory("pgkb-data")


@pytest.fixture
def new_data_dir(reachable_tmp_path_factory) -> Path:
    """A data directory of the test's own, for a server of its own."""
    return reachable_tmp_path_factory("pgkb-data")


@pytest.fixture
def settings(data_dir: Path, request) -> Settings:
    """Settings on the shared embedded server, with a collection of the test's own."""
    return Settings(data_dir=data_dir, collection=request.node.name.replace("[", "_").strip("]"))


@pytest.fixture
def store(settings):
    """The store of the shared embedded server, closed after the test."""
    from store import Store

    store = Store.open(settings)
    yield store
    store.close()


@pytest.fixture(scope="session")
def embedder():
    from embedding import load_embedder

    # float32 on any CPU, so that tests can compare vectors to the fifth decimal; bf16 has its own test.
    return load_embedder(precision="float32")


class CountingEmbedder:
    """The real embedder, noting every text that reaches the model."""

    def __init__(self, inner):
        self.inner = inner
        self.embedded: list[str] = []
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed_documents(self, texts):
        self.embedded.extend(texts)
        self.calls += 1
        return self.inner.embed_documents(texts)


POLICY_SECTIONS = [
    (1, "Purpose", ["This policy explains how staff are paid back for the costs of business trips."]),
    (1, "Submitting a claim", [
        "Send your expense claim through the finance portal within 30 days after you come back from "
        "the journey, with a receipt for every cost above 25 euros.",
        "Your manager approves the claim and finance pays it with the next salary.",
    ]),
    (2, "Per diem rates", [
        (("City", "Per diem (EUR)"), ("Berlin", "60"), ("London", "80"), ("Paris", "75")),
    ]),
    (1, "Company cars", [
        "Pool cars are booked in the facilities calendar. Fuel is paid with the fuel card in the glovebox.",
        "Keep the car clean and return the key to reception before 18:00.",
    ]),
]

HANDBOOK_SECTIONS = [
    (1, "Annual leave", [
        "Full-time employees have 25 days of paid holiday each calendar year. Ask your manager in the "
        "HR portal at least two weeks ahead.",
    ]),
    (1, "Remote work", [
        "You may work from home up to three days a week, by agreement with your team.",
        ["Be reachable during core hours.", "Use the VPN for every company system."],
    ]),
]


@pytest.fixture(scope="session")
def docs(tmp_path_factory) -> Path:
    """A folder of real documents: a PDF, a DOCX, a corrupt PDF, an empty DOCX, an unsupported file."""
    folder = tmp_path_factory.mktemp("docs")
    write_pdf(folder / "policy.pdf", "Travel Policy", POLICY_SECTIONS, footer="ACME travel policy",
              page_break_before=["Company cars"])
    write_docx(folder / "handbook.docx", "Staff Handbook", HANDBOOK_SECTIONS)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(2000))
    (folder / "empty.docx").write_bytes(b"")
    (folder / "photo.xyz").write_bytes(b"not a document")
    return folder


def run_cli(command: str, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run an installed console script (`ingest`, `search`) as a user would, under the network guard."""
    script = shutil.which(command, path=str(Path(sys.executable).parent))
    assert script, f"console script {command!r} is not installed next to {sys.executable}"
    return subprocess.run(
        [script, *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=ROOT,
    )
