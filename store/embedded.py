"""The embedded PostgreSQL (the `pgserver` package: PostgreSQL 16 + pgvector 0.6.2).

Several processes may share one data directory: pgserver starts the server once, under an
inter-process lock, and the last process to exit stops it.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import psutil

from .errors import StoreError

log = logging.getLogger(__name__)


def embedded_database_url(data_dir: Path) -> str:
    """Start (or attach to) the embedded server in `data_dir` and return its SQLAlchemy URL."""
    with warnings.catch_warnings():  # pgserver warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver.postgres_server import PostgresServer

    pgdata = Path(data_dir).expanduser().resolve() / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with PostgresServer._lock:
        _forget_dead_processes(pgdata)
    log.debug("embedded PostgreSQL in %s", pgdata)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise StoreError(
            f"the embedded PostgreSQL could not start in {pgdata} ({type(exc).__name__}); "
            f"its log is {pgdata / 'log'}; or set DATABASE_URL to use another server"
        ) from exc
    # pgserver gives a libpq URI over a Unix socket; SQLAlchemy wants its driver named.
    return server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)


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
