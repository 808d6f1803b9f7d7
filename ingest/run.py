"""The ingest run: discover -> skip unchanged -> parse -> mask -> chunk -> embed -> write -> prune -> report.

`ingest()` reads as the run goes: check what was asked, open the store and the collection,
list the files, record the run's start, take every file through the stages (ingest.stages,
overlapping in ingest.pipeline), prune, and record how it ended.

Every file ends in one outcome; a file that cannot be read is recorded with its reason and
never stops the run. A document is written whole or not at all, so a run that is killed
leaves each document old or new, and running it again finishes the job: files already stored
with the same bytes, tags and options are skipped without being parsed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from embedding import Embedder, load_embedder, resolve_model_dir
from pgkb.errors import ConfigurationError
from pgkb.settings import Engine, Settings, cpu_cores
from store import Collection, Store
from store.fulltext import unstorable

from .heap import map_large_blocks_apart
from .options import mask_policy, masker_options, parse_limits, parse_options
from .parsers.pool import ParserPool
from .pii import Masker, OutputMasker, load_masker
from .pipeline import run_files
from .ray_engine import ActorPoolEmbedder, RayCluster, RayCutter, check_shared_storage
from .report import FileOutcome, IngestReport, StageClock, failure
from .roots import place
from .sources import discover, key_of, leads_out, media_type_of, printable
from .stages import Cutter, FileStages, Fingerprints, LocalCutter, Models

log = logging.getLogger(__name__)


class UsageError(ConfigurationError):
    """Bad input from the user (a missing path, an unknown model...): nothing was ingested."""


def ingest(
    path: str | Path, settings: Settings | None = None, *,
    tags: dict[str, Any] | None = None, prune: bool = False, force: bool = False, prune_any_share: bool = False,
    add_root: bool = False,
    embedder: Embedder | None = None, masker: Masker | None = None,
    on_file: Callable[[FileOutcome, IngestReport], None] | None = None,
    stop: threading.Event | None = None, report: IngestReport | None = None, only: Iterable[Path] | None = None,
    engine: Engine | None = None,
) -> IngestReport:
    """Bring `settings.collection` up to date with a file or a folder; returns what happened.

    The path must lie under one of the collection's roots (the folders it was ingested from;
    documents are keyed by their path under it, see ingest.roots) or make the collection's
    first root; else it is refused (RootRefused, before anything is done) unless `add_root`.
    Unchanged files are skipped unless `force`; `tags` are attached to every document (over
    the folder and sidecar metadata, see ingest.metadata); `prune` removes the documents under
    the path whose files are gone, and refuses (UsageError, before anything is done) when the
    folder holds no file pgkb reads or when more than `settings.prune_max_share` of its
    documents would go, unless `prune_any_share`. `embedder` reuses a loaded model (else
    `settings.model` is loaded) and `masker` a loaded masker (else one is built from the
    settings, or none with masking off).
    `on_file` is called with each file's outcome as it is known (files end out of order; the
    report lists them by key). Setting `stop` finishes the documents in progress and ends
    the run as "interrupted". A `report` given is filled in as the run goes, so that the
    caller still holds it when the run raises (the database went away, a second Ctrl-C): its
    status is then "aborted" and its `error` says why. `only` limits the run to these files of
    the folder (keys stay relative to its root: the served API's uploads). `engine` overrides
    `settings.engine`: "ray" runs the stages on a Ray cluster (ingest.ray_engine), whose tasks
    mask with a masker of their own, built from the settings (`masker` then masks the outputs).
    """
    settings = settings or Settings.from_env()
    if engine is not None:
        settings = dataclasses.replace(settings, engine=engine)
    root = _checked_root(Path(path).expanduser(), prune)
    started = time.perf_counter()
    map_large_blocks_apart()  # before the model's first batch
    # Settings are checked now; the masker and the model load when first needed (the masker for
    # file names, unless PGKB_PII_KEYS=keep, so a run that finds every file unchanged never
    # loads the model, and with real keys and no tags not the masker either).
    policy = masker.policy if masker else mask_policy(settings) if settings.pii else None
    parsing = parse_options(settings)
    mask_keys = settings.pii_keys == "mask"
    if not settings.pii:
        log.info("personal data masking is off (PGKB_PII=0 or --no-pii)")
    if embedder is None and settings.engine == "local":
        resolve_model_dir(settings.model, settings.allow_download)  # not on this machine: say so now
    cluster = RayCluster(settings) if settings.engine == "ray" else None
    if cluster and embedder is None:
        cluster.start_embedders()
    try:
        store = Store.open(settings)
    except BaseException:
        if cluster:  # else it lives on in this process
            cluster.close()
        raise
    try:
        models = _ModelLoader(settings, store, embedder, masker,
                              lambda: ActorPoolEmbedder(cluster) if cluster else load_model(settings))
        collection = _open_collection(settings, store, models, embedder)
        report = report or IngestReport(collection.name)
        mask_lock = threading.Lock()  # the masker's, shared by the documents' texts and the outputs
        # Keys, paths, tags and error texts, masked like the documents' texts (ingest.pii.outputs).
        outputs = OutputMasker(models.masker if policy else None, mask_keys, mask_lock)
        folder = root.resolve()
        paths = discover(folder, settings.follow_links)
        if only is not None:
            wanted = {path.resolve() for path in only}
            paths = [path for path in paths if path.resolve() in wanted]
        if prune:
            _check_prune_finds_files(folder, paths, settings.follow_links)
        placement = place(folder, collection, outputs.folders, add_root)
        if placement.moved_from:
            log.warning("collection %r was ingested from %s, which is gone: %s takes its place",
                        collection.name, placement.moved_from, placement.stored_root)
            collection = store.move_root(collection, placement.moved_from, placement.stored_root)
        stages = FileStages(settings, store, collection, models.load, outputs,
                            Fingerprints.of(settings, policy, parsing.passwords), placement, folder, tags or {},
                            force, StageClock(report.stage_seconds))
        if cluster:
            readable = _readable(paths, folder, settings.follow_links)
            if readable:
                check_shared_storage(cluster, readable[0])
            workers = max(1, min(settings.workers or cluster.cpus(), len(paths)))
        else:
            workers = _parse_workers(settings.workers, len(paths))
        outputs.name(placement.root, paths)
        if prune:
            _check_prune_share(stages, paths, settings.prune_max_share if not prune_any_share else 1.0)
        if placement.new:
            collection = store.add_root(collection, placement.stored_root)
        report.known_failures = {failure(e["key"], e["reason"], e.get("sha256"))
                                 for e in store.last_complete_run_errors(collection, placement.stored_folder)}
        run_id = report.run_id = store.start_run(collection, {
            "path": placement.stored_folder, "model": collection.space["model"], "prune": prune,
            "force": force, "tags": outputs.values(tags or {}), "pii": policy.describe() if policy else "off",
            "workers": workers, "engine": settings.engine, **({"keys": "kept"} if policy and not mask_keys else {}),
        })
        try:
            cutter = RayCutter(cluster, settings, folder) if cluster else LocalCutter(
                ParserPool(parsing, parse_limits(settings), workers), mask_lock, settings.embed_headings)
            _sync(settings, store, stages, cutter, paths, workers, stop or threading.Event(), report, on_file)
            if prune and report.status != "interrupted":
                report.pruned = _prune(store, stages, {outcome.key for outcome in report.files})
            if any(f.chunks for f in report.files) or report.pruned:
                store.analyze()
        except BaseException as exc:
            # A second Ctrl-C stops the documents in progress too (the next run does them again);
            # the database went away, or a signal.
            report.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "aborted"
            report.error = _abort_reason(exc)
            raise
        finally:
            report.unmasked = models.unfound()
            report.seconds = time.perf_counter() - started
            _record_end(store, run_id, report)
        return report
    finally:
        store.close()
        if cluster:
            cluster.close()


def _checked_root(root: Path, prune: bool) -> Path:
    if not root.exists():
        raise UsageError(f"{root}: no such file or folder")
    if prune and not root.is_dir():
        raise UsageError(f"--prune needs a folder (the whole of what the collection mirrors), not the file {root}")
    return root


def load_model(settings: Settings) -> Embedder:
    """The embedding model the settings name, as ingest runs it."""
    return load_embedder(settings.model, dims=settings.dims or None, query_instruction=settings.query_instruction,
                         **settings.embedder_options())


class _ModelLoader:
    """The masker and the embedding model, loaded once, by the first thread that needs them:
    `embedder` if given, else what `load_model` loads (here, or in Ray actors)."""

    def __init__(self, settings: Settings, store: Store, embedder: Embedder | None, masker: Masker | None,
                 load_model: Callable[[], Embedder]):
        self.settings, self.store, self.embedder, self._masker = settings, store, embedder, masker
        self.load_model = load_model
        self._loaded: Models | None = None
        self._lock = threading.Lock()
        self._masker_lock = threading.Lock()

    def masker(self) -> Masker | None:
        """The masker alone (file names, tags and error texts need no model)."""
        with self._masker_lock:
            if self._masker is None and self.settings.pii:
                self._masker = load_masker(masker_options(self.settings))
            return self._masker

    def unfound(self) -> str | None:
        """What the masker, if it was loaded, could not look for (Masker.unfound)."""
        return self._masker.unfound() if self._masker else None

    def load(self) -> Models:
        with self._lock:
            if self._loaded is None:
                settings = self.settings
                masker = self.masker()
                embedder = self.embedder or self.load_model()
                collection = self.store.collection(settings.collection, embedder.space.to_dict(), settings.unlabelled)
                max_tokens = min(settings.chunk_tokens, embedder.max_text_tokens)
                self._loaded = Models(embedder, masker, collection, max_tokens)
            return self._loaded


def _open_collection(settings: Settings, store: Store, models: _ModelLoader, embedder: Embedder | None) -> Collection:
    """The collection, created with the model's embedding space when new (the model loads); else
    checked against the model named, even when nothing needs embedding."""
    collection = store.find_collection(settings.collection)
    if collection is None:
        return models.load().collection
    collection.check_space({"model": embedder.space.model if embedder else settings.model,
                            **({"dims": settings.dims} if settings.dims and not embedder else {})})
    return collection


def _readable(paths: list[Path], folder: Path, follow_links: bool) -> list[Path]:
    """The files of `paths` that pgkb reads (a storable name, a known type, not a link left out)."""
    return [path for path in paths if not unstorable(key_of(path, folder)) and media_type_of(path) is not None
            and (follow_links or not leads_out(path, folder))]


def _check_prune_finds_files(folder: Path, paths: list[Path], follow_links: bool) -> None:
    """Refuse to prune from a folder with no file pgkb reads (empty, unmounted or mistyped)."""
    if not _readable(paths, folder, follow_links):
        raise UsageError(f"--prune refused: {folder} holds no file pgkb reads (empty, unmounted or "
                         "mistyped?); nothing was done")


def _check_prune_share(stages: FileStages, paths: list[Path], max_share: float) -> None:
    """Refuse a prune that would remove more than `max_share` of the documents under the folder."""
    present = {stages.outputs.key(path) for path in _readable(paths, stages.folder, stages.follow_links)}
    here = _documents_under_folder(stages)
    gone = {key for key in here - present if not any(holder in present for holder in _holders(key))}
    if len(gone) > max_share * len(here):
        raise UsageError(f"--prune refused: it would remove {len(gone)} of the {len(here)} documents from "
                         f"{stages.folder}, more than {max_share:.0%} (PGKB_PRUNE_MAX_SHARE); pass --yes if "
                         "that is what you want; nothing was done")


def _holders(key: str) -> list[str]:
    """The keys a document's key lies under: where one is a file's, the document is a file it
    holds (an e-mail's attachment, ingest.stages), present while that file is."""
    parts = key.split("/")
    return ["/".join(parts[:end]) for end in range(1, len(parts))]


def _documents_under_folder(stages: FileStages) -> set[str]:
    """The keys of the documents whose files lay under the run's folder: those it may prune
    (another root's, or another folder's of the same root, are never its to remove)."""
    return {key for key, state in stages.known.items() if stages.placement.holds(state.path)}


def _sync(settings: Settings, store: Store, stages: FileStages, cutter: Cutter, paths: list[Path], workers: int,
          stop: threading.Event, report: IngestReport,
          on_file: Callable[[FileOutcome, IngestReport], None] | None) -> None:
    """Every file through the stages, in the store's bulk load; the report's files and status."""
    report.total_files = len(paths)
    report.files_started_at = time.perf_counter()

    def record(outcome: FileOutcome) -> None:  # in the writer thread, one outcome at a time
        report.files.append(outcome)
        if outcome.outcome in ("ingested", "updated") and outcome.chunks:
            log.info("%s: %d chunks", printable(outcome.key), outcome.chunks)
        if on_file:
            on_file(outcome, report)

    try:
        with store.bulk_load(stages.collection) as load:
            run_files(stages, paths, cutter, workers, stop, settings.batch_tokens, record)
            report.files.sort(key=lambda outcome: outcome.key)
    finally:
        cutter.close()
    if load.deferred:
        report.stage_seconds["index"] += load.index_seconds
    report.status = "interrupted" if stop.is_set() else report.finished_status()


def _prune(store: Store, stages: FileStages, seen: set[str]) -> list[str]:
    """Remove the documents under the run's folder whose files it did not see; their keys."""
    gone = sorted(_documents_under_folder(stages) - seen)
    store.delete_documents(stages.collection, gone)
    for key in gone:
        log.info("%s: pruned", printable(key))
    return gone


def _parse_workers(asked: int, files: int) -> int:
    """Files parsed at once: as asked (0: one per CPU core, at most 4), yet no more than the
    CPU cores, since parsing keeps each busy and every worker is a process of its own, nor
    than the files."""
    cores = cpu_cores()
    if asked > cores:
        log.warning("%d workers asked for; %d used, one per CPU core", asked, cores)
    return max(1, min(asked or 4, cores, files))


def _abort_reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "stopped by Ctrl-C"
    if isinstance(exc, OperationalError):
        return f"the database went away ({exc.orig})"
    if isinstance(exc, Exception):
        return f"{type(exc).__name__}: {exc}"
    return str(exc) or type(exc).__name__  # a signal's exception says which


def _record_end(store: Store, run_id: int, report: IngestReport) -> None:
    counts = {**report.counts(), "stage_seconds": {k: round(v, 3) for k, v in report.stage_seconds.items()}}
    # With the bytes' hash, so that the next run tells a changed file's failure from this one.
    errors = [{"key": f.key, "reason": f.reason, "sha256": f.sha256} for f in report.failed]
    try:
        store.finish_run(run_id, report.status, counts, errors)
    except OperationalError as exc:  # the database went away: say so, but keep the first error
        log.warning("could not record the end of ingest run %s: %s", run_id, exc.orig)
