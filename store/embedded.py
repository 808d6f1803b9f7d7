"""The embedded PostgreSQL (the `pgserver` package: PostgreSQL 16 + pgvector 0.6.2).

Several processes may share one data directory: pgserver starts the server once, under an
inter-process lock, and the last process to exit stops it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import psutil

from .errors import StoreError

log = logging.getLogger(__name__)

SERVER_USER = "pgserver"  # pgserver's name for the user it runs PostgreSQL as under root


def embedded_database_url(data_dir: Path) -> str:
    """Start (or attach to) the embedded server in `data_dir` and return its SQLAlchemy URL."""
    with warnings.catch_warnings():  # pgserver warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver.postgres_server import PostgresServer

    pgdata = Path(data_dir).expanduser().resolve() / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with PostgresServer._lock:
        _ensure_server_user()
        _forget_dead_processes(pgdata)
    log.debug("embedded PostgreSQL in %s", pgdata)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise StoreError(
            f"the embedded PostgreSQL could not start in {pgdata} ({type(exc).__name__}: {exc}); "
            f"its log is {pgdata / 'log'}; or set DATABASE_URL to use another server"
        ) from exc
    _size_to_machine(server, pgdata)
    # pgserver gives a libpq URI over a Unix socket; SQLAlchemy wants its driver named.
    return server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)


def _ensure_server_user() -> None:
    """Create the system user the embedded server runs as under root, if it is missing.

    PostgreSQL refuses to run as root, so as root pgserver runs it as a user "pgserver", which
    it creates with the `useradd` found on PATH. A root shell with a bare PATH (cron's is
    /usr/bin:/bin) has no /usr/sbin, where `useradd` lives: look there too.
    """
    if os.name != "posix" or os.geteuid() != 0:
        return
    import pwd

    try:
        pwd.getpwnam(SERVER_USER)
        return
    except KeyError:
        pass
    why = f"running as root, the embedded PostgreSQL runs as a system user {SERVER_USER!r}"
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if useradd is None:
        raise StoreError(f"{why}, and `useradd` was not found to create it: create that user, run pgkb "
                         "as another user, or set DATABASE_URL to use another server")
    created = subprocess.run([useradd, "-s", "/bin/bash", SERVER_USER], capture_output=True, text=True)
    if created.returncode != 0:
        raise StoreError(f"{why}, and `useradd` could not create it: {created.stderr.strip()}")
    log.info("created the system user %r for the embedded PostgreSQL (running as root)", SERVER_USER)


def server_memory_settings(total_memory: int) -> dict[str, str]:
    """Memory settings for a server sharing the machine with pgkb and its model.

    PostgreSQL's defaults (128 MB of shared buffers, 64 MB to build an index) are far below what
    one collection's HNSW index, chunks and tsvectors take: at 100,000 chunks about 500 MB,
    re-read from the OS on every search. An eighth of the memory (between 128 MB and 2 GB) holds
    that; shared memory is only taken as it is used.
    """
    mb = total_memory // 2**20
    return {"shared_buffers": f"{min(max(mb // 8, 128), 2048)}MB",
            "maintenance_work_mem": f"{min(max(mb // 16, 64), 1024)}MB"}


def _size_to_machine(server, pgdata: Path) -> None:
    """Write the memory settings into the data directory once. Shared buffers take effect when
    the server starts: at once if this process is its only user (a new data directory),
    otherwise the next time (it stops when the last process using it exits)."""
    wanted = server_memory_settings(psutil.virtual_memory().total)
    current = (pgdata / "postgresql.auto.conf").read_text()
    if all(f"{name} = '{value}'" in current for name, value in wanted.items()):
        return
    server.psql("".join(f"ALTER SYSTEM SET {name} = '{value}';\n" for name, value in wanted.items())
                + "SELECT pg_reload_conf();\n")
    described = ", ".join(f"{name} {value}" for name, value in wanted.items())
    from pgserver._commands import pg_ctl
    from pgserver.postgres_server import PostgresServer, PostmasterInfo

    with PostgresServer._lock:  # no other process attaches meanwhile
        users = json.loads((pgdata / ".handle_pids.json").read_text() or "[]")
        if users != [os.getpid()]:
            log.info("embedded PostgreSQL sized to this machine (%s); shared buffers apply from its next start",
                     described)
            return
        # pg_ctl restart keeps the options of the last start (postmaster.opts); pgserver must
        # learn the new postmaster, or it would not stop it when this process exits.
        pg_ctl(["-w", "-l", str(pgdata / "log"), "restart", "-m", "fast"], pgdata=pgdata,
               user=server.system_user, timeout=60)
        server._postmaster_info = PostmasterInfo.read_from_pgdata(pgdata)
    log.info("embedded PostgreSQL sized to this machine (%s)", described)


def _forget_dead_processes(pgdata: Path) -> None:
    """Drop processes that died without saying goodbye (kill -9) from pgserver's handle list.

    Otherwise the server is never stopped, since the last live user is never the only one.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    pids = json.loads(handles.read_text() or "[]")
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))
