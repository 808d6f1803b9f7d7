"""Runs the benchmarks of bench/ one after another, each side by side with its peer, and
gathers what they measured into a results folder (see bench/__main__.py for the command).

Each benchmark is its own script, run as a subprocess (`python -m bench.NAME ... --json FILE`)
so that one's imports, threads and memory never colour the next one's figures; its output goes
to the console and to a log in the work folder. Each peer lives in a virtualenv of its own
under the peers folder, created the first time a benchmark needs it; its install time is
recorded. The sizes of a run (quick or full) are here, in `arguments`, and BENCHMARKS.md
states them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import bulk_load, ingest_e2e, parsing, search_latency
from bench.peers import bm25, make_venv
from bench.peers.langchain_ingest import PACKAGES as LANGCHAIN_PACKAGES

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PGKB_PACKAGES = ("pgkb", "torch", "transformers", "tokenizers", "sentence-transformers", "numpy", "pymupdf",
                 "python-docx", "unstructured", "presidio-analyzer", "spacy", "jieba", "psycopg", "SQLAlchemy",
                 "pgvector", "pgserver", "matplotlib")
# Nothing a benchmark runs may download: the Hugging Face libraries are told so as well.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "DO_NOT_TRACK": "true", "SCARF_NO_ANALYTICS": "true"}

# The full run's sizes, chosen to finish within 45 minutes on a 2-core machine (BENCHMARKS.md
# says why): the ingest scale series on a sample of the corpus spread over its file sizes,
# since 8x the whole corpus alone would take pgkb about 15 minutes and LangChain about 26;
# the masking share of ingest time on such a sample too (the ingest benchmark times pgkb with
# and without masking on the whole corpus).
SCALES = "1,2,4,8"
SCALE_FILES = 16
PII_CORPUS_FILES = 48
EMBED_BANDS = "30-64,65-128,129-256"
EMBED_BAND_CHUNKS = 120
# The quick run's: every benchmark on a few small generated files and sets, in a few minutes.
QUICK_FILES = 4
QUICK_SCALES = "1,2"
QUICK_QUERIES = 40
QUICK_CHUNKS = 2_000  # search latency's collection (its own --quick has 10,000, a user's first look)
QUICK_SERVE_SECONDS = 1  # per level and side of the serving load test (its own --quick has 3)


@dataclass(frozen=True)
class Peer:
    """A peer's virtualenv: its folder under the peers folder, how it is made, and the
    packages whose versions are reported (all of them must be installed for it to count)."""

    folder: str
    setup: Callable[[Path], None]
    packages: tuple[str, ...]


PEERS = {
    "unstructured": Peer("unstructured-pdf", parsing.setup_peer,
                         ("unstructured", "unstructured-inference", "pdfminer.six", "spacy", "onnxruntime")),
    "langchain": Peer("langchain", ingest_e2e.setup_peer, LANGCHAIN_PACKAGES),
    "langchain-postgres": Peer("langchain-postgres",
                               lambda venv: make_venv(venv, list(bulk_load.PEER_REQUIREMENTS)),
                               ("langchain-postgres", "langchain-core", "psycopg", "SQLAlchemy", "pgvector")),
    "bm25": Peer("bm25", bm25.setup, bm25.PACKAGES),
}


@dataclass(frozen=True)
class Inputs:
    documents: Path    # a folder of PDFs and DOCX (and what else ingest reads)
    beir: Path         # a BEIR-format set: corpus.jsonl, queries.jsonl, qrels/test.tsv
    chinese_beir: Path  # a Chinese one, with a train split too (queries-train.jsonl, qrels/train.tsv)
    pii_synth: Path    # presidio-synth's JSON layout
    tables: Path       # NAME.pdf with NAME-str.xml, the ICDAR 2013 table structure ground truth
    description: dict  # where each came from, for the page


@dataclass
class Plan:
    """One run: which sizes, on what, and where everything goes."""

    quick: bool
    repeats: int | None   # None: each benchmark's own default
    inputs: Inputs
    results: Path
    work: Path
    peers: Path

    def out(self, name: str) -> Path:
        return self.results / f"{name}.json"

    def venv(self, peer: str) -> Path:
        return self.peers / PEERS[peer].folder

    def repeat(self, quick: int, full: int | None) -> list[str]:
        count = self.repeats or (quick if self.quick else full)
        return ["--repeats", str(count)] if count else []


@dataclass(frozen=True)
class Benchmark:
    name: str
    issue: int
    title: str
    peer: str | None                      # a key of PEERS; None: the peer runs in pgkb's environment
    arguments: Callable[[Plan], list]
    gpu: bool = False


def _parsing(plan: Plan) -> list:
    return ["--corpus", plan.inputs.documents, "--peer-venv", plan.venv("unstructured"), "--json", plan.out("parsing"),
            *plan.repeat(1, None), *(["--limit", QUICK_FILES + 2] if plan.quick else [])]


def _pii_eval(plan: Plan) -> list:
    return ["--synth", plan.inputs.pii_synth, "--examples", ROOT / "examples", "--corpus", plan.inputs.documents,
            "--json", plan.out("pii_eval"),
            *(["--chinese-samples", 100, "--corpus-files", QUICK_FILES + 2] if plan.quick else
              ["--corpus-files", PII_CORPUS_FILES])]


def _embed_cpu(plan: Plan) -> list:
    sizes = ["--chunks", 48, "--band-chunks", 16] if plan.quick else ["--band-chunks", EMBED_BAND_CHUNKS]
    return ["--corpus", plan.inputs.beir / "corpus.jsonl", "--bands", EMBED_BANDS, *sizes, "--json",
            plan.out("embed_cpu"), *plan.repeat(1, None)]


def _embed_gpu(plan: Plan) -> list:
    sizes = ["--shapes", "0.6B", "--chunks", 256] if plan.quick else []
    return ["--corpus", plan.inputs.beir / "corpus.jsonl", *sizes, "--json", plan.out("embed_gpu"),
            *plan.repeat(1, None)]


def _ingest_e2e(plan: Plan) -> list:
    sizes = ["--limit", QUICK_FILES, "--scale", QUICK_SCALES] if plan.quick else \
        ["--scale", SCALES, "--scale-files", SCALE_FILES]
    return ["--corpus", plan.inputs.documents, "--peer-venv", plan.venv("langchain"), "--scale-peer", *sizes,
            "--json", plan.out("ingest_e2e"), *plan.repeat(1, None)]


def _retrieval_quality(plan: Plan) -> list:
    return ["--set", plan.inputs.beir, "--set", plan.inputs.chinese_beir, "--data-dir", plan.work / "retrieval-quality",
            "--peer-venv", plan.venv("bm25"), "--json", plan.out("retrieval_quality")]


def _search_latency(plan: Plan) -> list:
    return [*(["--quick", "--queries", QUICK_QUERIES, "--chunks", QUICK_CHUNKS] if plan.quick else []),
            "--corpus", plan.inputs.beir / "corpus.jsonl",
            "--chinese-corpus", plan.inputs.chinese_beir / "corpus.jsonl",
            "--data-dir", plan.work / "search-latency", "--peer-venv", plan.venv("langchain-postgres"),
            "--out", plan.out("search_latency")]


def _serve_load(plan: Plan) -> list:
    # search_latency's data folder: its collection, built there first, is searched again.
    return [*(["--quick", "--chunks", QUICK_CHUNKS, "--seconds", QUICK_SERVE_SECONDS] if plan.quick else []),
            "--corpus", plan.inputs.beir / "corpus.jsonl",
            "--chinese-corpus", plan.inputs.chinese_beir / "corpus.jsonl",
            "--data-dir", plan.work / "search-latency", "--out", plan.out("serve_load")]


def _tables(plan: Plan) -> list:
    return ["--data", plan.inputs.tables, "--json", plan.out("tables")]


BENCHMARKS = {b.name: b for b in [
    Benchmark("parsing", 3, "PDF parsing with chunking", "unstructured", _parsing),
    Benchmark("tables", 23, "Table structure in PDF (adjacency-relation F1)", None, _tables),
    Benchmark("pii_eval", 4, "Personal data masking", None, _pii_eval),
    Benchmark("embed_cpu", 5, "Embedding on CPU", None, _embed_cpu),
    Benchmark("embed_gpu", 5, "Embedding on GPU", None, _embed_gpu, gpu=True),
    Benchmark("ingest_e2e", 6, "End-to-end ingest", "langchain", _ingest_e2e),
    Benchmark("retrieval_quality", 20, "Retrieval quality against plain BM25 and exact dense search", "bm25",
              _retrieval_quality),
    Benchmark("search_latency", 7, "Search latency, HNSW recall, bulk load", "langchain-postgres", _search_latency),
    Benchmark("serve_load", 21, "HTTP search under load, against in-process search", None, _serve_load),
]}


@dataclass
class RunRecord:
    """What the harness knows of one benchmark's run, beside the figures in its JSON."""

    status: str                  # ok, failed or skipped
    command: str = ""
    seconds: float | None = None
    reason: str = ""             # why it failed or was skipped
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M"))
    commit: str = ""
    quick: bool = False


def ensure_peer(plan: Plan, key: str) -> dict:
    """The peer's virtualenv, made when it is missing or incomplete: its folder, install time
    (None when it was there already) and package versions."""
    peer, venv = PEERS[key], plan.venv(key)
    versions = venv_versions(venv / "bin" / "python", peer.packages)
    install_seconds = None
    if not all(versions.values()):
        print(f"bench: installing the peer {key} into {venv} (its own virtualenv)", flush=True)
        started = time.perf_counter()
        peer.setup(venv)
        install_seconds = time.perf_counter() - started
        versions = venv_versions(venv / "bin" / "python", peer.packages)
        print(f"bench: {key} installed in {install_seconds:.0f} s", flush=True)
    return {"venv": str(venv), "install_seconds": install_seconds, "versions": versions}


def venv_versions(python: Path, packages: tuple[str, ...]) -> dict[str, str | None]:
    """The installed version of each package in the environment of `python` (None: missing)."""
    if not python.exists():
        return dict.fromkeys(packages)
    script = ("import importlib.metadata as m, json, sys\n"
              "def version(name):\n"
              "    try: return m.version(name)\n"
              "    except m.PackageNotFoundError: return None\n"
              "print(json.dumps({name: version(name) for name in sys.argv[1:]}))")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    done = subprocess.run([str(python), "-c", script, *packages], capture_output=True, text=True, env=env)
    return json.loads(done.stdout) if done.returncode == 0 else dict.fromkeys(packages)


def pgkb_versions() -> dict[str, str | None]:
    return venv_versions(Path(sys.executable), PGKB_PACKAGES)


def run_benchmark(benchmark: Benchmark, plan: Plan, log_dir: Path) -> RunRecord:
    """The benchmark's script as a subprocess, its output both shown and logged."""
    arguments = [str(argument) for argument in benchmark.arguments(plan)]
    command = [sys.executable, "-m", f"bench.{benchmark.name}", *arguments]
    shown = " ".join(["python", "-m", f"bench.{benchmark.name}", *arguments])
    plan.out(benchmark.name).unlink(missing_ok=True)  # a failed run leaves no earlier figures behind
    log = log_dir / f"{benchmark.name}.log"
    print(f"\nbench: {benchmark.name} (issue {benchmark.issue}): {shown}", flush=True)
    started = time.perf_counter()
    with log.open("w") as written:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **OFFLINE_ENV}, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert process.stdout is not None  # stdout=PIPE
        for line in process.stdout:
            sys.stdout.write(line)
            written.write(line)
        returncode = process.wait()
    seconds = time.perf_counter() - started
    record = RunRecord("ok", shown, seconds, commit=git_commit(), quick=plan.quick)
    if returncode != 0 or not plan.out(benchmark.name).exists():
        tail = [line for line in log.read_text().splitlines() if line.strip()][-1:] or ["no output"]
        record.status = "failed"
        record.reason = f"exit status {returncode}: {tail[0][:300]} (log: {log})"
    print(f"bench: {benchmark.name} {record.status} in {seconds:.0f} s", flush=True)
    return record


def gpu_absent() -> str | None:
    """Why the GPU benchmark cannot run here, or None when it can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "no CUDA GPU on this machine"


def machine_info(work: Path) -> dict:
    import psutil
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    gpus = [f"{torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
            for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "gpu": ", ".join(gpus) or None, "os": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "load_average": os.getloadavg(), **database_versions(work)}


def database_versions(work: Path) -> dict:
    """PostgreSQL and pgvector of the embedded server the benchmarks use, started briefly."""
    from pgkb.settings import Settings
    from store import Store

    with ingest_e2e.embedded_server(work / "probe-db") as url:
        store = Store.open(Settings(database_url=url))
        try:
            facts = search_latency.server_facts(store)
        finally:
            store.close()
    return {"postgresql": facts["postgresql"], "pgvector": facts["pgvector"]}


def git_commit() -> str:
    """HEAD's commit, marked when the working tree has uncommitted changes to tracked files."""
    def git(*arguments: str) -> str:
        done = subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short=12", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += " + uncommitted changes"
    return commit or "unknown (not a git checkout)"
