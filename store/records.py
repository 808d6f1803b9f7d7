"""What the store is handed: typed records, free of any parser or model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .errors import SpaceMismatch


@dataclass(frozen=True)
class Chunk:
    """One searchable piece of a document, already masked, ready to embed and store."""

    document_key: str
    ordinal: int
    text: str
    section_path: tuple[str, ...]
    page_start: int | None
    page_end: int | None
    element_types: tuple[str, ...]
    token_count: int
    content_hash: str
    metadata: dict[str, Any] = field(default_factory=dict)
    embeds_heading: bool = True  # whether the model reads the section path too (Settings.embed_headings)

    @property
    def embedding_text(self) -> str:
        """What the model reads: the section path gives a chunk the context its text lacks."""
        if not self.embeds_heading:
            return self.text
        if not self.section_path or self.text.startswith(self.section_path[-1]):
            heading = " > ".join(self.section_path[:-1])
        else:
            heading = " > ".join(self.section_path)
        return f"{heading}\n\n{self.text}" if heading else self.text


@dataclass(frozen=True)
class DocumentRecord:
    """A source file's row: its identity in the collection and what is known of it."""

    key: str
    path: str
    sha256: str
    size_bytes: int
    mtime: datetime | None
    media_type: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # what the parser found in the file
    tags: dict[str, Any] = field(default_factory=dict)      # what the user attached (ingest.metadata)
    fingerprint: str = ""  # the ingest options that shaped its chunks
    pii_counts: dict[str, int] = field(default_factory=dict)  # masked values by entity type, never the values


# A document's row holds its chunks, or says why its file could not be read.
DocumentStatus = Literal["ingested", "failed"]

# An ingest run: running until it ends succeeded (no file failed), partial (some files
# failed, the others are stored), failed (every file it read failed), interrupted (Ctrl-C)
# or aborted (the run itself failed, or its process is gone).
RunStatus = Literal["running", "succeeded", "partial", "failed", "interrupted", "aborted"]
# The ends of a run that went through every file.
COMPLETE_RUNS: tuple[RunStatus, ...] = ("succeeded", "partial", "failed")


@dataclass(frozen=True)
class DocumentState:
    """What the store holds of a document, for deciding whether a file needs ingesting again."""

    sha256: str
    fingerprint: str
    tags: dict[str, Any]
    status: DocumentStatus = "ingested"  # "failed": the file could not be read, for `error`
    error: str | None = None
    path: str = ""  # its file's path as stored (under the root it was ingested from)


# The space fields that decide whether two vectors are comparable.
SPACE_IDENTITY = ("model", "dims", "pooling", "normalize")


@dataclass(frozen=True)
class Collection:
    id: int
    name: str
    dims: int
    space: dict[str, Any]
    vector_type: str = "vector"  # how its HNSW index stores vectors: "vector" or "halfvec"
    # How carefully its HNSW graph is built; collections made before pgkb chose 128 have
    # pgvector's default, 64.
    ef_construction: int = 64
    # The folders its documents were ingested from, as stored (masked like documents' paths);
    # empty for a collection made before pgkb remembered them, until its next run.
    roots: tuple[str, ...] = ()

    @property
    def min_ef_search(self) -> int:
        """The hnsw.ef_search that keeps recall@10 against an exact scan at 0.98 or more:
        measured at 100,000 chunks (bench/search_latency.py), 0.987 at 200 on a graph built
        with ef_construction 128; 0.973 at 200 and 0.984 at 800 with 64."""
        return 200 if self.ef_construction >= 128 else 800

    def check_space(self, space: dict[str, Any]) -> None:
        """Raise SpaceMismatch unless `space` (all of it, or the fields it names) is this collection's."""
        differs = [k for k in SPACE_IDENTITY if k in space and space[k] != self.space.get(k)]
        if differs:
            theirs = ", ".join(f"{k}={self.space.get(k)!r}" for k in SPACE_IDENTITY)
            raise SpaceMismatch(
                f"collection {self.name!r} holds vectors of another embedding space ({theirs}); "
                f"use the same model and dims, or another --collection"
            )


def pages_label(page_start: int | None, page_end: int | None) -> str:
    """'p. 2', 'pp. 2-3', or '' for a file without pages."""
    if page_start is None:
        return ""
    if page_end in (None, page_start):
        return f"p. {page_start}"
    return f"pp. {page_start}-{page_end}"


def citation(document_key: str, page_start: int | None, page_end: int | None, section_path: Sequence[str]) -> str:
    """'policy.pdf, pp. 2-3, Travel > Per diem': where a chunk comes from, as a reader cites it."""
    parts = [document_key, pages_label(page_start, page_end), " > ".join(section_path)]
    return ", ".join(p for p in parts if p)
