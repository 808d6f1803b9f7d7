"""A parser worker process: `python -m ingest.parsers.worker FD MEMORY_MB` (started by ParserPool).

It reads the parse options, then one (path, media type) request after another from the
socket FD, and answers each with ("ok", ParsedDocument) or ("error", (reason, detail)). Its
address space is limited to MEMORY_MB, so a file that needs more fails with "out of memory"
instead of taking the machine's memory.
"""

from __future__ import annotations

import gc
import os
import resource
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

from unstructured.documents.elements import ElementMetadata

from ingest.heap import release_freed_memory
from ingest.parsers import ParsedDocument, ParseError, parse
from ingest.parsers.elements import reduce_metadata


def serve(connection: Connection, memory_mb: int) -> None:
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # The run decides when to stop, and a worker must finish the file it was given: Ctrl-C,
    # should it reach the worker's process group (its own, see ParserPool), is ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    ForkingPickler.register(ElementMetadata, reduce_metadata)  # what Connection.send pickles with
    # Parsing allocates millions of short-lived objects (PyMuPDF's page dicts, Elements), and by
    # default the cycle collector runs every 700 of them, its full passes walking every module
    # imported too. Those are set aside, and collections come less often: the corpus's PDFs
    # parse 5 to 10% faster, with memory still bounded by the limit above.
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
    options = connection.recv()
    while True:
        try:
            path, media_type = connection.recv()
        except EOFError:  # the pool closed
            return
        result: tuple[str, ParsedDocument | tuple[str, str]]
        try:
            result = ("ok", parse(Path(path), media_type, options))
        except ParseError as exc:
            result = ("error", (exc.reason, exc.detail))
        except MemoryError:
            result = ("error", ("out of memory", f"parsing needed more than the {memory_mb} MiB limit"))
        except Exception as exc:  # a library's bug on one odd file
            result = ("error", ("parser error", f"{type(exc).__name__}: {exc}"))
        try:
            connection.send(result)
        except MemoryError:
            connection.send(("error", ("out of memory", f"the parsed document exceeds the {memory_mb} MiB limit")))
        del result
        release_freed_memory()


def _exit_with_parent(parent: int) -> None:
    """A worker stuck on a file outlives a killed run only by a second."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])), int(sys.argv[2]))
