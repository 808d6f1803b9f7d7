"""The embedded PostgreSQL opens nothing to other local users (issue 28, items 1, 2 and 7).

The attacks are real: another system user runs psql on the server's socket. Creating users
needs root; without it those tests are skipped, and the rest still check the socket folder,
the authentication rules and the role pgkb connects as.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from pgkb.settings import Settings
from store import StoreError
from store.database import resolve_url
from store.embedded import _installation, embedded_database_url, programs_folder, stop_embedded_server

ROOT = Path(__file__).parent.parent
AS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not AS_ROOT, reason="switching to another local user needs root")
LONG_NAME = "a-data-directory-with-a-long-name-" * 3  # past the 107 bytes of a socket's path


@pytest.fixture
def folder():
    """A folder the embedded server's user (pgserver, under root) may pass through."""
    path = Path(tempfile.mkdtemp(prefix="pgkb-embedded-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def system_user(name: str) -> pwd.struct_passwd:
    """A local user for the test, created if it is missing (needs root)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
        if useradd is None:
            pytest.skip("useradd is needed to create a second local user")
        subprocess.run([useradd, "--system", "--shell", "/usr/sbin/nologin", name], check=True)
        return pwd.getpwnam(name)


def socket_dir_of(data_dir: Path) -> Path:
    return Path((data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[4])


def psql_as(user: pwd.struct_passwd, socket_dir: Path, role: str, programs: Path) -> subprocess.CompletedProcess:
    """psql run by another local user against the server's socket, as `role`."""
    return subprocess.run([str(programs / "psql"), "-h", str(socket_dir), "-p", "5432", "-U", role, "-d", "postgres",
                           "-w", "-c", "SELECT current_user"],
                          user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd="/", env={"PATH": os.defpath},
                          capture_output=True, text=True, timeout=30)


def assert_refused(socket_dir: Path, owner: str, programs: Path):
    intruder = system_user("nobody")
    for role in ("postgres", "pgkb", owner, "nobody"):
        attempt = psql_as(intruder, socket_dir, role, programs)
        assert attempt.returncode != 0, f"user nobody connected as {role}: {attempt.stdout}"
        assert "current_user" not in attempt.stdout


def assert_locked_down(data_dir: Path, url: str):
    socket_dir = socket_dir_of(data_dir)
    folder = socket_dir.lstat()
    assert stat.S_ISDIR(folder.st_mode) and stat.S_IMODE(folder.st_mode) == 0o700, oct(folder.st_mode)
    assert folder.st_uid == (data_dir / "pgdata").stat().st_uid  # the server's user
    rules = [line.split() for line in (data_dir / "pgdata" / "pg_hba.conf").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules == [["local", "all", "all", "peer", "map=pgkb"]]
    with create_engine(url).connect() as conn:
        role, superuser = conn.execute(text("SELECT current_user, rolsuper FROM pg_roles "
                                            "WHERE rolname = current_user")).one()
    assert (role, superuser) == ("pgkb", False)
    return socket_dir


@pytest.mark.parametrize("name", ["data", LONG_NAME])
def test_pgkb_as_root_serves_no_other_local_user(folder, name):
    data_dir = folder / name
    url = embedded_database_url(data_dir)
    try:
        socket_dir = assert_locked_down(data_dir, url)
        assert (socket_dir == data_dir / "pgdata") == (name == "data")  # a long path: a private temporary folder
        if AS_ROOT:
            assert_refused(socket_dir, "root", programs_folder(data_dir))
    finally:
        stop_embedded_server(data_dir)
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()
    assert socket_dir == data_dir / "pgdata" or not socket_dir.exists()  # the temporary folder goes with it


@needs_root
@pytest.mark.parametrize("name", ["data", LONG_NAME])
def test_pgkb_as_another_user_serves_no_other_local_user(folder, name):
    owner = system_user("pgkb-test-owner")
    reachable = subprocess.run(["test", "-x", sys.executable], user=owner.pw_uid, group=owner.pw_gid)
    if reachable.returncode != 0:
        pytest.skip(f"{owner.pw_name} cannot run {sys.executable}")
    data_dir = folder / name
    folder.chmod(0o777)  # the owner creates its data directory here
    script = ("import sys; from store.embedded import embedded_database_url; "
              f"print(embedded_database_url({str(data_dir)!r}), flush=True); sys.stdin.read()")
    server = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, user=owner.pw_uid, group=owner.pw_gid,
                              extra_groups=[], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={"PATH": os.defpath, "PYTHONPATH": str(ROOT), "HOME": str(folder)})
    try:
        url = server.stdout.readline()
        assert url.startswith("postgresql+psycopg://pgkb@"), url
        socket_dir = socket_dir_of(data_dir)
        assert socket_dir.stat().st_uid == owner.pw_uid and stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
        assert_refused(socket_dir, owner.pw_name, _installation() / "bin")
    finally:
        server.communicate("", timeout=60)  # the server stops when its only user leaves
    assert server.returncode == 0
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()


@needs_root
def test_root_changes_no_permissions_outside_what_it_creates(folder):
    private = folder / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(StoreError, match=r"may not enter .*private \(mode 0700\).*PGKB_DATA_DIR"):
        embedded_database_url(private / "kb")
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert not (private / "kb").exists()

    narrow = folder / "narrow"  # passable, not listable: enough, and left as it is
    narrow.mkdir()
    narrow.chmod(0o711)
    os.umask(old := os.umask(0o077))  # pgkb's own folders are passable whatever the umask
    try:
        embedded_database_url(narrow / "new" / "kb")
    finally:
        os.umask(old)
        stop_embedded_server(narrow / "new" / "kb")
    assert stat.S_IMODE(narrow.stat().st_mode) == 0o711
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


@pytest.mark.parametrize("users", ["", "{not json", json.dumps([[1, 2, 3]])])
def test_an_empty_or_corrupt_list_of_users_means_none(folder, users):
    data_dir = folder / "kb"
    data_dir.mkdir()
    (data_dir / "server-users.json").write_text(users)
    engine = create_engine(embedded_database_url(data_dir))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()
    stop_embedded_server(data_dir)  # the only live user leaves: the server stops
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()


def test_a_data_directory_with_spaces_and_quotes_starts(folder):
    data_dir = folder / "my knowledge, base's" / "kb"
    engine = create_engine(embedded_database_url(data_dir))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == "pgkb"
    engine.dispose()
    stop_embedded_server(data_dir)


def test_threads_attaching_at_once_share_one_server(folder):
    data_dir = folder / "kb"
    urls, errors = [], []

    def attach():
        try:
            urls.append(embedded_database_url(data_dir))
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=attach) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop_embedded_server(data_dir)
    assert not errors and len(set(urls)) == 1


def test_a_data_directory_of_an_older_pgkb_is_locked_down_and_kept(folder):
    """Made the old way (pgserver's start-up: trust, superuser-owned tables, socket maybe open)."""
    import pgserver

    data_dir = folder / "old"
    (data_dir / "pgdata").parent.mkdir()
    old = pgserver.get_server(data_dir / "pgdata", cleanup_mode=None)
    with psycopg.connect(old.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text, embedding vector(3))")
        conn.execute("INSERT INTO notes (body, embedding) VALUES ('kept', '[1,2,3]')")
    # The old server is still running, open to trust: the new start replaces it.
    url = resolve_url(Settings(data_dir=data_dir))
    try:
        assert_locked_down(data_dir, url)
        with create_engine(url).begin() as conn:
            assert conn.execute(text("SELECT body FROM notes")).scalar() == "kept"
            conn.execute(text("INSERT INTO notes (body) VALUES ('written by pgkb')"))  # owns the table now
    finally:
        stop_embedded_server(data_dir)


@needs_root
def test_programs_the_server_user_may_not_reach_are_run_from_a_copy(folder, monkeypatch):
    """A virtualenv in root's private home: pgkb copies PostgreSQL into the data directory
    rather than opening the home's folders."""
    private = folder / "home"
    private.mkdir(mode=0o700)
    site = private / "venv" / "site-packages"  # the package's layout: its programs find their libraries by it
    shutil.copytree(_installation(), site / "pgserver" / "pginstall", symlinks=True)
    shutil.copytree(_installation().parent.parent / "pgserver.libs", site / "pgserver.libs", symlinks=True)
    monkeypatch.setattr("store.embedded._installation", lambda: site / "pgserver" / "pginstall")
    data_dir = folder / "kb"
    engine = create_engine(embedded_database_url(data_dir))
    try:
        assert programs_folder(data_dir).is_relative_to(data_dir / "postgresql")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == "pgkb"
    finally:
        engine.dispose()
        stop_embedded_server(data_dir)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
