"""One command for every benchmark, each side by side with its peer in the same run; results in
a folder (one JSON per benchmark and summary.json), BENCHMARKS.md and PNG plots.

    python -m bench                       # the full run: ../shared/corpus and ../shared/eval
    python -m bench --quick               # small generated inputs: a smoke run of a few minutes
    python -m bench --only parsing,ingest_e2e --corpus ./docs
    python -m bench --gpu                 # adds the GPU embedding benchmark (an NVIDIA GPU, offline)
    python -m bench --report-only         # BENCHMARKS.md and the plots again, from bench/results

The full run writes bench/results/ and the repository's BENCHMARKS.md (and the README's
Performance table); any other results folder (--results, or --quick's default) gets its own
BENCHMARKS.md beside its JSON. Exit status 1 when a benchmark failed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import report
from bench.fixtures import write_inputs
from bench.harness import (
    BENCHMARKS,
    ROOT,
    SHARED,
    Inputs,
    Plan,
    RunRecord,
    ensure_peer,
    git_commit,
    gpu_absent,
    machine_info,
    pgkb_versions,
    run_benchmark,
)

DEFAULT_RESULTS = ROOT / "bench" / "results"
QUICK_RESULTS = Path(tempfile.gettempdir()) / "pgkb-bench-quick"
DEFAULT_WORK = Path(tempfile.gettempdir()) / "pgkb-bench"
DEFAULT_PEERS = Path(tempfile.gettempdir()) / "peers"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small generated inputs, one round each (a smoke run)")
    parser.add_argument("--only", action="append", metavar="NAME[,NAME]",
                        help=f"run only these (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--corpus", type=Path, help="the documents folder (default: ../shared/corpus; "
                                                    "--quick: generated documents)")
    parser.add_argument("--eval", type=Path, default=SHARED / "eval",
                        help="folder with retrieval/dbpedia and retrieval/cmrc2018 (BEIR) and "
                             "pii/presidio-synth-v2.json and tables/icdar2013-eu (default ../shared/eval; "
                             "generated stand-ins where missing)")
    parser.add_argument("--gpu", action="store_true", help="add the GPU embedding benchmark")
    parser.add_argument("--repeats", type=int, help="rounds of every benchmark that repeats (default: each its own)")
    parser.add_argument("--results", type=Path, help=f"results folder (default {DEFAULT_RESULTS.relative_to(ROOT)}; "
                                                     f"--quick: {QUICK_RESULTS})")
    parser.add_argument("--work-dir", type=Path, help=f"inputs, logs and the benchmarks' databases (default "
                                                      f"{DEFAULT_WORK}; --quick: a temporary folder)")
    parser.add_argument("--peers-dir", type=Path, default=DEFAULT_PEERS, help="the peers' virtualenvs")
    parser.add_argument("--report-only", action="store_true", help="rebuild the page and plots from the results")
    args = parser.parse_args(argv)

    results = (args.results or (QUICK_RESULTS if args.quick else DEFAULT_RESULTS)).resolve()
    page = ROOT / "BENCHMARKS.md" if results == DEFAULT_RESULTS.resolve() else results / "BENCHMARKS.md"
    if args.report_only:
        report.build(results, page)
        print(f"bench: {page} and {results / 'plots'} rebuilt from {results}")
        return 0

    selected = _selected(parser, args.only, args.gpu)
    started = time.perf_counter()
    temporary_work = args.work_dir is None and args.quick
    work = Path(tempfile.mkdtemp(prefix="pgkb-bench-")) if temporary_work else (args.work_dir or DEFAULT_WORK)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # as root, the embedded PostgreSQL runs as a user that must reach it
    results.mkdir(parents=True, exist_ok=True)
    plan = Plan(args.quick, args.repeats, _inputs(args, work), results, work, args.peers_dir.resolve())
    context: dict[str, Any] = {"machine": machine_info(work), "pgkb_versions": pgkb_versions(),
                               "inputs": plan.inputs.description, "peers": {}}
    runs: dict[str, RunRecord] = {}
    to_run = []
    for name in selected:
        absent = gpu_absent() if BENCHMARKS[name].gpu else None
        if absent:
            runs[name] = RunRecord("skipped", reason=absent, commit=git_commit(), quick=args.quick)
            print(f"\nbench: {name} skipped: {absent}", flush=True)
        else:
            to_run.append(name)
    install_started = time.perf_counter()
    peers = {benchmark.peer for benchmark in map(BENCHMARKS.__getitem__, to_run) if benchmark.peer is not None}
    peer_failures = _ensure_peers(plan, peers, context["peers"])
    install_seconds = time.perf_counter() - install_started
    for name in to_run:
        benchmark = BENCHMARKS[name]
        if benchmark.peer in peer_failures:
            runs[name] = RunRecord("failed", reason=f"installing the peer {benchmark.peer} failed: "
                                   f"{peer_failures[benchmark.peer]}", commit=git_commit(), quick=args.quick)
            continue
        runs[name] = run_benchmark(benchmark, plan, work / "logs")
    context["total_seconds"] = time.perf_counter() - started
    installed_any = any(peer["install_seconds"] for peer in context["peers"].values())
    context["peer_install_seconds"] = install_seconds if installed_any else 0  # wall time: they ran at once

    summary = report.build(results, page, runs, context)
    _print_summary(summary, runs, page, context)
    failed = [name for name, record in runs.items() if record.status == "failed"]
    if temporary_work and not failed:
        shutil.rmtree(work, ignore_errors=True)
    elif failed:
        print(f"bench: failed: {', '.join(failed)}; logs in {work / 'logs'}", file=sys.stderr)
    return 1 if failed else 0


def _selected(parser: argparse.ArgumentParser, only: list[str] | None, gpu: bool) -> list[str]:
    """The benchmarks to run, in BENCHMARKS's order; the GPU one only when asked for."""
    if not only:
        return [name for name, benchmark in BENCHMARKS.items() if gpu or not benchmark.gpu]
    names = {name.strip() for part in only for name in part.split(",") if name.strip()}
    unknown = names - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark {', '.join(sorted(unknown))}: choose from {', '.join(BENCHMARKS)}")
    return [name for name in BENCHMARKS if name in names]


def _inputs(args: argparse.Namespace, work: Path) -> Inputs:
    """The documents, BEIR sets and PII sample of this run: given, shared, or generated (quick)."""
    generated = None

    def fixtures():
        nonlocal generated
        if generated is None:
            generated = write_inputs(work / "inputs")
        return generated

    beir, chinese_beir = args.eval / "retrieval" / "dbpedia", args.eval / "retrieval" / "cmrc2018"
    synth = args.eval / "pii" / "presidio-synth-v2.json"
    if args.corpus:
        documents, origin = args.corpus.resolve(), "given (--corpus)"
    elif args.quick:
        documents, origin = fixtures().documents, "generated (bench/fixtures.py)"
    elif (SHARED / "corpus").is_dir():
        documents, origin = SHARED / "corpus", "../shared/corpus"
    else:
        raise SystemExit("bench: no documents: give --corpus DIR (or --quick for generated ones)")
    use_shared = not args.quick and (beir / "corpus.jsonl").is_file()
    beir_origin = str(beir) if use_shared else "generated (bench/fixtures.py)"
    beir = beir if use_shared else fixtures().beir
    chinese_shared = not args.quick and (chinese_beir / "corpus.jsonl").is_file()
    chinese_origin = str(chinese_beir) if chinese_shared else "generated (bench/fixtures.py)"
    chinese_beir = chinese_beir if chinese_shared else fixtures().chinese_beir
    synth_shared = not args.quick and synth.is_file()
    synth_origin = str(synth) if synth_shared else "generated (bench/fixtures.py)"
    synth = synth if synth_shared else fixtures().pii_synth
    tables = args.eval / "tables" / "icdar2013-eu"
    tables_shared = not args.quick and any(tables.glob("*-str.xml"))
    tables_origin = str(tables) if tables_shared else "generated (bench/fixtures.py)"
    tables = tables if tables_shared else fixtures().tables
    return Inputs(documents, beir, chinese_beir, synth, tables, {"documents": f"{documents}: {origin}",
                                                                 "retrieval set": beir_origin,
                                                                 "Chinese retrieval set": chinese_origin,
                                                                 "PII sample": synth_origin,
                                                                 "table set": tables_origin})


def _ensure_peers(plan: Plan, keys: set[str], peers: dict) -> dict[str, Exception]:
    """Install the peers that are missing, all at once (each pip runs on one core: on a fresh
    machine three installs in turn were 3.6 minutes of a quick run); their records go into
    `peers`. Returns the peers whose install failed, with the error: their benchmarks fail, the
    others run."""
    failures = {}
    with ThreadPoolExecutor(max_workers=max(len(keys), 1)) as pool:
        futures = {key: pool.submit(ensure_peer, plan, key) for key in sorted(keys)}
    for key, future in futures.items():
        try:
            peers[key] = future.result()
        except Exception as error:  # noqa: BLE001 - the run goes on with the other benchmarks
            failures[key] = error
    return failures


def _print_summary(summary: dict, runs: dict[str, RunRecord], page: Path, context: dict) -> None:
    print("\nbench: pgkb's figures, its advantage over the peer, and the target")
    for figure in summary["figures"]:
        if figure["benchmark"] not in runs:
            continue
        value = report.value_text(figure["pgkb"], figure["unit"]) if figure["pgkb"] is not None else "not measured"
        met = {True: ", met", False: ", NOT met", None: ""}[figure["met"]]
        print(f"  {figure['name']}: {value}; ratio {report.ratio_text(figure['ratio'])}{met}")
    installs = context["peer_install_seconds"]
    print(f"bench: {len(runs)} benchmark(s) in {context['total_seconds']:.0f} s"
          + (f", of which {installs:.0f} s installing peers" if installs else "")
          + f"; page {page}")


if __name__ == "__main__":
    sys.exit(main())
