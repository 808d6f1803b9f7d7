"""Ingest on Ray against the local engine: wall time, throughput and peak memory, and a model of
throughput against the number of CPU and GPU workers from the measured stage costs.

    python -m bench.ray_ingest                                 # ../shared/corpus, 1 round
    python -m bench.ray_ingest --limit 20 --json /tmp/ray.json  # a smoke run

Needs Ray (`pip install -e '.[ray]'`). The sides, each `python -m ingest CORPUS --quiet` in a
subprocess on the same files, into a fresh collection of one embedded PostgreSQL:
- local: the local engine with its defaults (parser workers: one per core, at most 4);
- ray, 1 worker / 2 workers: `--engine ray --workers N`, on the cluster of this machine alone
  that the command starts on 127.0.0.1 (its start counts in the wall time), one CPU embedding actor.

Wall time: from the subprocess's start to its exit (interpreter start, imports, the model's
load, and for Ray the cluster's start). Peak memory: the driver's resident set alone, and the
whole process tree's (the local engine's parser workers; Ray's GCS, raylet, dashboard and
workers, all children of the driver that started them). Pages/s: pages stored over wall time.

The model: each run records its busy seconds per stage (`ingest --report`). Parsing, masking and
chunking are per file and spread over CPU workers; embedding over embedding workers; reading
(hashing) and writing stay on the driver, one document per transaction, so they bound the
throughput whatever the cluster: time(cpus, gpus) = fixed + max((parse+mask+chunk)/cpus,
embed/gpus, read+write+index), the busy seconds and the fixed part (what no stage overlapped:
the cluster's start, the model's load) taken from the Ray run with 1 worker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.corpus import build_corpus
from bench.ingest_e2e import DEFAULT_CORPUS, NETGUARD, OFFLINE_ENV, ROOT, embedded_server, measure

SIDES = {"local": [], "ray, 1 worker": ["--engine", "ray", "--workers", "1"],
         "ray, 2 workers": ["--engine", "ray", "--workers", "2"]}
CUT_STAGES = ("parse", "mask", "chunk")
DRIVER_STAGES = ("read", "write", "index")
# The worker counts the model is shown for.
MODEL_CPUS = (1, 4, 16, 64)
MODEL_GPUS = (1, 4)


@dataclass
class Run:
    seconds: float
    peak_mib: float         # the process tree's
    driver_peak_mib: float  # the ingest process's alone
    documents: int
    pages: int
    stage_seconds: dict[str, float]

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="the documents folder")
    parser.add_argument("--limit", type=int, help="only the first N readable documents")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pgkb-bench-ray-") as work:
        folder = Path(work)
        folder.chmod(0o755)  # the embedded server's user passes through it
        files = build_corpus(args.corpus, folder / "corpus", 1, args.limit)
        (folder / "data").mkdir(mode=0o755)
        with embedded_server(folder / "data") as url:
            runs = {side: ingest(folder, url, side, flags) for side, flags in SIDES.items()}
    results = {"files": len(files), "load_average": os.getloadavg(), "cores": os.cpu_count(),
               "runs": {side: {**asdict(run), "pages_per_second": run.pages_per_second} for side, run in runs.items()},
               "model": throughput_model(runs["ray, 1 worker"])}
    print_results(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def ingest(folder: Path, url: str, side: str, flags: list[str]) -> Run:
    collection = "bench-" + "".join(c if c.isalnum() else "-" for c in side)
    report = folder / f"{collection}.json"
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("PGKB_", "RAY_")) and name not in ("DATABASE_URL", "PYTHONPATH")}
    # ROOT too: Ray's workers import pgkb's packages from there.
    env.update(OFFLINE_ENV, DATABASE_URL=url, PYTHONPATH=os.pathsep.join([str(NETGUARD), str(ROOT)]),
               PGKB_NETGUARD_LOG=str(folder / "network-refused.log"))
    command = [sys.executable, "-m", "ingest", str(folder / "corpus"), "-c", collection, "--quiet",
               "--report", str(report), *flags]
    # Exit status 1: some files failed, which is a result, not a failure of the run.
    seconds, peak, _ = measure(command, env, ROOT, succeeded=(0, 1))
    summary = json.loads(report.read_text())
    return Run(seconds, peak.mib, peak.root_peak_bytes / 2**20, summary["counts"]["ingested"],
               summary["counts"].get("pages", 0), summary["stage_seconds"])


def throughput_model(run: Run) -> dict:
    """Seconds for the corpus against CPU and GPU (embedding) workers, from `run`'s busy seconds."""
    cut = sum(run.stage_seconds.get(stage, 0.0) for stage in CUT_STAGES)
    embed = run.stage_seconds.get("embed", 0.0)
    driver = sum(run.stage_seconds.get(stage, 0.0) for stage in DRIVER_STAGES)
    # The stages overlap: the run took its slowest stage plus what nothing overlapped (the
    # cluster's start, the model's load, the first and last files).
    fixed = max(0.0, run.seconds - max(cut, embed, driver))
    table = {f"{cpus} CPU workers, {gpus} embedders": fixed + max(cut / cpus, embed / gpus, driver)
             for cpus in MODEL_CPUS for gpus in MODEL_GPUS}
    return {"cut_seconds": cut, "embed_seconds": embed, "driver_seconds": driver, "fixed_seconds": fixed,
            "cap_pages_per_second": run.pages / (fixed + driver) if fixed + driver else None,
            "seconds": table}


def print_results(results: dict) -> None:
    print(f"{results['files']} files; {results['cores']} cores; load average {results['load_average']}")
    local = results["runs"]["local"]["seconds"]
    for side, run in results["runs"].items():
        print(f"{side:>15}: {run['seconds']:7.1f} s ({run['seconds'] / local:4.2f}x local), "
              f"{run['pages_per_second']:6.1f} pages/s, peak {run['peak_mib']:6.0f} MiB "
              f"(driver {run['driver_peak_mib']:5.0f} MiB)")
    model = results["model"]
    print(f"model: parse+mask+chunk {model['cut_seconds']:.1f} s, embed {model['embed_seconds']:.1f} s, "
          f"driver (read, write, index) {model['driver_seconds']:.1f} s, fixed {model['fixed_seconds']:.1f} s")
    for label, seconds in model["seconds"].items():
        print(f"  {label:>30}: {seconds:6.1f} s, {results['runs']['local']['pages'] / seconds:6.1f} pages/s")


if __name__ == "__main__":
    sys.exit(main())
