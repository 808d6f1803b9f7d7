"""Upload jobs: files a caller sent, ingested in the background by the same path as `ingest`.

A job's files are saved under the collection's upload folder (`<data dir>/uploads/<collection>`)
by their names, which become their document keys; an upload of a name already there replaces
that document. Jobs run one at a time, in one thread, with the collection's loaded model: they
share the CPU (or GPU) with searches, and two jobs never write the same file at once. A job is
kept in memory for its caller to poll; the documents it wrote are in the database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from embedding import Embedder
from ingest import ingest
from pgkb.errors import PgkbError
from pgkb.settings import Settings

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "succeeded", "failed"]
# Jobs remembered for polling; the oldest finished ones are forgotten first.
KEPT_JOBS = 1000


@dataclass
class Job:
    id: str
    collection: str
    files: list[str]  # the uploaded files' keys
    tags: dict[str, Any]
    status: JobStatus = "queued"
    submitted_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    report: dict[str, Any] | None = None  # the ingest report of the job's files
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "tags"}


def upload_folder(settings: Settings, collection: str) -> Path:
    """Where a collection's uploaded files live: one folder each, named so that any collection
    name is a safe folder name."""
    digest = hashlib.sha256(collection.encode()).hexdigest()[:16]
    return settings.data_dir / "uploads" / digest


class Jobs:
    """The job queue and its one worker thread."""

    def __init__(self, settings: Settings, embedder_for: Any):
        self.settings = settings
        self._embedder_for = embedder_for  # collection name -> its loaded Embedder, or None if new
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._stop = threading.Event()
        # Started by the first job: a server that is never sent a file runs no thread for it.
        self._worker = threading.Thread(target=self._work, name="pgkb-jobs", daemon=True)

    def submit(self, collection: str, files: list[str], tags: dict[str, Any]) -> Job:
        job = Job(uuid.uuid4().hex, collection, files, tags)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
            if not self._worker.is_alive():
                self._worker.start()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def close(self) -> None:
        """Finish the documents in progress, then stop (queued jobs are dropped)."""
        self._stop.set()
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join()

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.finished_at is not None]
        for job_id in finished[:max(0, len(self._jobs) - KEPT_JOBS)]:
            del self._jobs[job_id]

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._stop.is_set():
                break
            self._run(job)

    def _run(self, job: Job) -> None:
        job.status = "running"
        folder = upload_folder(self.settings, job.collection)
        settings = dataclasses.replace(self.settings, collection=job.collection)
        try:
            embedder: Embedder | None = self._embedder_for(job.collection)
            report = ingest(folder, settings, tags=job.tags, embedder=embedder, stop=self._stop, add_root=True,
                            only=[folder / key for key in job.files])
            # Reasons may name the server's own folders: the caller sees keys only.
            job.report = json.loads(json.dumps(report.to_dict()).replace(json.dumps(str(folder))[1:-1] + "/", ""))
            job.status = "succeeded"
        except PgkbError as exc:
            job.error, job.status = str(exc), "failed"
        except Exception:  # a bug: the job says so, the log holds the traceback
            log.exception("upload job %s failed", job.id)
            job.error, job.status = "internal error (see the server's log)", "failed"
        finally:
            job.finished_at = time.time()
