"""Parsing in worker processes, each file under a time limit and a memory limit.

PDF and Office libraries are C code fed with whatever users have on their disks: a file can
make them hang, swallow memory or crash the process. Each file is therefore parsed in a
worker process (ingest.parsers.worker); a worker that overruns its time is killed and
replaced, one that exceeds its memory limit fails that file only, and one that dies takes
nothing but its file with it. Every such end is a ParseError with a reason (timeout, out of
memory, crashed), so the run goes on with the next file. A worker the pool itself stops
(the run is quitting) ends its file in ParseInterrupted instead: no fault of the file.

Workers are fresh interpreters (not forks of this process, which may hold model threads),
started on first use and kept for the next file; they talk over a socket pair.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from pgkb.settings import default

from . import ParsedDocument, ParseError, ParseOptions

# Where the `ingest` package lives, so a worker imports the same code as this process.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class ParseLimits:
    seconds: float = default("parse_seconds")
    memory_mb: int = default("parse_memory_mb")  # the worker's whole address space, the parser libraries included


class ParseInterrupted(BaseException):
    """The pool was closed while the file was being parsed: nothing is known about the file.

    A BaseException, like the KeyboardInterrupt that usually causes it, so that no handler of
    a file's errors records it as the file's failure.
    """


class ParserPool:
    """Up to `workers` files parsed at once, each in its own worker process.

    `parse` may be called from several threads; each call borrows a worker.
    """

    def __init__(self, options: ParseOptions | None = None, limits: ParseLimits | None = None,
                 workers: int = 1):
        self.options = options or ParseOptions()
        self.limits = limits or ParseLimits()
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        for _ in range(workers):
            self._idle.put(None)  # a free slot; its worker starts on first use
        self._workers: set[_Worker] = set()
        self._lock = threading.Lock()

    def parse(self, path: Path, media_type: str) -> ParsedDocument:
        """Parse one file in a worker, or raise ParseError saying why not."""
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive():  # not started yet, or died while idle
                if worker is not None:
                    self._stop(worker)
                worker = self._start()
            return worker.parse(path, media_type, self.limits.seconds)
        finally:
            if worker is not None and not worker.alive():  # timed out, crashed or out of memory
                self._stop(worker)
                worker = None
            self._idle.put(worker)

    def close(self) -> None:
        """Stop every worker; a file being parsed ends in ParseInterrupted."""
        with self._lock:
            workers, self._workers = self._workers, set()
        for worker in workers:
            worker.interrupt()

    def __enter__(self) -> ParserPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> _Worker:
        worker = _Worker(self.options, self.limits.memory_mb)
        with self._lock:
            self._workers.add(worker)
        return worker

    def _stop(self, worker: _Worker) -> None:
        worker.stop()
        with self._lock:
            self._workers.discard(worker)


class _Worker:
    """One worker process and the socket to it."""

    def __init__(self, options: ParseOptions, memory_mb: int):
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingest.parsers.worker", str(theirs.fileno()), str(memory_mb)],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env,
            # A group of its own, so that killing it kills what it started too (a LibreOffice
            # conversion, ingest.parsers.legacy).
            start_new_session=True,
        )
        theirs.close()
        self.connection = Connection(ours.detach())
        self.connection.send(options)  # over the socket, so passwords never show in a process list
        self.interrupted = False  # stopped by the pool, not by its file

    def interrupt(self) -> None:
        """Stop the process for the pool. Its socket is closed by whoever holds the worker
        (closing it under a thread reading it could hand that thread another file's data)."""
        self.interrupted = True
        self._kill()

    def alive(self) -> bool:
        return self.process.poll() is None

    def parse(self, path: Path, media_type: str, seconds: float) -> ParsedDocument:
        try:
            self.connection.send((str(path), media_type))
            if not self.connection.poll(seconds):
                self.stop()
                raise ParseError("timeout", f"parsing took longer than {seconds:g} s")
            status, payload = self.connection.recv()
        except (EOFError, OSError):
            self.stop()
            if self.interrupted:
                raise ParseInterrupted(str(path)) from None
            raise ParseError("crashed", f"the parser process died ({_exit_reason(self.process.returncode)})") from None
        if status == "error":
            reason, detail = payload
            if reason == "out of memory":
                self.stop()  # its heap may be in pieces: the next file gets a fresh worker
            raise ParseError(reason, detail)
        return payload

    def stop(self) -> None:
        self._kill()
        self.connection.close()

    def _kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the worker, and any conversion it runs
        except ProcessLookupError:  # the group is gone: the worker and all it started have ended
            pass
        self.process.wait()


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is None or exitcode >= 0:
        return f"exit status {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"
    return f"{name}, likely out of memory" if name == "SIGKILL" else name
