"""The stages a file goes through, each with what it takes and what it gives:

    identify (path -> Identified) -> skip unchanged (-> DocumentRecord) -> parse, mask, chunk
    (a Cutter: -> Parsed) -> embed (several documents at once -> Embedded) -> write (-> FileOutcome)

A stage that ends a file's way early gives its FileOutcome instead (skipped, failed,
unchanged). A failure is logged at INFO only: the run's report (and the command's summary)
lists every one, and a warning too would say it twice. ingest.pipeline runs the stages
overlapping; ingest.run sets them up. Parsing, masking and chunking are a pure function of
the file (cut_file), so a Cutter runs them here (LocalCutter) or on a cluster (ingest.ray_engine).

A file can hold others (an e-mail's attachments, ingest.parsers.Attachment): each is a
document of its own, keyed under the file's key (`mail.eml/report.pdf`), that goes through
the same stages from "skip unchanged" on (its own worker, limits and masking), files held
at most MAX_DEPTH deep and MAX_ATTACHMENTS in all per file. A file stored as it is reports
the files it holds as stored too, so that `--prune` keeps them; they go when it goes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from sqlalchemy.exc import OperationalError

from embedding import Embedder
from pgkb.settings import Settings
from store import Chunk, Collection, DocumentRecord, DocumentState, Store
from store.fulltext import unstorable

from .chunking import chunk_elements
from .metadata import MetadataError, UserMetadata
from .parsers import Attachment, ParsedDocument, ParseError
from .parsers.mail import MAX_ATTACHMENTS, MAX_DEPTH
from .parsers.pool import ParserPool
from .passwords import password_set_digest
from .pii import KeyCollision, Masker, MaskingError, MaskPolicy, OutputMasker
from .report import UNCHANGED_SINCE, FileOutcome, Stage, StageClock
from .roots import Placement
from .sources import SourceFile, key_of, leads_out, media_type_of, printable, readable_name

log = logging.getLogger(__name__)

# Bump when parsing or chunking changes what the same file turns into, so that the next run
# cuts every document again instead of skipping it as unchanged.
PIPELINE_VERSION = 2  # 2: no chunk is only a heading


@dataclass(frozen=True)
class Models:
    """What parsing, masking and embedding need once the first file does: loaded once."""

    embedder: Embedder
    masker: Masker | None
    collection: Collection  # created, or checked against the model's embedding space
    max_tokens: int         # chunk size: the setting, capped by what the model reads


@dataclass(frozen=True)
class Identified:
    """A file pgkb reads, hashed, with the tags the user gives it."""

    key: str  # the document's key: its path relative to the ingested folder, masked as the run's keys are
    file: SourceFile
    tags: dict[str, Any]
    path: str  # the file's path as stored: masked like the key; an attachment's under its holder's


@dataclass(frozen=True)
class Parsed:
    """A file parsed, masked and chunked, waiting for its vectors."""

    outcome: Literal["ingested", "updated"]  # once written
    record: DocumentRecord
    chunks: list[Chunk]
    pages: int

    @property
    def tokens(self) -> int:
        return sum(c.token_count for c in self.chunks)


@dataclass(frozen=True)
class Embedded:
    """A parsed document with its chunks' vectors; None where the model failed on its text."""

    document: Parsed
    vectors: np.ndarray | None
    embedded: int = 0  # chunks the model embedded; the others' vectors were already stored


@dataclass(frozen=True)
class Cut:
    """A file parsed, masked and chunked, and the seconds each of those took."""

    document: ParsedDocument  # its text masked
    chunks: list[Chunk]
    pii_counts: dict[str, int]
    seconds: dict[Stage, float]


def cut_file(parser: ParserPool, path: Path, media_type: str, key: str, masker: Masker | None,
             mask_lock: AbstractContextManager, count_tokens: Callable[[Sequence[str]], list[int]], max_tokens: int,
             embed_headings: bool) -> Cut:
    """The file parsed (in a worker of `parser`, under its time and memory limits), masked and
    chunked; ParseError when it cannot be read as a document."""
    seconds: dict[Stage, float] = {}
    with _timed(seconds, "parse"):
        parsed = parser.parse(path, media_type)
    with _timed(seconds, "mask"), mask_lock:
        # Before anything else reads the text: chunks, titles and metadata only see it masked.
        pii_counts = masker.mask_document(parsed) if masker else {}
    with _timed(seconds, "chunk"):
        chunks = chunk_elements(parsed.elements, key, count_tokens, max_tokens, {"source": key, **parsed.metadata},
                                embed_headings=embed_headings)
    return Cut(parsed, chunks, pii_counts, seconds)


@contextmanager
def _timed(seconds: dict[Stage, float], stage: Stage) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[stage] = time.perf_counter() - started


class Cutter(Protocol):
    """Where files are parsed, masked and chunked: LocalCutter, or ingest.ray_engine.RayCutter."""

    def cut(self, file: SourceFile, key: str, models: Models) -> Cut:
        """`cut_file` of the file, or its ParseError."""
        ...

    def close(self) -> None:
        """Stop cutting: a file in progress ends in ParseInterrupted."""
        ...


class LocalCutter:
    """Files cut in this process, each parsed in a worker process of `parser`."""

    def __init__(self, parser: ParserPool, mask_lock: threading.Lock, embed_headings: bool):
        # Presidio's engines are not documented as safe to share between threads: `mask_lock`
        # is the masker's, shared with the run's outputs (ingest.pii.outputs).
        self.parser, self.mask_lock, self.embed_headings = parser, mask_lock, embed_headings

    def cut(self, file: SourceFile, key: str, models: Models) -> Cut:
        return cut_file(self.parser, file.path, file.media_type, key, models.masker, self.mask_lock,
                        models.embedder.count_tokens, models.max_tokens, self.embed_headings)

    def close(self) -> None:
        self.parser.close()


@dataclass(frozen=True)
class Fingerprints:
    """What a stored document was made with, to tell whether it must be made again."""

    ingested: str   # the options that shape a document's chunks: a change means every file is cut again
    failed: str     # those, and what decides whether a file that failed may now succeed
    encrypted: str  # a file that failed as encrypted: those, and the set of passwords tried

    @classmethod
    def of(cls, settings: Settings, policy: MaskPolicy | None, passwords: tuple[str, ...]) -> Fingerprints:
        options: dict[str, Any] = {"version": PIPELINE_VERSION, "chunk_tokens": settings.chunk_tokens,
                                   "pii": policy.describe() if policy else "off", "ocr": settings.ocr_languages}
        if not settings.embed_headings:  # absent when on, so collections ingested before stay unchanged
            options["embed_headings"] = False
        # A file that failed is tried again when it changes, or when these do: the limits, and
        # for an encrypted file the set of passwords (only as a keyed hash, see password_set_digest).
        failed = {**options, "seconds": settings.parse_seconds, "memory_mb": settings.parse_memory_mb,
                  "max_chars": settings.max_document_chars}
        encrypted = {**failed, "passwords": password_set_digest(passwords, settings.data_dir)}
        return cls(_digest(options), _digest(failed), _digest(encrypted))

    def of_failure(self, error: ParseError) -> str:
        return self.encrypted if error.reason == "encrypted" else self.failed


class FileStages:
    """The stages of one run, sharing its store, collection and options."""

    def __init__(self, settings: Settings, store: Store, collection: Collection, models: Callable[[], Models],
                 outputs: OutputMasker, fingerprints: Fingerprints,
                 placement: Placement, folder: Path, tags: dict[str, Any], force: bool, clock: StageClock):
        self.store, self.collection, self.models, self.outputs = store, collection, models, outputs
        self.placement = placement
        self.root = placement.root  # keys are relative to it
        self.folder = folder        # the folder (or file) the run reads, inside the root
        self.follow_links = settings.follow_links
        self.user_metadata = UserMetadata(self.root, tags, settings.follow_links)
        self.fingerprints = fingerprints
        self.force = force
        self.clock = clock
        self.known: dict[str, DocumentState] = store.document_states(collection)

    def prepare(self, path: Path, cutter: Cutter) -> list[Parsed | FileOutcome]:
        """A file up to its chunks, unless its way ends before, then the files it holds (read
        in a parsing thread)."""
        identified = self.identify(path)
        if isinstance(identified, FileOutcome):
            return [identified]
        return self._prepare(identified, cutter, 0, _Budget(MAX_ATTACHMENTS))

    def _prepare(self, identified: Identified, cutter: Cutter, depth: int,
                 budget: _Budget) -> list[Parsed | FileOutcome]:
        record = self.skip_unchanged(identified)
        if isinstance(record, FileOutcome):
            return [record, *self._stored_attachments(identified, record)]
        if depth > MAX_DEPTH:
            return [self._failed(identified, record, ParseError(
                "attachment bomb", f"attached {depth} files deep, more than {MAX_DEPTH}"))]
        if depth and not budget.take():
            return [self._failed(identified, record, ParseError(
                "attachment bomb", f"its message brings more than {MAX_ATTACHMENTS} attachments in all"))]
        document, attachments = self.parse(identified, record, cutter)
        return [document, *self._attachments(identified, attachments, cutter, depth + 1, budget)]

    def _attachments(self, holder: Identified, attachments: list[Attachment], cutter: Cutter, depth: int,
                     budget: _Budget) -> list[Parsed | FileOutcome]:
        """The files `holder` holds, each as a document keyed under its key."""
        found: list[Parsed | FileOutcome] = []
        with tempfile.TemporaryDirectory(prefix="pgkb-attachment-") as folder:
            for number, attachment in enumerate(attachments):
                try:
                    name = self.outputs.attachment(attachment.name)
                except MaskingError as exc:
                    found.append(FileOutcome(f"{holder.key}/?", "failed", str(exc)))
                    continue
                key = f"{holder.key}/{name}"
                media_type = media_type_of(Path(attachment.name))
                if media_type is None:
                    found.append(FileOutcome(key, "skipped",
                                             f"unsupported type {Path(attachment.name).suffix or '(none)'}"))
                    continue
                if any(_key_of(item) == key for item in found):
                    found.append(FileOutcome(key, "failed", "its name masks to the name of another attachment"))
                    continue
                copy = Path(folder) / f"{number}{Path(attachment.name).suffix.lower()}"
                copy.write_bytes(attachment.data)
                file = replace(SourceFile.read(copy, media_type), mtime=holder.file.mtime)
                found += self._prepare(Identified(key, file, holder.tags, f"{holder.path}/{name}"), cutter,
                                       depth, budget)
                copy.unlink()
        return found

    def _stored_attachments(self, holder: Identified, outcome: FileOutcome) -> list[FileOutcome]:
        """The outcomes of the files a file stored as it is holds: stored as they are too
        (their tags updated with its own)."""
        if outcome.outcome == "failed":
            return []  # a file that failed holds none
        found = []
        for key in sorted(key for key in self.known if key.startswith(f"{holder.key}/")):
            state = self.known[key]
            if state.status == "failed":
                found.append(FileOutcome(key, "failed", f"{state.error}{UNCHANGED_SINCE}", sha256=state.sha256))
            elif outcome.outcome == "updated":  # its tags only
                self.store.update_tags(self.collection, key, holder.tags)
                found.append(FileOutcome(key, "updated", "tags only"))
            else:
                found.append(FileOutcome(key, "unchanged"))
        return found

    def identify(self, path: Path) -> Identified | FileOutcome:
        """The file's key, bytes' hash and tags; skipped or failed if pgkb does not read it."""
        relative = key_of(path, self.root)
        if unstorable(relative):  # a name that is not UTF-8 (Python keeps its bytes as lone surrogates)
            return FileOutcome(self.outputs.text(readable_name(relative)), "failed",
                               "file name is not UTF-8: rename the file")
        key = self.outputs.key(path)
        known = self.known.get(key)
        if known and not self.placement.owns(known.path):  # else each root's run would replace the other's
            return FileOutcome(key, "failed", f"another root's document has its key ({known.path}): keep the "
                                              "two folders in collections of their own")
        if not self.follow_links and leads_out(path, self.folder):
            return FileOutcome(key, "skipped", "link out of the folder (--follow-links reads it)")
        media_type = media_type_of(path)
        if media_type is None:  # known by its name: the file is never read
            return FileOutcome(key, "skipped", f"unsupported type {path.suffix or '(none)'}")
        try:
            self.outputs.check_unique(path)
            with self.clock.timed("read"):
                file = SourceFile.read(path, media_type)
                tags = self.outputs.values(self.user_metadata.for_file(path))
        except OSError as exc:  # unreadable, or gone since the folder was listed
            log.info("%s: cannot read it: %s", printable(key), exc.strerror or exc)
            return FileOutcome(key, "failed", f"cannot read: {exc.strerror or exc}")
        except (MetadataError, KeyCollision, MaskingError) as exc:
            reason = self.outputs.text(str(exc))
            log.info("%s: %s", printable(key), reason)
            return FileOutcome(key, "failed", reason)
        return Identified(key, file, tags, self.outputs.path(path))

    def skip_unchanged(self, identified: Identified) -> DocumentRecord | FileOutcome:
        """The document's record to make, or the outcome of a file stored as it is (its tags
        updated where only they changed, a failure recorded for the same options)."""
        key, file, tags = identified.key, identified.file, identified.tags
        known = self.known.get(key)
        if known and not self.force and known.sha256 == file.sha256:
            if (known.status, known.fingerprint) == ("ingested", self.fingerprints.ingested):
                if known.tags == tags:
                    return FileOutcome(key, "unchanged")
                self.store.update_tags(self.collection, key, tags)
                return FileOutcome(key, "updated", "tags only")
            if known.status == "failed" and known.fingerprint in (self.fingerprints.failed,
                                                                   self.fingerprints.encrypted):
                return FileOutcome(key, "failed", f"{known.error}{UNCHANGED_SINCE}", sha256=file.sha256)
        return DocumentRecord(key=key, path=identified.path, sha256=file.sha256, size_bytes=file.size,
                              mtime=file.mtime, media_type=file.media_type, tags=tags,
                              fingerprint=self.fingerprints.ingested)

    def parse(self, identified: Identified, record: DocumentRecord,
              cutter: Cutter) -> tuple[Parsed | FileOutcome, list[Attachment]]:
        """The file parsed (in a worker, under time and memory limits), masked and chunked;
        and the files it holds, unparsed."""
        key, file = identified.key, identified.file
        models = self.models()  # a model that cannot load stops the run, not just this file
        try:
            cut = cutter.cut(file, key, models)
        except ParseError as exc:
            return self._failed(identified, record, exc), []
        except OperationalError:
            raise  # the database went away: no later file can succeed either
        except Exception as exc:  # a library's bug on one odd file must not stop the run
            return self._failure(key, file.sha256, exc), []
        for stage, seconds in cut.seconds.items():
            self.clock.add(stage, seconds)
        parsed = cut.document
        for warning in parsed.warnings:
            log.warning("%s: %s", printable(key), self.outputs.text(warning))
        record = replace(record, title=parsed.title, metadata=parsed.metadata, pii_counts=cut.pii_counts)
        pages = max((e.metadata.page_number or 0 for e in parsed.elements), default=0)
        known = self.known.get(key)
        outcome: Literal["ingested", "updated"] = "updated" if known and known.status == "ingested" else "ingested"
        return Parsed(outcome, record, cut.chunks, pages), parsed.attachments

    def _failed(self, identified: Identified, record: DocumentRecord, exc: ParseError) -> FileOutcome:
        """A file that cannot be read, recorded with the reason (for the next run to skip it while
        it and the options stay the same)."""
        reason = self.outputs.text(str(exc))  # a parser's message can quote the document
        log.info("%s: %s", printable(identified.key), reason)
        self.store.record_failure(self.collection, replace(record, fingerprint=self.fingerprints.of_failure(exc)),
                                  reason)
        return FileOutcome(identified.key, "failed", reason, sha256=identified.file.sha256)

    def embed(self, documents: list[Parsed]) -> list[Embedded]:
        """Vectors for several documents' chunks in one call to the model. Texts the collection
        already holds come from the store (the embedding cache); each new text is embedded once."""
        if not any(d.chunks for d in documents):
            return [Embedded(d, self._no_vectors()) for d in documents]
        with self.clock.timed("embed"):
            found = self.store.stored_vectors(self.collection, (c.content_hash for d in documents for c in d.chunks))
            missing: dict[str, str] = {}
            embedded = []
            for d in documents:
                new = {c.content_hash: c.embedding_text for c in d.chunks
                       if c.content_hash not in found and c.content_hash not in missing}
                embedded.append(len(new))
                missing.update(new)
            try:
                if missing:
                    found.update(zip(missing, self.models().embedder.embed_documents(list(missing.values()))))
            except Exception:
                if len(documents) == 1:
                    raise
                broken = True  # one document's text broke the batch: find which, below
            else:
                broken = False
        if broken:
            return [self._embed_alone(d) for d in documents]
        return [Embedded(d, np.stack([found[c.content_hash] for c in d.chunks]) if d.chunks else self._no_vectors(),
                         count) for d, count in zip(documents, embedded)]

    def _embed_alone(self, document: Parsed) -> Embedded:
        try:
            return self.embed([document])[0]
        except OperationalError:
            raise
        except Exception as exc:
            log.warning("%s: embedding failed: %s: %s", printable(document.record.key), type(exc).__name__,
                        self.outputs.text(str(exc)))
            return Embedded(document, None)

    def _no_vectors(self) -> np.ndarray:
        return np.zeros((0, self.collection.dims), dtype=np.float32)

    def write(self, embedded: Embedded) -> FileOutcome:
        """The document and its chunks stored in one transaction: whole or not at all."""
        document = embedded.document
        key = document.record.key
        if embedded.vectors is None:
            return FileOutcome(key, "failed", "embedding failed (see the log)", sha256=document.record.sha256)
        try:
            with self.clock.timed("write"):
                self.store.write_document(self.collection, document.record, document.chunks, embedded.vectors)
        except OperationalError:
            raise
        except Exception as exc:
            return self._failure(key, document.record.sha256, exc)
        return FileOutcome(key, document.outcome, pages=document.pages, chunks=len(document.chunks),
                           tokens=document.tokens, embedded=embedded.embedded,
                           pii_counts=document.record.pii_counts)

    def _failure(self, key: str, sha256: str, exc: Exception) -> FileOutcome:
        reason = f"error: {type(exc).__name__}: {self.outputs.text(str(exc))}"
        log.info("%s: %s", printable(key), reason)
        # The frames only: the traceback's last line would repeat the message unmasked.
        log.debug("%s: traceback:\n%s", printable(key), "".join(traceback.format_tb(exc.__traceback__)))
        return FileOutcome(key, "failed", reason, sha256=sha256)


class _Budget:
    """How many more attachments a file may bring, those of the files it holds included."""

    def __init__(self, left: int):
        self.left = left

    def take(self) -> bool:
        self.left -= 1
        return self.left >= 0


def _key_of(item: Parsed | FileOutcome) -> str:
    return item.record.key if isinstance(item, Parsed) else item.key


def _digest(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
