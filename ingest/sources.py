"""Finding the files to ingest, and what identifies each: its key (its path relative to the
ingested folder, the document's identity in the collection) and its bytes (SourceFile)."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .metadata import is_metadata_file

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".html": "text/html",
    ".htm": "text/html",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".eml": "message/rfc822",
    ".msg": "application/vnd.ms-outlook",
    ".epub": "application/epub+zip",
    # Converted by LibreOffice (ingest.parsers.legacy).
    ".doc": "application/msword",
    ".rtf": "application/rtf",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".wps": "application/vnd.ms-works",
    ".xls": "application/vnd.ms-excel",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".ppt": "application/vnd.ms-powerpoint",
    ".odp": "application/vnd.oasis.opendocument.presentation",
    # Read by OCR (ingest.parsers.image).
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


def media_type_of(path: Path) -> str | None:
    """The type pgkb reads the file as, from its name alone; None: a type pgkb does not read."""
    return MEDIA_TYPES.get(path.suffix.lower())


@dataclass(frozen=True)
class SourceFile:
    path: Path
    sha256: str
    size: int
    mtime: datetime
    media_type: str

    @classmethod
    def read(cls, path: Path, media_type: str) -> SourceFile:
        """The file's identity, hashing its bytes; OSError if it cannot be read."""
        stat = path.stat()
        return cls(
            path=path, sha256=_sha256(path), size=stat.st_size,
            mtime=datetime.fromtimestamp(stat.st_mtime, tz=UTC), media_type=media_type,
        )


def key_of(path: Path, root: Path) -> str:
    """The document key of `path`: its path relative to `root` (its name when it is the root)."""
    return path.name if path == root else path.relative_to(root).as_posix()


def readable_name(key: str) -> str:
    """`key` as text: bytes of a name that is not UTF-8 written as escapes (`\\xd6`)."""
    return os.fsencode(key).decode("utf-8", "backslashreplace")


def printable(text: str) -> str:
    """`text` quoted with escapes where it holds line breaks or other control characters,
    so that a file name cannot forge log lines."""
    return text if text.isprintable() else repr(text)


def leads_out(path: Path, root: Path) -> bool:
    """Whether `path` is a symbolic link to somewhere outside `root`."""
    return path.is_symlink() and not path.resolve().is_relative_to(root)


def discover(root: Path, follow_links: bool = False) -> list[Path]:
    """Every file under `root` (or `root` itself), in a stable order.

    Left out: hidden files and folders, the lock files Office leaves beside an open document
    (`~$report.docx`), pgkb's own metadata files (ingest.metadata) and broken links. A link
    to a file in `root` is listed; a link to a folder in `root` is not entered (its files are
    listed where they are). A link leading out of `root` is followed with `follow_links`,
    else listed as itself, unread, so that the run can say it was left out.
    """
    root = root.resolve()
    if root.is_file():
        return [root]
    found = []
    entered = {root}
    for top, folders, files in os.walk(root, followlinks=follow_links, onerror=_unlisted(root)):
        folder = Path(top)
        kept = []
        for name in sorted(folders):
            path = folder / name
            if name.startswith("."):
                continue
            if path.is_symlink():
                if not leads_out(path, root):
                    continue  # its files are listed where they are
                if not follow_links:
                    found.append(path)  # for the run to report as left out
                    continue
            real = path.resolve()
            if real not in entered:  # links out to one folder: entered once, and never round a cycle
                entered.add(real)
                kept.append(name)
        folders[:] = kept
        for name in files:
            path = folder / name
            if name.startswith((".", "~$")) or is_metadata_file(path):
                continue
            if not follow_links and leads_out(path, root):
                found.append(path)
            elif path.is_file():
                found.append(path)
    return sorted(found)


def _unlisted(root: Path):
    def warn(error: OSError) -> None:  # the run goes on with the folders it can list
        name = key_of(Path(error.filename), root) if error.filename else "?"
        log.warning("%s: cannot list this folder: %s", printable(readable_name(name)), error.strerror or error)
    return warn


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
