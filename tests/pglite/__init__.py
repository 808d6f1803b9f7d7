"""A real PostgreSQL 18 with pgvector 0.8 for the tests, without Docker: PGlite (PostgreSQL
compiled to WebAssembly, from the npm registry) served on loopback by Node.

`serve()` installs the packages pinned in package-lock.json once per machine (`npm ci` into a
cache folder outside the repository, a few seconds), starts server.mjs and yields the
DATABASE_URLs of two databases: "vector" (pgvector 0.8.7 available) and "plain" (no pgvector).

PGlite differs from a PostgreSQL server in two ways that matter here: it is one backend that
serves its clients' transactions one after another, and it does not take COPY FROM STDIN.
"""

from __future__ import annotations

import hashlib
import json
import selectors
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs
import pytest

PACKAGE = Path(__file__).parent
PINNED = ("package.json", "package-lock.json")
START_SECONDS = 120  # compiling PostgreSQL's WebAssembly takes ~10 s on two slow cores
INSTALL_SECONDS = 300


def install() -> Path:
    """The folder holding node_modules for the pinned packages; installed on first use."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.skip(f"the pgvector 0.8 tests run PGlite under Node.js: `{tool}` is not on PATH")
    digest = hashlib.sha256(b"".join((PACKAGE / name).read_bytes() for name in PINNED)).hexdigest()[:16]
    folder = Path(platformdirs.user_cache_dir("pgkb")) / f"pglite-{digest}"
    if (folder / "node_modules").is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Installed beside the final folder and renamed into place: a half-finished install is never used.
    staging = Path(tempfile.mkdtemp(prefix="pglite-install-", dir=folder.parent))
    for name in PINNED:
        shutil.copy(PACKAGE / name, staging / name)
    # legacy-peer-deps: pglite-socket lists every PGlite extension as a peer; only pgvector is needed.
    done = subprocess.run(
        ["npm", "ci", "--legacy-peer-deps", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=staging, capture_output=True, text=True, timeout=INSTALL_SECONDS,
    )
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.skip(f"npm could not install PGlite from the registry (npm ci exit {done.returncode}): "
                    f"{done.stderr.strip()[-500:]}")
    try:
        staging.rename(folder)
    except OSError:  # another test process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return folder


@contextmanager
def serve() -> Iterator[dict[str, str]]:
    """DATABASE_URLs of the "vector" and "plain" databases, for as long as the block runs."""
    folder = install()
    # Node resolves the packages next to the script, so the script runs from the install folder.
    shutil.copy(PACKAGE / "server.mjs", folder / "server.mjs")
    log = tempfile.TemporaryFile(mode="w+")
    server = subprocess.Popen(["node", "server.mjs"], cwd=folder, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        ports = _read_ports(server, log)
        yield {name: f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
               for name, port in ports.items()}
    finally:
        server.stdin.close()  # server.mjs stops when its stdin closes
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
        log.close()


def _read_ports(server: subprocess.Popen, log) -> dict[str, int]:
    """The ports server.mjs prints once it listens; its log if it dies or hangs first."""
    with selectors.DefaultSelector() as selector:
        selector.register(server.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=START_SECONDS)
    line = server.stdout.readline() if ready else ""
    if not line:
        server.kill()
        server.wait()
        log.seek(0)
        raise RuntimeError(f"the PGlite server did not start within {START_SECONDS} s:\n{log.read()[-2000:]}")
    return json.loads(line)
