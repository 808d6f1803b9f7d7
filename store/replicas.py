"""Searches spread over read-only replicas of the primary (DATABASE_URL_REPLICAS).

A search takes the next replica in turn that is reachable and has the collection's last
committed ingest run (the highest id of its finished runs is the primary's): a replica that
is down, or behind after a run, would answer with missing or stale documents, so the search
goes to the primary instead. Each replica's verdict is kept for CHECK_SECONDS, so a search
usually costs no extra round trip. Writes never come here: they use Store.engine, the primary.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from .tables import ingest_runs

log = logging.getLogger(__name__)

# How long a replica's verdict (usable, down or behind) holds before it is checked again.
CHECK_SECONDS = 5.0
# A replica that does not answer within this is taken as down: the search goes to the primary.
CONNECT_TIMEOUT_SECONDS = 2


class Replicas:
    """The replicas' engines, and which of them may answer for a collection now."""

    def __init__(self, primary: Engine, replicas: list[Engine], clock: Callable[[], float] = time.monotonic):
        self.primary, self.replicas, self.clock = primary, replicas, clock
        self._turn = itertools.cycle(range(len(replicas)))
        self._verdicts: dict[tuple[int, int], tuple[float, bool]] = {}  # (replica, collection) -> (when, usable)
        self._lock = threading.Lock()

    def engine_for(self, collection_id: int) -> Engine:
        """The next replica in turn that is up to date with the collection, else the primary."""
        with self._lock:
            order = [next(self._turn) for _ in self.replicas]
        for index in order:
            if self._usable(index, collection_id):
                return self.replicas[index]
        return self.primary

    def _usable(self, index: int, collection_id: int) -> bool:
        now = self.clock()
        checked = self._verdicts.get((index, collection_id))
        if checked is not None and now - checked[0] < CHECK_SECONDS:
            return checked[1]
        usable = self._up_to_date(self.replicas[index], collection_id)
        self._verdicts[(index, collection_id)] = (now, usable)
        return usable

    def _up_to_date(self, replica: Engine, collection_id: int) -> bool:
        try:
            with replica.connect() as conn:
                theirs = _last_committed_run(conn, collection_id)
        except OperationalError as exc:
            log.warning("replica %s is unreachable (%s): searching the primary", _where(replica), exc.orig)
            return False
        with self.primary.connect() as conn:
            ours = _last_committed_run(conn, collection_id)
        if theirs != ours:
            log.info("replica %s is behind the primary on collection %d: searching the primary",
                     _where(replica), collection_id)
        return theirs == ours

    def close(self) -> None:
        for engine in self.replicas:
            engine.dispose()


def _last_committed_run(conn: Connection, collection_id: int) -> int | None:
    return conn.execute(select(func.max(ingest_runs.c.id)).where(
        ingest_runs.c.collection_id == collection_id, ingest_runs.c.finished_at.is_not(None))).scalar()


def _where(engine: Engine) -> str:
    """The replica's host and database, never its credentials."""
    url = engine.url
    return f"{url.host or url.query.get('host', '')}:{url.port or ''}/{url.database or ''}"
