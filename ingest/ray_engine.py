"""`ingest --engine ray`: the run's stages on a Ray cluster, with the local engine's guarantees.

The driver (the `ingest` process) lists the files and skips unchanged ones exactly as the local
engine does (ingest.stages: it reads each file once, for its hash), and it writes every
document in its own transaction. What costs CPU and GPU moves to the cluster:

- parsing, masking and chunking, as one Ray task per file (RayCutter): the same `cut_file`
  as the local engine, each file parsed in a worker process of the task's node under the
  same time and memory limits, so it fails for the same reasons;
- embedding, in a pool of actors (ActorPoolEmbedder): one per GPU (`num_gpus=1`), or one on
  CPUs, each loading the model once; the driver hands them batches of `batch_tokens`.

Back-pressure is the local engine's: a file is submitted by one of `workers` driver threads,
which waits for its task, so at most `workers` files are in flight, and the model is called
on bounded groups (ingest.pipeline). The folder must be on storage every node mounts at the
same path; `check_shared_storage` reads the first file on a node of the cluster to say so
at once. Ray is an extra (`pip install 'pgkb[ray]'`); its own cluster, when no address is
given, stays on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedding import Embedder, ModelProfile, load_embedder
from embedding.space import EmbeddingSpace
from pgkb.errors import ConfigurationError
from pgkb.settings import Settings

from .options import masker_options, parse_limits, parse_options
from .parsers import ParseError, ParseOptions
from .parsers.pool import ParseInterrupted, ParseLimits, ParserPool
from .pii import Masker, MaskerOptions, load_masker
from .sources import SourceFile
from .stages import Cut, Models, cut_file

log = logging.getLogger(__name__)

# A task whose worker process died (its node lost, the process killed) runs again this many
# times before its file fails; an actor that died restarts as often.
RETRIES = 2


def _ray() -> Any:
    """The ray module, or what to install."""
    try:
        import ray
    except ImportError:
        raise ConfigurationError("--engine ray (PGKB_ENGINE=ray) needs Ray: pip install 'pgkb[ray]'") from None
    return ray


class RayCluster:
    """The cluster a run uses: the one this process is connected to already, the one at
    `settings.ray_address`, or else a new one of this machine alone on 127.0.0.1, which
    ends with the run."""

    def __init__(self, settings: Settings):
        if settings.ray_address is None:
            # Read when ray is imported: its own cluster binds the loopback address, not the
            # machine's outward one, and sends no usage statistics.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray = self.ray = _ray()
        self.started = not ray.is_initialized()
        if self.started:
            if settings.ray_address is None:
                ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
                         log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=settings.ray_address, log_to_driver=False, configure_logging=False)
        self.settings = settings
        self.actors: list[Any] = []

    def cpus(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def gpus(self) -> int:
        return int(self.ray.cluster_resources().get("GPU", 0))

    def start_embedders(self) -> None:
        """The embedding actors, one per GPU of the cluster (or PGKB_RAY_EMBEDDERS), else one on
        CPUs, started now: they load the model while the driver opens the store and lists the
        files (on this machine, some 8 s of either). A run that finds every file unchanged
        never waits for them."""
        settings, gpus = self.settings, self.gpus()
        count = settings.ray_embedders or gpus or 1
        # On CPUs the actor reserves none, so the parsing tasks keep every core, as the local
        # engine's parsers and model share them.
        resources = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 0}
        actor_class = self.ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES, **resources)(_EmbeddingActor)
        self.actors = [actor_class.remote(settings, on_cpus=not gpus) for _ in range(count)]
        log.info("%d embedding actor(s) on %s", count, "GPUs" if gpus else "CPUs")

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self.started:
            self.ray.shutdown()


def check_shared_storage(cluster: RayCluster, path: Path) -> None:
    """ConfigurationError unless a node of the cluster reads `path` as this machine does."""
    ray = cluster.ray
    here = hashlib.sha256(path.read_bytes()).hexdigest()
    there = ray.get(ray.remote(num_cpus=0)(_file_hash).remote(str(path)))
    if there != here:
        seen = "cannot read it" if there is None else "reads other bytes there"
        raise ConfigurationError(f"--engine ray: a Ray worker {seen} ({path}): the folder must be on storage "
                                 "every node of the cluster mounts at the same path")


def _file_hash(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


@dataclass(frozen=True)
class _CutOptions:
    """What a task needs to cut files as the driver would: put in the object store once a run."""

    run: str  # a worker keeps its parser and masker from one task of the run to the next
    parsing: ParseOptions
    limits: ParseLimits
    masking: MaskerOptions | None
    tokenizer: Any
    profile: ModelProfile
    space: EmbeddingSpace
    max_tokens: int
    embed_headings: bool


class _Counter(Embedder):
    """The model's tokenizer alone, for chunking on a node without the model."""

    def _embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError("a token counter does not embed")


class _WorkerTools:
    """A worker process's parser pool, masker and token counter, for the tasks of one run."""

    current: _WorkerTools | None = None

    def __init__(self, options: _CutOptions):
        self.run = options.run
        self.parser = ParserPool(options.parsing, options.limits, workers=1)
        self.masker: Masker | None = load_masker(options.masking) if options.masking else None
        self.counter = _Counter(options.tokenizer, options.profile, options.space)

    @classmethod
    def of(cls, options: _CutOptions) -> _WorkerTools:
        if cls.current is None or cls.current.run != options.run:
            if cls.current is not None:
                cls.current.parser.close()
            cls.current = cls(options)
        return cls.current


def _cut_task(options: _CutOptions, path: str, media_type: str, key: str,
              data: bytes | None = None) -> Cut | tuple[str, str]:
    """A Ray task: `cut_file` on a node, of the file at `path`, or of `data` where the file is
    the driver's own (an attachment it took out of a message); a ParseError comes back as its
    reason and detail."""
    tools = _WorkerTools.of(options)
    with tempfile.TemporaryDirectory(prefix="pgkb-ray-") as folder:
        if data is not None:
            path = os.path.join(folder, f"file{Path(path).suffix}")
            Path(path).write_bytes(data)
        try:
            return cut_file(tools.parser, Path(path), media_type, key, tools.masker, nullcontext(),
                            tools.counter.count_tokens, options.max_tokens, options.embed_headings)
        except ParseError as exc:  # its pickled form would lose the reason
            return exc.reason, exc.detail


class RayCutter:
    """Files cut by Ray tasks. `cut` is called from the driver's parsing threads and waits for
    its task, so the files in flight are the threads'."""

    def __init__(self, cluster: RayCluster, settings: Settings, folder: Path):
        self.ray = cluster.ray
        self.settings = settings
        self.folder = folder  # on the shared storage; a file elsewhere travels as its bytes
        self.task = self.ray.remote(num_cpus=1, max_retries=RETRIES)(_cut_task)
        self._options: Any = None  # the object store's _CutOptions, put with the first file
        self._lock = threading.Lock()
        self._running: set[Any] = set()
        self._closed = False

    def cut(self, file: SourceFile, key: str, models: Models) -> Cut:
        ray = self.ray
        with self._lock:
            if self._closed:
                raise ParseInterrupted(str(file.path))
            data = None if file.path.is_relative_to(self.folder) else file.path.read_bytes()
            ref = self.task.remote(self._options_ref(models), str(file.path), file.media_type, key, data)
            self._running.add(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            raise ParseInterrupted(str(file.path)) from None
        except ray.exceptions.RayTaskError as exc:  # the task's own error, as the local engine would raise it
            raise exc.cause from None
        finally:
            with self._lock:
                self._running.discard(ref)
        if isinstance(result, tuple):
            raise ParseError(*result)
        return result

    def _options_ref(self, models: Models) -> Any:
        if self._options is None:
            settings, embedder = self.settings, models.embedder
            self._options = self.ray.put(_CutOptions(
                uuid.uuid4().hex, parse_options(settings), parse_limits(settings),
                masker_options(settings) if settings.pii else None, embedder.tokenizer, embedder.profile,
                embedder.space, models.max_tokens, settings.embed_headings))
        return self._options

    def close(self) -> None:
        """Cancel the tasks in flight: their files end in ParseInterrupted."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        for ref in running:
            self.ray.cancel(ref, force=True)


class _EmbeddingActor:
    """A Ray actor holding the model, loaded once."""

    def __init__(self, settings: Settings, on_cpus: bool):
        if on_cpus and hasattr(os, "sched_getaffinity"):
            import torch

            # Ray gives an actor without CPUs one thread; on CPUs the model wants the node's cores.
            torch.set_num_threads(len(os.sched_getaffinity(0)))
        self.embedder = load_embedder(settings.model, dims=settings.dims or None,
                                      query_instruction=settings.query_instruction, **settings.embedder_options())

    def describe(self) -> tuple[Any, ModelProfile, EmbeddingSpace]:
        return self.embedder.tokenizer, self.embedder.profile, self.embedder.space

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed_documents(texts)


class ActorPoolEmbedder(Embedder):
    """An Embedder whose documents are embedded by a pool of actors, a batch of about
    `batch_tokens` tokens each; this process holds the tokenizer only."""

    def __init__(self, cluster: RayCluster):
        """The cluster's embedding actors (RayCluster.start_embedders), once their model is loaded."""
        self.ray, self.actors, self.batch_tokens = cluster.ray, cluster.actors, cluster.settings.batch_tokens
        tokenizer, profile, space = self._get(self.actors[0].describe.remote())
        super().__init__(tokenizer, profile, space)

    def _embed(self, texts: list[str]) -> np.ndarray:
        from ray.util import ActorPool

        pieces = list(_pieces(texts, self.count_tokens(texts), self.batch_tokens))
        if not pieces:
            return np.zeros((0, self.space.dims), dtype=np.float32)
        try:  # in order, each actor taking the next piece as it finishes one
            return np.concatenate(list(ActorPool(self.actors).map(lambda a, piece: a.embed.remote(piece), pieces)))
        except self.ray.exceptions.RayTaskError as exc:  # the model's own error
            raise exc.cause from None

    def _get(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:  # the model's own error
            raise exc.cause from None


def _pieces(texts: list[str], tokens: list[int], budget: int) -> Iterator[list[str]]:
    """`texts` in order, cut into runs of about `budget` tokens."""
    piece: list[str] = []
    total = 0
    for text, count in zip(texts, tokens):
        if piece and total + count > budget:
            yield piece
            piece, total = [], 0
        piece.append(text)
        total += count
    if piece:
        yield piece

