"""Alembic migrations up and down, on a database of their own in the embedded server; the
embedded server's own settings."""

import subprocess
import sys

import psutil
from sqlalchemy import create_engine, inspect, text

from store import Store, migrate, resolve_url
from tests.conftest import ROOT

TABLES = {"collections", "documents", "chunks", "ingest_runs"}


def _newest_revision() -> str:
    from importlib.resources import files

    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(files("migrations"))).get_current_head()


def test_upgrade_then_alembic_downgrade_base_then_upgrade_again(settings):
    server_url = resolve_url(settings)
    with create_engine(server_url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS pgkb_migrations"))
        conn.execute(text("CREATE DATABASE pgkb_migrations"))
    url = server_url.replace("/postgres?", "/pgkb_migrations?")
    engine = create_engine(url)

    migrate(engine)
    assert TABLES <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == _newest_revision()
        columns = {c["name"]: str(c["type"]) for c in inspect(conn).get_columns("chunks")}
    assert {"embedding", "tsv", "section_path", "page_start", "page_end", "content_hash"} <= set(columns)

    # The alembic command line, as a user runs it from the repository root.
    down = subprocess.run([sys.executable, "-m", "alembic", "downgrade", "base"], cwd=ROOT,
                          env={**__import__("os").environ, "DATABASE_URL": url},
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    engine.dispose()
    assert not TABLES & set(inspect(engine).get_table_names())

    migrate(engine)
    assert TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_the_embedded_server_is_sized_to_the_machine(settings):
    from store.embedded import server_memory_settings

    store = Store.open(settings)
    with store.engine.connect() as conn:
        for name, value in server_memory_settings(psutil.virtual_memory().total).items():
            running = conn.execute(text("SELECT pg_size_bytes(current_setting(:name)) = pg_size_bytes(:value)"),
                                   {"name": name, "value": value}).scalar()
            assert running, (name, value)
    store.close()
    assert server_memory_settings(2 * 2**30) == {"shared_buffers": "256MB", "maintenance_work_mem": "128MB"}
    assert server_memory_settings(64 * 2**30)["shared_buffers"] == "2048MB"
    assert server_memory_settings(512 * 2**20)["shared_buffers"] == "128MB"
