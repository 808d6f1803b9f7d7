"""Finding the files to ingest: SourceFile, a file's identity within a collection."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .metadata import is_metadata_file

MEDIA_TYPES = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
}


@dataclass(frozen=True)
class SourceFile:
    path: Path
    key: str            # path relative to the ingested root: the document's identity
    sha256: str
    size: int
    mtime: datetime
    media_type: str | None  # None: a type pgkb does not read

    @classmethod
    def read(cls, path: Path, root: Path) -> "SourceFile":
        stat = path.stat()
        key = path.name if path == root else path.relative_to(root).as_posix()
        return cls(
            path=path, key=key, sha256=_sha256(path), size=stat.st_size,
            mtime=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
            media_type=MEDIA_TYPES.get(path.suffix.lower()),
        )


def discover(root: Path) -> list[Path]:
    """Every file under `root` (or `root` itself), in a stable order.

    Left out: hidden files, the lock files Office leaves beside an open document
    (`~$report.docx`), and pgkb's own metadata files (ingest.metadata).
    """
    root = root.resolve()
    if root.is_file():
        return [root]
    return [
        path for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith("~$") and not is_metadata_file(path)
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
