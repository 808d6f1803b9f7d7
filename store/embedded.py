"""The embedded PostgreSQL: pgserver's PostgreSQL 16 + pgvector 0.6.2 programs, run by pgkb.

pgkb starts and stops the server itself rather than through pgserver's start-up, which sets
up every cluster with `trust` authentication and, as root, places the socket in a
world-writable folder and opens the data directory's parents to everyone. Here:

- the socket lives in a folder only the server's user may enter: the data directory itself,
  or, when that path is too long for a socket's name, a private temporary folder; no TCP;
- authentication is `peer`: only the system user running pgkb (and the server's own user)
  may connect, mapped to the role `pgkb`, which owns pgkb's database but is no superuser;
- PostgreSQL refuses to run as root, so as root it runs as the system user `pgserver`
  without root's groups. pgkb never changes permissions outside what it creates: when that
  user cannot reach the data directory, pgkb says so and stops.

Several processes may share one data directory: the first starts the server under a file
lock, each notes itself in `server-users.json`, and the last to leave stops the server.
"""

from __future__ import annotations

import atexit
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from pgkb.errors import ConfigurationError

from .errors import StoreError

log = logging.getLogger(__name__)

SERVER_USER = "pgserver"  # the system user PostgreSQL runs as when pgkb runs as root
ROLE = "pgkb"  # the role pgkb's connections use: owns the database, no superuser
SUPERUSER = "postgres"  # the cluster's bootstrap superuser, for setting the server up only
DATABASE = "postgres"
PORT = 5432
SOCKET_PATH_MAX = 107  # bytes in a Unix socket's path, less the final NUL
SOCKET_NAME = f".s.PGSQL.{PORT}"
SETTINGS_FILE = "pgkb.conf"  # written into the data directory at every start

_servers: dict[Path, EmbeddedServer] = {}
_servers_lock = threading.Lock()  # threads of one process attach once


def embedded_database_url(data_dir: Path) -> str:
    """Start (or attach to) the embedded server in `data_dir` and return its SQLAlchemy URL."""
    data_dir = Path(data_dir).expanduser().resolve()
    with _servers_lock:
        if data_dir not in _servers:
            _servers[data_dir] = EmbeddedServer.attach(data_dir)
        return _servers[data_dir].url


def stop_embedded_server(data_dir: Path) -> None:
    """Leave the embedded server in `data_dir` now; it stops if no other process uses it."""
    with _servers_lock:
        server = _servers.pop(Path(data_dir).expanduser().resolve(), None)
    if server is not None:
        server.leave()


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


@dataclass(frozen=True)
class ServerAccount:
    """The system user PostgreSQL runs as: this process's own, or `pgserver` under root."""

    name: str
    uid: int
    gid: int

    @classmethod
    def for_this_process(cls) -> ServerAccount:
        if os.geteuid() != 0:
            entry = pwd.getpwuid(os.geteuid())
        else:
            entry = _server_user_entry()
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    @property
    def is_other_user(self) -> bool:
        return self.uid != os.geteuid()

    def run(self, args: list[str], *, cwd: Path, timeout: float = 120) -> str:
        """Run one of PostgreSQL's programs as this user, with its own group only and a bare
        environment (pgkb's may hold keys); return its output, or raise with it."""
        other = self.is_other_user  # else None, the default: our own user and groups
        environment = {"PATH": os.defpath, "LC_ALL": "C", "HOME": str(cwd)}
        # Output to a file, not a pipe: the server started by pg_ctl would keep a pipe open.
        with tempfile.TemporaryFile("w+") as output:
            done = subprocess.run(args, cwd=cwd, env=environment, stdin=subprocess.DEVNULL, stdout=output,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                  user=self.uid if other else None, group=self.gid if other else None,
                                  extra_groups=[] if other else None)
            output.seek(0)
            text = output.read()
        if done.returncode != 0:
            raise StoreError(f"{Path(args[0]).name} failed in {cwd}: {text.strip()[-2000:]}")
        return text

    def own(self, path: Path) -> None:
        """Give a file or folder pgkb created to this user."""
        if self.is_other_user:
            os.chown(path, self.uid, self.gid)

    def blocked_at(self, path: Path) -> Path | None:
        """The first folder on the way to `path` this user may not enter, if any."""
        if not self.is_other_user:
            return None
        for folder in [*reversed(path.parents), path]:
            if not folder.is_dir():
                return None  # missing: pgkb creates the rest, reachable; a file: making the folder says so
            mode = folder.stat()
            if mode.st_uid == self.uid:
                allowed = mode.st_mode & stat.S_IXUSR
            elif mode.st_gid == self.gid:
                allowed = mode.st_mode & stat.S_IXGRP
            else:
                allowed = mode.st_mode & stat.S_IXOTH
            if not allowed:
                return folder
        return None


@dataclass
class EmbeddedServer:
    """This process's use of the server in one data directory."""

    data_dir: Path
    account: ServerAccount
    programs: Path  # the folder of PostgreSQL's programs the server runs from
    url: str

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @classmethod
    def attach(cls, data_dir: Path) -> EmbeddedServer:
        account = ServerAccount.for_this_process()
        pgdata = data_dir / "pgdata"
        _refuse_unreachable(account, data_dir)
        _make_data_dir(data_dir, account)
        with _file_lock(data_dir / "server.lock"):
            programs = _programs(account, data_dir)
            socket_dir = _running_socket_dir(pgdata)
            if socket_dir is None:
                if not (pgdata / "PG_VERSION").exists():
                    _create_cluster(pgdata, account, programs)
                socket_dir = _start(pgdata, account, programs)
                _prepare_database(socket_dir)
            _ServerUsers(data_dir).add(os.getpid())
        url = URL.create("postgresql+psycopg", username=ROLE, database=DATABASE,
                         query={"host": str(socket_dir), "port": str(PORT)})
        server = cls(data_dir, account, programs, url.render_as_string(hide_password=False))
        atexit.register(server.leave)
        log.debug("embedded PostgreSQL in %s, socket in %s", pgdata, socket_dir)
        return server

    def leave(self) -> None:
        """Note that this process is done; the last process to leave stops the server."""
        atexit.unregister(self.leave)
        if not self.data_dir.exists():
            return  # removed under the server, which stops by itself when it finds its lock file gone
        with _file_lock(self.data_dir / "server.lock"):
            if _ServerUsers(self.data_dir).remove(os.getpid()):
                return
            socket_dir = _running_socket_dir(self.pgdata, only_ours=False)
            if socket_dir is None:
                return
            try:
                self.account.run([str(self.programs / "pg_ctl"), "-D", str(self.pgdata), "-w", "-t", "60",
                                  "-m", "fast", "stop"], cwd=self.pgdata)
            except (StoreError, subprocess.TimeoutExpired) as exc:
                log.warning("the embedded PostgreSQL in %s did not stop: %s", self.pgdata, exc)
                return
            if socket_dir != self.pgdata:
                shutil.rmtree(socket_dir, ignore_errors=True)


# -- starting ----------------------------------------------------------------------------


def _create_cluster(pgdata: Path, account: ServerAccount, programs: Path) -> None:
    """initdb into a new data directory owned by the server's user."""
    pgdata.mkdir(mode=0o700, exist_ok=True)
    account.own(pgdata)
    log.info("creating the embedded PostgreSQL in %s", pgdata)
    account.run([str(programs / "initdb"), "-D", str(pgdata), "-U", SUPERUSER, "--encoding=UTF8", "--no-locale",
                 "--auth-local=peer", "--auth-host=reject"], cwd=pgdata)


def _start(pgdata: Path, account: ServerAccount, programs: Path) -> Path:
    """Write pgkb's access rules and settings into the data directory, start the server, and
    return its socket's folder. Written at every start, so older clusters get them too."""
    socket_dir = _socket_dir(pgdata, account)
    client = pwd.getpwuid(os.geteuid()).pw_name
    _write_config(pgdata / "pg_hba.conf", account,
                  "# Written by pgkb at every start: local connections of the mapped users only, no TCP.\n"
                  "local all all peer map=pgkb\n")
    mapped = [(client, ROLE), (client, SUPERUSER), (account.name, ROLE), (account.name, SUPERUSER)]
    _write_config(pgdata / "pg_ident.conf", account,
                  "# Written by pgkb at every start: who may connect as which role.\n"
                  + "".join(f"pgkb {user} {role}\n" for user, role in dict.fromkeys(mapped)))
    settings = {"listen_addresses": "", "port": str(PORT), "unix_socket_directories": _socket_setting(socket_dir),
                "unix_socket_permissions": "0700", **server_memory_settings(psutil.virtual_memory().total)}
    _write_config(pgdata / SETTINGS_FILE, account,
                  "# Written by pgkb at every start (store/embedded.py); edits here are lost.\n"
                  + "".join(f"{name} = {_config_value(value)}\n" for name, value in settings.items()))
    main_config = pgdata / "postgresql.conf"
    if f"include_if_exists = '{SETTINGS_FILE}'" not in main_config.read_text():
        with main_config.open("a") as config:
            config.write(f"\ninclude_if_exists = '{SETTINGS_FILE}'\n")
    try:
        account.run([str(programs / "pg_ctl"), "-D", str(pgdata), "-l", str(pgdata / "log"), "-w", "-t", "60",
                     "start"], cwd=pgdata)
    except (StoreError, subprocess.TimeoutExpired) as exc:
        raise StoreError(f"the embedded PostgreSQL could not start in {pgdata} ({exc}); its log is "
                         f"{pgdata / 'log'}; or set DATABASE_URL to use another server") from None
    log.debug("embedded PostgreSQL started: %s", ", ".join(f"{k} {v}" for k, v in settings.items()))
    return socket_dir


def _socket_dir(pgdata: Path, account: ServerAccount) -> Path:
    """The data directory when a socket's path fits in it, else a new private folder (0700,
    a random name, so no other user can have made it first) in a short temporary folder.
    A comma or double quote would split the path in libpq's and PostgreSQL's lists."""
    if len(os.fsencode(pgdata / SOCKET_NAME)) <= SOCKET_PATH_MAX and not {",", '"'} & set(str(pgdata)):
        return pgdata
    for base in (os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir(), "/tmp"):
        if not base:
            continue
        room = len(os.fsencode(f"{base}/pgkb-12345678/{SOCKET_NAME}"))
        if room <= SOCKET_PATH_MAX and Path(base).is_dir() and account.blocked_at(Path(base)) is None:
            folder = Path(tempfile.mkdtemp(prefix="pgkb-", dir=base))
            account.own(folder)
            return folder
    raise StoreError(f"the data directory {pgdata.parent} is too long a path for PostgreSQL's socket, and no "
                     "short temporary folder is usable: choose a shorter PGKB_DATA_DIR")


def _prepare_database(socket_dir: Path) -> None:
    """Create the role pgkb connects as and hand it pgkb's database and objects.

    Through the superuser, once per start. pgvector is created in template1 too, so that
    databases pgkb's role creates (tests, benchmarks) have it without a superuser.
    """
    def connect(database: str) -> psycopg.Connection:
        return psycopg.connect(host=str(socket_dir), port=PORT, user=SUPERUSER, dbname=database, autocommit=True)

    role = sql.Identifier(ROLE)
    with connect("template1") as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE]).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(role))
        conn.execute(sql.SQL("GRANT pg_checkpoint TO {}").format(role))  # benchmarks checkpoint between rounds
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(DATABASE), role))
    with connect(DATABASE) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(role))
        conn.execute(HAND_OVER_OBJECTS)


# Data directories made before pgkb had its own role hold tables owned by the superuser.
# Objects of extensions, and sequences and types that follow their table, are left alone.
HAND_OVER_OBJECTS = f"""
DO $$
DECLARE statement text;
BEGIN
    FOR statement IN
        SELECT format('ALTER %s %s OWNER TO {ROLE}', kind, name)
        FROM (
            SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                  WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END AS kind,
                   c.oid::regclass::text AS name, c.oid, 'pg_class'::regclass AS catalog, c.relowner AS owner
            FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
            UNION ALL
            SELECT 'ROUTINE', p.oid::regprocedure::text, p.oid, 'pg_proc'::regclass, p.proowner
            FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
            UNION ALL
            SELECT 'TYPE', t.oid::regtype::text, t.oid, 'pg_type'::regclass, t.typowner
            FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd')
        ) AS object
        WHERE owner <> '{ROLE}'::regrole
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = object.catalog AND d.objid = object.oid
                                                    AND d.deptype IN ('e', 'a', 'i'))
    LOOP
        EXECUTE statement;
    END LOOP;
END $$
"""


# -- the running server ------------------------------------------------------------------


def _running_socket_dir(pgdata: Path, only_ours: bool = True) -> Path | None:
    """The socket folder of the server running on `pgdata`, if one is.

    With `only_ours`, a server pgkb did not start with its own settings (one from an older
    pgkb, through pgserver, whose socket may be open to all) is stopped and None returned,
    so that it starts again with them.
    """
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, socket_dir = int(lines[0]), Path(lines[4])
        alive = psutil.Process(pid).is_running() and psutil.Process(pid).name() == "postgres"
    except (OSError, IndexError, ValueError, psutil.Error):
        return None
    if not alive:
        return None
    if not only_ours or _started_by_pgkb(pgdata, socket_dir):
        return socket_dir
    log.warning("restarting the embedded PostgreSQL in %s to apply pgkb's access rules", pgdata)
    os.kill(pid, 2)  # SIGINT: PostgreSQL's fast shutdown
    try:
        psutil.Process(pid).wait(60)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        raise StoreError(f"the embedded PostgreSQL in {pgdata} (pid {pid}) did not stop to take pgkb's "
                         "access rules; stop it and run again") from None
    return None


def _started_by_pgkb(pgdata: Path, socket_dir: Path) -> bool:
    """Whether the server's socket is where pgkb's settings put it, in a private folder."""
    try:
        settings = (pgdata / SETTINGS_FILE).read_text()
        folder = socket_dir.lstat()
    except OSError:
        return False
    return (f"unix_socket_directories = {_config_value(_socket_setting(socket_dir))}" in settings
            and stat.S_ISDIR(folder.st_mode) and folder.st_mode & 0o077 == 0)


class _ServerUsers:
    """The processes using the server, in a JSON list of [pid, start time] pairs.

    Written atomically; an empty, corrupt or missing file means no processes, and processes
    that died without leaving (kill -9) are dropped, so the server still stops.
    """

    def __init__(self, data_dir: Path):
        self.path = data_dir / "server-users.json"

    def add(self, pid: int) -> None:
        self._write([*self._alive(), _process_identity(pid)])

    def remove(self, pid: int) -> bool:
        """Forget `pid`; whether other processes still use the server."""
        others = [user for user in self._alive() if user[0] != pid]
        self._write(others)
        return bool(others)

    def _alive(self) -> list[list[float]]:
        try:
            users = json.loads(self.path.read_text())
            return [user for user in users if _process_identity(int(user[0])) == [int(user[0]), user[1]]]
        except (OSError, ValueError, TypeError, IndexError):
            return []

    def _write(self, users: list) -> None:
        written = self.path.with_name(self.path.name + ".new")
        written.write_text(json.dumps(users))
        os.replace(written, self.path)


def _process_identity(pid: int) -> list:
    """A pid and its start time: a pid reused by another process is not mistaken for it."""
    try:
        return [pid, psutil.Process(pid).create_time()]
    except psutil.Error:
        return [pid, None]


# -- small helpers -----------------------------------------------------------------------


@contextmanager
def _file_lock(path: Path):
    """An exclusive lock between processes (released by the OS if the holder dies)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def programs_folder(data_dir: Path) -> Path:
    """The folder of PostgreSQL's programs (psql among them) the server in `data_dir` runs
    from, once this process uses that server."""
    return _servers[Path(data_dir).expanduser().resolve()].programs


def _installation() -> Path:
    """The PostgreSQL the pgserver package carries (bin, lib, share); found without importing
    pgserver, whose import sets up its own start-up machinery."""
    package = importlib.util.find_spec("pgserver")
    if package is None or not package.submodule_search_locations:
        raise StoreError("the pgserver package (the embedded PostgreSQL) is not installed: "
                         "reinstall pgkb, or set DATABASE_URL to use another server")
    return Path(package.submodule_search_locations[0]) / "pginstall"


def _programs(account: ServerAccount, data_dir: Path) -> Path:
    """The folder of PostgreSQL's programs the server's user can run: pgserver's own, or, when
    that user may not reach them (a virtualenv in root's private home), a copy pgkb keeps in the
    data directory (about 40 MB, made again when pgserver's changes). The programs find their
    libraries relative to themselves (pgserver.libs beside the package), so the copy keeps
    that layout and runs as is."""
    installed = _installation()
    if account.blocked_at(installed / "bin") is None:
        return installed / "bin"
    copy = data_dir / "postgresql"
    original, copied = installed / "bin" / "postgres", copy / "pgserver" / "pginstall" / "bin" / "postgres"
    if not copied.exists() or (original.stat().st_size, original.stat().st_mtime_ns) != (
            copied.stat().st_size, copied.stat().st_mtime_ns):
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(installed, copy / "pgserver" / "pginstall", symlinks=True)  # modes and times kept
        libraries = installed.parent.parent / "pgserver.libs"
        if libraries.is_dir():
            shutil.copytree(libraries, copy / "pgserver.libs", symlinks=True)
        for folder, _, _ in os.walk(copy):
            os.chmod(folder, 0o755)
        log.info("PostgreSQL's programs copied to %s, where the user %r can run them", copy, account.name)
    return copied.parent


def _make_data_dir(data_dir: Path, account: ServerAccount) -> None:
    """The data directory, made if missing, with the lock file every process takes there: a
    folder that cannot be (a path under a file, /proc, a read-only disk) is the user's to change."""
    try:
        _make_folder(data_dir, account)
        (data_dir / "server.lock").touch()
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        problem = "is not a folder" if data_dir.exists() and not data_dir.is_dir() else (
            f"cannot be made or written in: {exc.strerror or exc}{where}")
        raise ConfigurationError(f"the data directory {data_dir} (--data-dir, PGKB_DATA_DIR) {problem}; "
                                 "choose a folder you can write to") from None


def _make_folder(folder: Path, account: ServerAccount) -> None:
    """Create `folder` and its missing parents; as root, ones the server's user may pass
    through (whatever the umask), since they are pgkb's own."""
    missing = [part for part in [*reversed(folder.parents), folder] if not part.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    if account.is_other_user:
        for part in missing:
            part.chmod(0o755)


def _refuse_unreachable(account: ServerAccount, data_dir: Path) -> None:
    """As root, the server's user must reach the data directory. pgkb changes no permissions
    of folders it did not create, so it can only say so."""
    blocked = account.blocked_at(data_dir)
    if blocked is not None:
        raise StoreError(
            f"running as root, the embedded PostgreSQL runs as the system user {account.name!r}, which may not "
            f"enter {blocked} (mode {stat.S_IMODE(blocked.stat().st_mode):04o}) on the way to the data directory "
            f"({data_dir}): use a data directory it can reach (PGKB_DATA_DIR; the default for root is "
            "/var/lib/pgkb), run pgkb as another user, or set DATABASE_URL to use another server")


def _server_user_entry() -> pwd.struct_passwd:
    """The `pgserver` system user, created (with no login shell) if it is missing.

    A root shell with a bare PATH (cron's is /usr/bin:/bin) has no /usr/sbin, where `useradd`
    lives: look there too.
    """
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    why = f"running as root, the embedded PostgreSQL runs as a system user {SERVER_USER!r}"
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if useradd is None:
        raise StoreError(f"{why}, and `useradd` was not found to create it: create that user, run pgkb "
                         "as another user, or set DATABASE_URL to use another server")
    created = subprocess.run([useradd, "--system", "--user-group", "--shell", "/usr/sbin/nologin", SERVER_USER],
                             capture_output=True, text=True)
    if created.returncode != 0:
        raise StoreError(f"{why}, and `useradd` could not create it: {created.stderr.strip()}")
    log.info("created the system user %r for the embedded PostgreSQL (running as root)", SERVER_USER)
    return pwd.getpwnam(SERVER_USER)


def _write_config(path: Path, account: ServerAccount, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)
    account.own(path)


def _socket_setting(socket_dir: Path) -> str:
    """unix_socket_directories is a list: double quotes keep a path with spaces or commas whole."""
    return f'"{socket_dir}"'


def _config_value(value: str) -> str:
    """A value quoted for postgresql.conf."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
