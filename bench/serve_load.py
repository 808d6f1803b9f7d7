"""`pgkb serve` under load: searches over HTTP against `KnowledgeBase.search` in-process, from
the same number of threads, in one run on one machine.

    python -m bench.serve_load                  # 100,000 chunks, 20 s per level
    python -m bench.serve_load --quick          # 10,000 chunks, 3 s per level, a smoke run

The collection is bench/search_latency.py's (same flags, same data directory: built once and
reused), its documents readable by access groups: each document's `access` tag names the group
of its department (ACCESS_GROUPS groups, 1 / ACCESS_GROUPS of the documents each). The server
is `pgkb serve --port 0` on 127.0.0.1, in its own process; an admin key searches everything,
a read key with one group searches what that group may read.

For 1, 4 and 16 concurrent clients, each a thread with its own keep-alive httpx client, a fixed
duration of searches (k=10, hybrid): the queries half English, half Chinese, taken in turn; and
evenly mixed, with and without a 1% department filter, as the admin key and as the restricted
one (whose filters name a department it may read). Then the same mix through
`KnowledgeBase.search` in this process from as many threads (principals=the read key's groups
for the restricted searches). Every search asks a query not asked before in its process, so
each one embeds its query, as in bench/search_latency.py. A search is an error when it fails or
returns a hit of a document outside its key's reach.

Reported: requests per second, p50/p95 latency and errors per level and side, and the targets:
HTTP p95 <= 50 ms at 4 clients, HTTP throughput >= 80% of in-process at 16. The load average is
reported alongside: other people's jobs may share this machine's cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from bench.bulk_load import document_key
from bench.latency_rows import DEPARTMENTS, asked_questions, in_turn, make_queries
from bench.search_latency import ROOT, SearchCollection, add_collection_arguments, prepare_collection, server_facts
from bench.search_measures import K, percentiles
from pgkb.settings import Settings
from retrieval import KnowledgeBase
from store import Store
from store.tables import documents

DEFAULT_OUT = ROOT / "bench" / "results" / "serve_load.json"
CLIENTS = (1, 4, 16)
DEFAULT_SECONDS, QUICK_SECONDS = 20, 3  # per level and side
ACCESS_GROUPS = 10             # department dNN's documents are readable by group gN (NN mod 10)
RESTRICTED_GROUPS = ("g0",)    # the read key's: 1 / ACCESS_GROUPS of the documents
WARMUP_SECONDS = 5             # of each side, before the levels (at most --seconds)
QUERIES_PER_LANGUAGE = 20_000  # distinct queries: more than a full run asks in either process
TARGET_P95_MS, TARGET_P95_CLIENTS = 50, 4
TARGET_THROUGHPUT_SHARE, TARGET_THROUGHPUT_CLIENTS = 0.8, 16
# The mix, evenly: (name, filtered, restricted).
VARIANTS = (("no filter, admin", False, False), ("1% filter, admin", True, False),
            ("no filter, restricted", False, True), ("1% filter, restricted", True, True))


@dataclass(frozen=True)
class Search:
    query: str
    language: str
    variant: str
    filters: dict | None
    restricted: bool


def group_of(department: str) -> str:
    return f"g{int(department[1:]) % ACCESS_GROUPS}"


def tag_access(searched: SearchCollection) -> int:
    """Each document's access tag, the group of its department, written where it is not there
    yet (a rebuilt document comes back without tags); returns how many were written. A tag
    update is one row: the readers column is generated from it."""
    rows, store = searched.rows, Store.open(searched.settings)
    collection = store.collection(searched.settings.collection)
    with store.engine.connect() as conn:
        stored = dict(conn.execute(select(documents.c.key, documents.c.tags)
                                   .where(documents.c.collection_id == collection.id)).all())
    written = 0
    for document in range(rows.documents):
        metadata = rows.metadata(document)
        tags = {"access": [group_of(metadata["department"])]}
        if stored.get(document_key(document)) != tags:
            store.update_tags(collection, document_key(document), tags)
            written += 1
    store.close()
    return written


def search_mix(searched: SearchCollection, args: argparse.Namespace) -> list[Search]:
    """The searches, in the order they are asked: queries of each language in turn (each asked
    once), the variants in turn over pairs of them, so that each variant gets both languages."""
    english = make_queries(asked_questions(args.corpus.parent / "queries.jsonl"), searched.english,
                           QUERIES_PER_LANGUAGE, seed=3)
    chinese = make_queries(asked_questions(args.chinese_corpus.parent / "queries-train.jsonl"), searched.chinese,
                           QUERIES_PER_LANGUAGE, seed=3)
    queries = in_turn([(query, "English") for query in dict.fromkeys(english)],
                      [(query, "Chinese") for query in dict.fromkeys(chinese)])
    present = min(DEPARTMENTS, searched.rows.documents)
    readable = [d for d in range(present) if group_of(f"d{d:02d}") in RESTRICTED_GROUPS]
    departments = random.Random(2)
    searches = []
    for index, (query, language) in enumerate(queries):
        variant, filtered, restricted = VARIANTS[index // 2 % len(VARIANTS)]
        department = departments.choice(readable if restricted else range(present))
        searches.append(Search(query, language, variant,
                               {"metadata.department": f"d{department:02d}"} if filtered else None, restricted))
    return searches


def reachable(search: Search, departments: Sequence[str]) -> bool:
    """Whether every hit (by its department) is within the search's key's reach."""
    return not search.restricted or all(group_of(d) in RESTRICTED_GROUPS for d in departments)


# -- the two sides ----------------------------------------------------------------------------

# A side makes one caller per client thread; a caller runs one search and says whether it went
# right, and how long the search took inside the server (its took_ms; None in-process).
Caller = Callable[[Search], tuple[bool, float | None]]


def http_side(url: str, collection: str, keys: dict[bool, str]) -> Callable[[], Caller]:
    """Searches over HTTP, each client thread with its own keep-alive connection; `keys` by restricted."""
    def caller() -> Caller:
        client = httpx.Client(base_url=url, timeout=60)

        def search(request: Search) -> tuple[bool, float | None]:
            response = client.post(f"/v1/collections/{collection}/search",
                                   json={"query": request.query, "k": K, "filters": request.filters},
                                   headers={"Authorization": f"Bearer {keys[request.restricted]}"})
            if response.status_code != 200:
                return False, None
            found = response.json()
            return reachable(request, [hit["metadata"]["department"] for hit in found["hits"]]), found["took_ms"]

        return search

    return caller


def in_process_side(kb: KnowledgeBase) -> Callable[[], Caller]:
    """The same searches through `kb`, shared by the threads as the server shares its own."""
    def caller() -> Caller:
        def search(request: Search) -> tuple[bool, float | None]:
            hits = kb.search(request.query, k=K, filters=request.filters,
                             principals=list(RESTRICTED_GROUPS) if request.restricted else None)
            return reachable(request, [hit.metadata["department"] for hit in hits]), None

        return search

    return caller


@dataclass
class Timed:
    variant: str
    milliseconds: float
    ok: bool
    inside_server_ms: float | None


def run_level(side: Callable[[], Caller], searches: list[Search], next_search: Iterator[int], clients: int,
              seconds: float) -> dict[str, Any]:
    """`clients` threads searching for `seconds`, each starting its next search as soon as its
    last one ends; a search started before the end is waited for and counted."""
    timed: list[Timed] = []  # list.append is atomic: the threads share it
    ready = threading.Barrier(clients + 1)
    deadline = 0.0

    def client() -> None:
        search = side()
        ready.wait()
        while time.perf_counter() < deadline:
            request = searches[next(next_search) % len(searches)]
            started = time.perf_counter()
            try:
                ok, inside_server_ms = search(request)
            except Exception:  # noqa: BLE001 - counted as an error; the load goes on
                ok, inside_server_ms = False, None
            timed.append(Timed(request.variant, (time.perf_counter() - started) * 1000, ok, inside_server_ms))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    load_before = os.getloadavg()
    started = time.perf_counter()
    deadline = started + seconds
    ready.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    milliseconds = [t.milliseconds for t in timed]
    inside_server = [t.inside_server_ms for t in timed if t.inside_server_ms is not None]
    return {
        "requests": len(timed), "seconds": elapsed, "requests_per_second": len(timed) / elapsed,
        **{f"{name}_ms": value for name, value in percentiles(milliseconds).items()},
        **({"inside_server_ms": percentiles(inside_server)} if inside_server else {}),
        "errors": sum(not t.ok for t in timed), "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "by_variant": {name: {"requests": len(values), **percentiles(values)} for name, values in
                       ((name, [t.milliseconds for t in timed if t.variant == name]) for name, *_ in VARIANTS)
                       if values},
    }


# -- the server -------------------------------------------------------------------------------

@contextmanager
def served(searched: SearchCollection, log: Path) -> Iterator[str]:
    """`pgkb serve` on a free port of 127.0.0.1 over the collection's store; yields its URL."""
    settings = searched.settings
    command = [str(Path(sys.executable).parent / "pgkb"), "serve", "--host", "127.0.0.1", "--port", "0",
               "--data-dir", str(settings.data_dir)]  # the rest of the settings from the environment, as here
    with log.open("w") as written:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=written, cwd=ROOT)
    try:
        url = _wait_until_ready(process, log)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_until_ready(process: subprocess.Popen, log: Path, seconds: float = 300) -> str:
    deadline = time.monotonic() + seconds
    while not (found := re.search(r"serving on (http://127\.0\.0\.1:\d+)", log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"pgkb serve did not start; its log:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    while True:  # the application (the store opened) starts after the socket is bound
        try:
            if httpx.get(f"{found.group(1)}/v1/ready").status_code == 200:
                return found.group(1)
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"pgkb serve never became ready; its log:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


@contextmanager
def bench_keys(settings: Settings) -> Iterator[dict[bool, str]]:
    """An admin key and a read key of RESTRICTED_GROUPS, by restricted; revoked afterwards."""
    store = Store.open(settings)
    made = {False: store.create_key("serve_load admin", "admin", [settings.collection], []),
            True: store.create_key("serve_load reader", "read", [settings.collection], RESTRICTED_GROUPS)}
    try:
        yield {restricted: new.secret for restricted, new in made.items()}
    finally:
        for new in made.values():
            store.revoke_key(new.key.id)
        store.close()


# -- the run ----------------------------------------------------------------------------------

def measure(searched: SearchCollection, searches: list[Search], seconds: float, log: Path) -> list[dict]:
    """Every level, HTTP then in-process (so that load from other jobs falls on both sides)."""
    settings = searched.settings
    # Each side walks the searches from the start, never asking a query twice (the warm-up's are
    # its first ones), so that each search embeds its query.
    http_next, in_process_next = itertools.count(), itertools.count()  # next() is atomic
    levels = []
    with bench_keys(settings) as keys, served(searched, log) as url, KnowledgeBase(settings) as kb:
        http, in_process = http_side(url, settings.collection, keys), in_process_side(kb)
        warmup = min(WARMUP_SECONDS, seconds)
        for side, next_search in ((http, http_next), (in_process, in_process_next)):
            run_level(side, searches, next_search, TARGET_P95_CLIENTS, warmup)
        for clients in CLIENTS:
            print(f"{clients} client(s), {seconds:g} s each side ...", flush=True)
            levels.append({"clients": clients,
                           "http": run_level(http, searches, http_next, clients, seconds),
                           "in_process": run_level(in_process, searches, in_process_next, clients, seconds)})
    asked = max(next(http_next), next(in_process_next))
    if asked > len(searches):
        print(f"note: {asked - len(searches)} searches asked a query again (only {len(searches)} distinct)")
    return levels


def targets(levels: list[dict]) -> dict[str, Any]:
    by_clients = {level["clients"]: level for level in levels}
    p95 = by_clients[TARGET_P95_CLIENTS]["http"]["p95_ms"]
    share = (by_clients[TARGET_THROUGHPUT_CLIENTS]["http"]["requests_per_second"]
             / by_clients[TARGET_THROUGHPUT_CLIENTS]["in_process"]["requests_per_second"])
    return {
        "http_p95_ms": {"clients": TARGET_P95_CLIENTS, "value": p95, "target": TARGET_P95_MS,
                        "met": p95 <= TARGET_P95_MS},
        "http_over_in_process_throughput": {"clients": TARGET_THROUGHPUT_CLIENTS, "value": share,
                                            "target": TARGET_THROUGHPUT_SHARE,
                                            "met": share >= TARGET_THROUGHPUT_SHARE},
        "errors": sum(level[side]["errors"] for level in levels for side in ("http", "in_process")),
    }


def print_report(report: dict) -> None:
    rows = report["rows"]
    print(f"\n{rows['chunks']:,} chunks; searches of k={K}, hybrid, {report['seconds_per_level']:g} s per level "
          f"and side; {report['mix']}")
    print(f"{'clients':>7} {'side':11} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'errors':>6}"
          f"   {'in the server: p50':>18} {'p95':>6}   load average")
    for level in report["levels"]:
        for side in ("http", "in_process"):
            figures = level[side]
            inside = figures.get("inside_server_ms")
            inside_text = f"{inside['p50']:18.1f} {inside['p95']:6.1f}" if inside else f"{'':18} {'':6}"
            print(f"{level['clients']:7} {side:11} {figures['requests']:8} {figures['requests_per_second']:7.1f} "
                  f"{figures['p50_ms']:7.1f} {figures['p95_ms']:7.1f} {figures['errors']:6}   {inside_text}   "
                  f"{figures['load_average_before'][0]:.1f} -> {figures['load_average_after'][0]:.1f}")
    for level in report["levels"]:
        parts = ", ".join(f"{name} {values['p50']:.1f} / {values['p95']:.1f}"
                          for name, values in level["http"]["by_variant"].items())
        print(f"HTTP at {level['clients']} client(s), p50 / p95 ms by variant: {parts}")
    met = report["targets"]
    p95, share = met["http_p95_ms"], met["http_over_in_process_throughput"]
    print(f"HTTP p95 at {p95['clients']} clients: {p95['value']:.1f} ms (target <= {p95['target']} ms: "
          f"{'met' if p95['met'] else 'NOT met'}); HTTP throughput at {share['clients']} clients: "
          f"{share['value']:.0%} of in-process (target >= {share['target']:.0%}: "
          f"{'met' if share['met'] else 'NOT met'}); errors: {met['errors']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"10,000 chunks, 1,000 abstracts, 250 Chinese paragraphs, {QUICK_SECONDS} s per level")
    add_collection_arguments(parser)
    parser.add_argument("--seconds", type=float, help=f"how long each level runs, each side (default "
                                                      f"{DEFAULT_SECONDS}; --quick {QUICK_SECONDS})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the figures go, as JSON")
    args = parser.parse_args()
    seconds = args.seconds or (QUICK_SECONDS if args.quick else DEFAULT_SECONDS)

    searched = prepare_collection(args)
    tagged = tag_access(searched)
    if tagged:
        print(f"tagged {tagged} documents with their access group", flush=True)
    searches = search_mix(searched, args)
    store = Store.open(searched.settings)
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.serve_load", *sys.argv[1:]]),
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_average_at_start": os.getloadavg()},
        "server": server_facts(store),
        "rows": searched.rows_report(args),
        "access": {"groups": ACCESS_GROUPS, "restricted_key_groups": list(RESTRICTED_GROUPS),
                   "restricted_key_reads": len(RESTRICTED_GROUPS) / ACCESS_GROUPS},
        "seconds_per_level": seconds,
        "mix": ("queries half English, half Chinese; evenly with and without a 1% department filter, as an "
                f"admin key and as a read key of {len(RESTRICTED_GROUPS)} of {ACCESS_GROUPS} access groups "
                "(its filters name a department it may read); every query asked once per process"),
    }
    store.close()
    server_log = args.data_dir / "serve_load-server.log"
    report["levels"] = measure(searched, searches, seconds, server_log)
    report["targets"] = targets(report["levels"])

    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfigures written to {args.out}; the server's log in {server_log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
