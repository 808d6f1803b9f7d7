"""A real `pgkb serve` process for the tests of the HTTP API, MCP and the integrations: a
collection with documents of three readerships, keys of every kind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ingest import ingest
from pgkb.settings import Settings
from store import Store
from tests.conftest import HANDBOOK_SECTIONS, POLICY_SECTIONS, ROOT
from tests.documents import write_docx, write_pdf

COLLECTION = "served"


class Server:
    """`pgkb serve` in its own process, on a free loopback port."""

    def __init__(self, data_dir: Path, log: Path, *flags: str):
        script = Path(sys.executable).parent / "pgkb"
        self.log = log
        self.process = subprocess.Popen(
            [str(script), "serve", "--port", "0", "--data-dir", str(data_dir), *flags],
            stdout=subprocess.DEVNULL, stderr=open(log, "w"), cwd=ROOT, env=os.environ.copy())
        deadline = time.monotonic() + 120
        while not (found := re.search(r"serving on (http://127\.0\.0\.1:\d+)", log.read_text())):
            assert self.process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        self.url = found.group(1)
        while True:  # the application's start (the store opened) follows the socket's
            try:
                if httpx.get(f"{self.url}/v1/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def stop(self) -> bool:
        """SIGTERM, as docker stop sends: whether the server finished its requests and shut down
        (uvicorn then ends by the signal, as a process told to stop does)."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        return "Application shutdown complete" in self.log.read_text()


@pytest.fixture(scope="module")
def served(data_dir, tmp_path_factory, embedder):
    """A collection ingested from a folder: a legal-only PDF, an HR-only DOCX, a public DOCX;
    keys of every kind; the server."""
    folder = tmp_path_factory.mktemp("served")
    (folder / "legal").mkdir()
    write_pdf(folder / "legal" / "travel-policy.pdf", "Travel Policy", POLICY_SECTIONS)
    (folder / "legal" / "pgkb.toml").write_text('[metadata]\naccess = ["legal"]\ndepartment = "legal"\n')
    (folder / "hr").mkdir()
    write_docx(folder / "hr" / "salaries.docx", "Salary bands", [
        (1, "Salary bands", ["The salary band for engineers is reviewed every spring; the merger bonus is "
                             "ten percent of the annual salary."])])
    (folder / "hr" / "salaries.docx.meta.json").write_text(json.dumps({"access": "hr", "secret_project": "falcon"}))
    write_docx(folder / "handbook.docx", "Staff Handbook", HANDBOOK_SECTIONS)
    settings = Settings(data_dir=data_dir, collection=COLLECTION)
    report = ingest(folder, settings, embedder=embedder)
    assert report.count("ingested") + report.count("unchanged") == 3, report.to_dict()
    store = Store.open(settings)
    keys = {
        "legal": store.create_key("legal reader", "read", [COLLECTION], ["legal"]).secret,
        "hr": store.create_key("hr reader", "read", [COLLECTION], ["hr"]).secret,
        "nobody": store.create_key("no groups", "read", [COLLECTION], []).secret,
        "ingest": store.create_key("legal uploader", "ingest", [COLLECTION], ["legal"]).secret,
        "admin": store.create_key("admin", "admin", [COLLECTION], []).secret,
        "other": store.create_key("another collection", "admin", ["elsewhere"], ["legal", "hr"]).secret,
    }
    revoked = store.create_key("revoked", "admin", [COLLECTION], ["hr"])
    store.revoke_key(revoked.key.id)
    keys["revoked"] = revoked.secret
    store.close()
    log = tmp_path_factory.mktemp("server-log") / "server.log"
    server = Server(data_dir, log, "--max-upload-files", "4", "--max-request-bytes", "65536",
                    "--max-upload-bytes", "3000000")
    with server.client(keys["admin"]) as admin:  # the model loads with the first search: not in a test's time
        assert admin.post(f"/v1/collections/{COLLECTION}/search", json={"query": "warm up"}).status_code == 200
    yield server, keys, settings
    assert server.stop(), log.read_text()
    # Each module that uses the server starts from the same collection (ingested from its own folder).
    store = Store.open(settings)
    try:
        store.drop_collection(COLLECTION)
    finally:
        store.close()
