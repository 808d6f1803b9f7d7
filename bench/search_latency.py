"""Search latency, HNSW recall and bulk-load speed at 100,000 chunks, against langchain-postgres.

    python -m bench.search_latency                  # 100,000 chunks in /tmp/pgkb-search-bench
    python -m bench.search_latency --quick          # 10,000 chunks, a smoke run

The rows and queries (bench/latency_rows.py): documents of 100 chunks (1,000 of them at 100,000
chunks), 1% of them in each department, half English (DBpedia abstracts, --corpus) and half
Chinese (CMRC 2018 paragraphs, --chinese-corpus), vectors mixed from the real model's; queries
half English (queries.jsonl beside --corpus), half Chinese (queries-train.jsonl beside
--chinese-corpus), then sentences of the corpora cut to a query's length.

What it measures, in one run on one PostgreSQL server (the embedded one; or DATABASE_URL's,
where the user may create databases):
1. Bulk load (bench/bulk_load.py): pgkb's `Store.write_document` against langchain-postgres
   `PGVector.add_embeddings`, same rows, each into a fresh database, with and without an HNSW
   index during the load; langchain-postgres in its own virtualenv (--peer-venv).
2. Latency of `KnowledgeBase.search(q, k=10)` (hybrid) without and with the 1% filter, and
3. Recall@10 of the vector leg against an exact scan (bench/search_measures.py).

The searched collection is built once per data directory and reused while its rows match.
Other people's jobs may share this machine's cores: the load average is reported alongside.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.bulk_load import build_search_collection, compare_loads, ensure_peer_env, load_summary
from bench.latency_rows import (
    CHINESE,
    CHINESE_SHARE,
    DEPARTMENTS,
    ENGLISH,
    NOISE,
    WARMUP_FACTOR,
    Abstract,
    Rows,
    abstract_vectors,
    asked_questions,
    in_turn,
    make_rows,
    read_abstracts,
    timed_and_warmup_queries,
)
from bench.search_measures import K, measure_latency, measure_recall
from embedding import Embedder, load_embedder
from pgkb.settings import Settings
from retrieval import KnowledgeBase
from store import Store, resolve_url

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "eval" / "retrieval" / "dbpedia" / "corpus.jsonl"
DEFAULT_CHINESE_CORPUS = ROOT.parent / "shared" / "eval" / "retrieval" / "cmrc2018" / "corpus.jsonl"
DEFAULT_OUT = ROOT / "bench" / "results" / "search_latency.json"
DEFAULT_DATA_DIR = Path("/tmp/pgkb-search-bench")


@dataclass(frozen=True)
class SearchCollection:
    """The searched collection, built (or found) in the data directory, and what it was made of."""

    settings: Settings
    embedder: Embedder
    rows: Rows
    english: list[Abstract]
    chinese: list[Abstract]

    def rows_report(self, args: argparse.Namespace) -> dict:
        """The rows, as a benchmark's JSON describes them."""
        rows, abstracts = self.rows, len(self.english) + len(self.chinese)
        return {"chunks": len(rows.texts), "documents": rows.documents, "per_document": rows.per_document,
                "dims": int(rows.vectors.shape[1]), "model": self.embedder.space.model,
                "filter_share": 1 / min(DEPARTMENTS, rows.documents),
                "texts": (f"pieces of {len(self.english)} abstracts of {args.corpus} and of {len(self.chinese)} "
                          f"paragraphs of {args.chinese_corpus}; {CHINESE_SHARE:.0%} of the documents Chinese"),
                "vectors": (f"{abstracts} abstracts and paragraphs embedded with the model; each chunk's vector "
                            f"a normalised mixture of its two sources' vectors plus noise (sd {NOISE})")}


def add_collection_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that say which collection is searched (and --quick's sizes); bench/serve_load.py
    shares them, so both benchmarks search the same collection."""
    parser.add_argument("--chunks", type=int, help="chunks to load and search (default 100,000)")
    parser.add_argument("--per-document", type=int, default=100, help="chunks per document")
    parser.add_argument("--abstracts", type=int, help="English abstracts embedded with the model (default 5,000)")
    parser.add_argument("--chinese-paragraphs", type=int,
                        help="Chinese paragraphs embedded with the model (default: all of --chinese-corpus)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="a BEIR corpus.jsonl of English texts")
    parser.add_argument("--chinese-corpus", type=Path, default=DEFAULT_CHINESE_CORPUS,
                        help="a BEIR corpus.jsonl of Chinese texts")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="the embedded server's data folder, kept for later runs")


def prepare_collection(args: argparse.Namespace) -> SearchCollection:
    """The collection the flags of add_collection_arguments name, built where it is missing or
    differs (--quick: 10,000 chunks of 1,000 abstracts and 250 Chinese paragraphs)."""
    for corpus, option in ((args.corpus, "--corpus"), (args.chinese_corpus, "--chinese-corpus")):
        if not corpus.is_file():
            print(f"no corpus at {corpus}: give a BEIR corpus.jsonl with {option}", file=sys.stderr)
            raise SystemExit(2)
    chunks = args.chunks or (10_000 if args.quick else 100_000)
    abstract_count = args.abstracts or (1_000 if args.quick else 5_000)
    paragraph_count = args.chinese_paragraphs or (250 if args.quick else None)
    settings = Settings.from_env(data_dir=args.data_dir, collection=f"bench-{chunks}")
    embedder = load_embedder(settings.model, device=settings.device, batch_tokens=settings.batch_tokens)
    english = read_abstracts(args.corpus, abstract_count, ENGLISH)
    chinese = read_abstracts(args.chinese_corpus, paragraph_count, CHINESE)
    abstracts = english + chinese
    rows = make_rows(abstracts, abstract_vectors(abstracts, embedder, args.data_dir), chunks, args.per_document)
    build_search_collection(settings, embedder.space.to_dict(), rows)
    return SearchCollection(settings, embedder, rows, english, chinese)


def server_facts(store: Store) -> dict:
    with store.engine.connect() as conn:
        return {
            "postgresql": conn.execute(text("SHOW server_version")).scalar(),
            "pgvector": ".".join(map(str, store.pgvector_version)),
            "shared_buffers": conn.execute(text("SHOW shared_buffers")).scalar(),
        }


def print_report(report: dict) -> None:
    machine, server, rows = report["machine"], report["server"], report["rows"]
    print()
    print(f"machine: {machine['processor']}, {machine['cpus']} CPUs; server: PostgreSQL {server['postgresql']}, "
          f"pgvector {server['pgvector']}, shared_buffers {server['shared_buffers']}")
    print(f"rows: {rows['chunks']:,} chunks ({rows['documents']} documents x {rows['per_document']}), "
          f"{rows['dims']} dims; {rows['vectors']}")
    loads = report.get("load")
    if loads:
        print(f"\nbulk load, {loads['fairness']}")
        print(f"{'index':22} {'pgkb rows/s':>12} {'langchain rows/s':>17} {'ratio':>7}   load average")
        for variant in loads["variants"]:
            print(f"{variant['index']:22} {variant['pgkb_rows_per_second']:12,.0f} "
                  f"{variant['langchain_rows_per_second']:17,.0f} {variant['ratio']:6.1f}x   "
                  f"{variant['load_average']}   ({variant['how']})")
        print("target: pgkb >= 10x langchain-postgres add_embeddings")
        parts = ", ".join(f"{part} {seconds:.1f} s" for part, seconds in loads["pgkb_profile_s"].items())
        print(f"pgkb's seconds: {parts}")
    print(f"\nhybrid search, k={K}, {report['queries']} queries after {WARMUP_FACTOR} times as many other ones "
          f"(target: p50 <= 20 ms, p95 <= 50 ms); milliseconds, end to end, then split into the query's "
          f"embedding and the rest (SQL and the Python around it)")
    print(f"{'search':16} {'filter':10} {'p50':>7} {'p95':>7}   {'embed p50':>9} {'p95':>7}   "
          f"{'rest p50':>8} {'p95':>7}   load average")
    for setting, latency in report["latency"].items():
        for name in ("no filter", "1% filter"):
            total, embedding, rest = (latency[name][part] for part in
                                      ("end_to_end_ms", "embedding_ms", "without_embedding_ms"))
            print(f"{setting:16} {name:10} {total['p50']:7.1f} {total['p95']:7.1f}   {embedding['p50']:9.1f} "
                  f"{embedding['p95']:7.1f}   {rest['p50']:8.1f} {rest['p95']:7.1f}   "
                  f"{latency['load_average_before'][0]:.1f} -> {latency['load_average_after'][0]:.1f}")
    for setting, latency in report["latency"].items():
        for name in ("no filter", "1% filter"):
            by_language = ", ".join(f"{language} {values['p50']:.1f} / {values['p95']:.1f}" for language, values
                                    in latency[name]["end_to_end_ms_by_language"].items())
            print(f"{setting}, {name}, p50 / p95 by the query's language: {by_language}")
    for setting, latency in report["latency"].items():
        print(f"filtered searches returning {K} hits, all in the department ({setting}): "
              f"{latency['filtered_searches_with_k_matching_hits']}/{latency['queries']}")
    print(f"\nrecall@{K} of the vector leg against an exact scan ({report['queries']} queries; target >= 0.98)")
    for name, figures in report["recall"].items():
        for variant, values in figures.items():
            notes = []
            if "exact_retries" in values:
                notes.append(f"{values['exact_retries']} exact retries")
            if "mean_hits" in values:
                notes.append(f"{values['mean_hits']:.1f} hits on average, "
                             f"{values['plans_on_hnsw']}/{report['queries']} plans on the HNSW index")
            print(f"{name:12} {variant:38} {values['recall']:.3f}   {'; '.join(notes)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="10,000 chunks, 1,000 abstracts, 250 Chinese paragraphs, 100 queries")
    add_collection_arguments(parser)
    parser.add_argument("--queries", type=int, help="queries timed, half of them Chinese (default 200)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the figures go, as JSON")
    parser.add_argument("--peer-venv", type=Path, default=Path("/tmp/pgkb-bench-peers"),
                        help="virtualenv for langchain-postgres (created when missing)")
    parser.add_argument("--no-load-comparison", action="store_true", help="measure search only")
    args = parser.parse_args()
    query_count = args.queries or (100 if args.quick else 200)
    searched = prepare_collection(args)
    settings, embedder, rows = searched.settings, searched.embedder, searched.rows
    chinese_queries = round(query_count * CHINESE_SHARE)
    english_timed, english_warmup = timed_and_warmup_queries(
        asked_questions(args.corpus.parent / "queries.jsonl"), searched.english, query_count - chinese_queries)
    chinese_timed, chinese_warmup = timed_and_warmup_queries(
        asked_questions(args.chinese_corpus.parent / "queries-train.jsonl"), searched.chinese, chinese_queries)
    queries, warmup = in_turn(english_timed, chinese_timed), in_turn(english_warmup, chinese_warmup)
    departments, present = random.Random(2), min(DEPARTMENTS, rows.documents)
    filters = [{"metadata.department": f"d{departments.randrange(present):02d}"} for _ in queries]  # one each
    space = embedder.space.to_dict()

    store = Store.open(settings)  # holds the embedded server up for the peer's connections
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.search_latency", *sys.argv[1:]]),
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_average_at_start": os.getloadavg()},
        "server": server_facts(store),
        "rows": searched.rows_report(args),
    }
    if not args.no_load_comparison:
        versions = ensure_peer_env(args.peer_venv)
        results = compare_loads(resolve_url(settings), space, rows, args.peer_venv / "bin" / "python")
        report["load"] = {**load_summary(results), "peer_versions": versions}
    report["queries"] = len(queries)
    report["queries_by_language"] = {"English": len(english_timed), "Chinese": len(chinese_timed)}
    with KnowledgeBase(settings) as kb:
        # As pgkb runs: the process keeps torch's threads, queries are embedded on one.
        report["latency"] = {"pgkb (default)": measure_latency(kb, queries, filters, warmup)}
        report["recall"] = measure_recall(kb, queries, filters)
    store.close()

    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfigures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
