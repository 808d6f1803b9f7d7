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

__all__ = ["FileOutcome", "IngestReport", "Outcome", "RunStatus", "StageClock"]

# ingested (new), updated (its bytes, tags or the options changed), unchanged, skipped (a
# type pgkb does not read) or failed
Outcome = Literal["ingested", "updated", "unchanged", "skipped", "failed"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)

# What the run's busy time is counted in (IngestReport.stage_seconds).
Stage = Literal["read", "parse", "mask", "chunk", "embed", "write", "index"]


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
    seconds: float = 0.0
    # Busy time per stage, summed over the threads doing it (stages overlap, so the sum
    # exceeds the wall time).
    stage_seconds: defaultdict[Stage, float] = field(default_factory=lambda: defaultdict(float))

    def count(self, outcome: Outcome) -> int:
        return sum(1 for f in self.files if f.outcome == outcome)

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.outcome == "failed"]

    def pii_counts(self) -> Counter[str]:
        """Masked values by entity type, over every file."""
        return sum((Counter(f.pii_counts) for f in self.files), Counter())

    def failures_by_reason(self) -> Counter[str]:
        return Counter((f.reason or "").split(":")[0] for f in self.failed)

    def counts(self) -> dict[str, Any]:
        return {
            "seen": len(self.files),
            **{outcome: self.count(outcome) for outcome in OUTCOMES},
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
            "pruned": self.pruned,
            "files": [{k: v for k, v in asdict(f).items() if v or k in ("key", "outcome")} for f in self.files],
        }


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
