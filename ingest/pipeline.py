"""The stages of ingest.stages, overlapping, in bounded memory.

A few threads identify, parse (each file in a worker process or a Ray task), mask and chunk files; the
calling thread embeds the chunks of several documents at a time, since the model is fastest
on full batches; one writer thread stores each finished document in its own transaction.
Every stage holds a bounded number of documents, so memory stays flat whatever the corpus
size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from threading import Event
from typing import TypeVar

from .heap import release_freed_memory
from .report import FileOutcome
from .stages import Cutter, Embedded, FileStages, Parsed

# Files whose outcomes are handed to the writer together at most: a run of unchanged files,
# which add no tokens, still reports its progress as it goes.
MAX_GROUP_FILES = 256
# Groups the writer may lag behind the model, no more.
WRITES_BEHIND = 2


def run_files(stages: FileStages, paths: list[Path], cutter: Cutter, workers: int, stop: Event,
              batch_tokens: int, record: Callable[[FileOutcome], None]) -> None:
    """Every file of `paths` through the stages, each outcome handed to `record` (in the writer
    thread) as it is known. Once `stop` is set no new file starts; those in progress end."""
    with ThreadPoolExecutor(workers, thread_name_prefix="pgkb-parse") as parsing, \
            ThreadPoolExecutor(1, thread_name_prefix="pgkb-write") as writing:
        batches = _Batches(stages, writing, batch_tokens, record)
        try:
            prepared = _as_completed(parsing, lambda path: stages.prepare(path, cutter), paths, 2 * workers, stop,
                                     batches.hand_on_while_waiting)
            for items in prepared:  # a file, and the files it holds (an e-mail's attachments)
                for item in items:
                    batches.add(item)
            batches.finish()
        except BaseException:
            cutter.close()  # so the parsing threads end now, not after their files
            raise


class _Batches:
    """Prepared files gathered into groups for the model, then handed to the writer.

    The model is called once a group holds `4 * batch_tokens` of new text (or
    MAX_GROUP_FILES files), and with at least `batch_tokens` while files are being parsed.
    """

    def __init__(self, stages: FileStages, writing: ThreadPoolExecutor, batch_tokens: int,
                 record: Callable[[FileOutcome], None]):
        self.stages, self.writing, self.record = stages, writing, record
        self.batch_tokens = batch_tokens
        self.group: list[Parsed | FileOutcome] = []
        self.tokens = 0  # of new text in the group
        self.writes: deque[Future[None]] = deque()

    def add(self, item: Parsed | FileOutcome) -> None:
        self.group.append(item)
        self.tokens += item.tokens if isinstance(item, Parsed) else 0
        if len(self.group) >= MAX_GROUP_FILES or self.tokens >= 4 * self.batch_tokens:
            self.hand_on()

    def hand_on_while_waiting(self) -> None:
        # The model gets what is parsed so far once it fills a batch: a model called
        # with a few chunks runs far below its speed on full batches (ingesting the
        # test corpus on a CPU, calls of 1-8 texts made 2,700 tokens/s, of over 512
        # 16,500), and on a CPU, waiting leaves the cores to the parsers. A group of
        # outcomes alone (unchanged or failed files) goes on, so that progress shows.
        if self.group and (self.tokens >= self.batch_tokens or self.tokens == 0):
            self.hand_on()

    def hand_on(self) -> None:
        """The group's documents embedded, then written by the writer thread in the group's order."""
        vectors = iter(self.stages.embed([item for item in self.group if isinstance(item, Parsed)]))
        written = [next(vectors) if isinstance(item, Parsed) else item for item in self.group]
        self.writes.append(self.writing.submit(self._write, written))
        self.group, self.tokens = [], 0
        while len(self.writes) > WRITES_BEHIND:
            self.writes.popleft().result()

    def finish(self) -> None:
        if self.group:
            self.hand_on()
        while self.writes:
            self.writes.popleft().result()

    def _write(self, items: list[Embedded | FileOutcome]) -> None:
        for item in items:
            self.record(self.stages.write(item) if isinstance(item, Embedded) else item)
        release_freed_memory()  # the documents just written are freed


T = TypeVar("T")


def _as_completed(pool: ThreadPoolExecutor, work: Callable[[Path], T], items: Iterable[Path], window: int,
                  stop: Event, before_waiting: Callable[[], None]) -> Iterator[T]:
    """`work(item)` for each item on `pool`, at most `window` at once, yielding results as they
    come: a long file holds up nothing but itself. `before_waiting` is called whenever no
    result is ready yet. Once `stop` is set no new item starts; those in progress still end.
    """
    items = iter(items)
    pending: set[Future[T]] = set()
    while True:
        while len(pending) < window and not stop.is_set() and (item := next(items, None)) is not None:
            pending.add(pool.submit(work, item))
        if not pending:
            return
        done = {future for future in pending if future.done()}
        if not done:
            before_waiting()
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            pending.discard(future)
            yield future.result()
