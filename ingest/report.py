"""What a run reports: each file's outcome, and the run's summary (`--report` writes it)."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from store.records import RunStatus

__all__ = ["Failure", "FileOutcome", "IngestReport", "Outcome", "RunStatus", "StageClock", "failure"]

# ingested (new), updated (its bytes, tags or the options changed), unchanged, skipped (a
# type pgkb does not read) or failed
Outcome = Literal["ingested", "updated", "unchanged", "skipped", "failed"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)

# What the run's busy time is counted in (IngestReport.stage_seconds).
Stage = Literal["read", "parse", "mask", "chunk", "embed", "write", "index"]

# Ends the reason of a failure remembered from an earlier run rather than met again.
UNCHANGED_SINCE = " (unchanged since; --force tries again)"

# A failure as runs compare them: its key, reason, and the hash of the file's bytes (None
# where they were never read). Another reason or other bytes make it another failure.
Failure = tuple[str, str, str | None]


def failure(key: str, reason: str | None, sha256: str | None) -> Failure:
    return key, (reason or "").removesuffix(UNCHANGED_SINCE), sha256


@dataclass(frozen=True)
class FileOutcome:
    key: str  # the document's key: the file's path relative to the ingested folder
    outcome: Outcome
    reason: str | None = None
    pages: int = 0
    chunks: int = 0
    tokens: int = 0      # tokens of text in its chunks
    embedded: int = 0    # chunks the model embedded; the others' vectors were already stored
    pii_counts: dict[str, int] = field(default_factory=dict)  # masked values by entity type
    sha256: str | None = None  # a failed file's bytes' hash, where they were read (see Failure)


@dataclass
class IngestReport:
    """The run as it goes (a caller holding it sees its progress, and what happened when the
    run raises), then as it ended."""

    collection: str
    run_id: int | None = None
    status: RunStatus = "running"
    error: str | None = None  # why the run aborted
    total_files: int = 0     # known once the folder is listed
    files_started_at: float = 0.0  # time.perf_counter() when the first file started, after start-up
    files: list[FileOutcome] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    unmasked: str | None = None  # personal data the masker could not look for, and why (Masker.unfound)
    # What the last run over the same folder that went through every file reported: a failure
    # among them is known, any other is new.
    known_failures: set[Failure] = field(default_factory=set)
    seconds: float = 0.0
    # Busy time per stage, summed over the threads doing it (stages overlap, so the sum
    # exceeds the wall time).
    stage_seconds: defaultdict[Stage, float] = field(default_factory=lambda: defaultdict(float))

    def count(self, outcome: Outcome) -> int:
        return sum(1 for f in self.files if f.outcome == outcome)

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.outcome == "failed"]

    def is_new(self, outcome: FileOutcome) -> bool:
        return (outcome.outcome == "failed"
                and failure(outcome.key, outcome.reason, outcome.sha256) not in self.known_failures)

    def finished_status(self) -> RunStatus:
        """How a run that went through every file ended: succeeded, partial (some files
        failed, others are stored) or failed (no file is stored)."""
        if not self.failed:
            return "succeeded"
        stored = any(f.outcome in ("ingested", "updated", "unchanged") for f in self.files)
        return "partial" if stored else "failed"

    @property
    def new_failures(self) -> list[FileOutcome]:
        return [f for f in self.files if self.is_new(f)]

    def pii_counts(self) -> Counter[str]:
        """Masked values by entity type, over every file."""
        return sum((Counter(f.pii_counts) for f in self.files), Counter())

    def failures_by_reason(self) -> Counter[str]:
        return Counter((f.reason or "").split(":")[0] for f in self.failed)

    def counts(self) -> dict[str, Any]:
        return {
            "seen": len(self.files),
            **{outcome: self.count(outcome) for outcome in OUTCOMES},
            "failed_new": len(self.new_failures),
            "pruned": len(self.pruned),
            "pages": sum(f.pages for f in self.files),
            "chunks": sum(f.chunks for f in self.files),
            "embedded": sum(f.embedded for f in self.files),
            "tokens": sum(f.tokens for f in self.files),
            "failed_by_reason": dict(self.failures_by_reason().most_common()),
            "pii": dict(self.pii_counts().most_common()),
        }

    def to_dict(self) -> dict[str, Any]:
        """The report as `--report` writes it: the summary, then one entry per file seen."""
        return {
            "collection": self.collection, "run_id": self.run_id, "status": self.status, "error": self.error,
            "seconds": round(self.seconds, 3), "counts": self.counts(),
            "stage_seconds": {stage: round(s, 3) for stage, s in self.stage_seconds.items()},
            "pruned": self.pruned, "unmasked": self.unmasked,
            "files": [self._file_entry(f) for f in self.files],
        }

    def _file_entry(self, outcome: FileOutcome) -> dict[str, Any]:
        """A file's outcome with what it has (a failure says whether it is new), its hash left out."""
        entry = {k: v for k, v in asdict(outcome).items() if v and k != "sha256" or k in ("key", "outcome")}
        if outcome.outcome == "failed":
            entry["new"] = self.is_new(outcome)
        return entry


class StageClock:
    """Busy time per stage, added up by the threads that do the stages."""

    def __init__(self, seconds: defaultdict[Stage, float]):
        self.seconds = seconds
        self._lock = threading.Lock()

    @contextmanager
    def timed(self, stage: Stage) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)

    def add(self, stage: Stage, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds
