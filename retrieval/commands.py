"""`pgkb COMMAND`: the tools that work on a collection, one subcommand each.

    pgkb eval JUDGMENTS      nDCG@10, recall@k, MRR and latency per search mode
    pgkb eval --health       the same, on queries drawn from the collection itself
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from pgkb.cli import add_verbose, add_version, print_error
from pgkb.errors import PgkbError
from pgkb.settings import COMMON_FLAGS, Settings, configure_logging

from .evaluation import HEALTH_QUERIES, Evaluation, evaluate, health_check, load_judgments
from .search import MODES, KnowledgeBase


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgkb", description="Work with a pgkb knowledge base.")
    add_version(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_eval(commands)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    return args.run(args)


def _add_eval(commands) -> None:
    parser = commands.add_parser(
        "eval", help="judge search on queries with known answers",
        description="Search every judged query in each mode and report nDCG@10, recall@10, recall@k, "
                    "MRR and latency. Judgments: a BEIR folder (queries.jsonl, qrels/SPLIT.tsv), or a "
                    "CSV/JSONL file with query, document (a document key) or chunk_id, and grade (default 1).")
    parser.add_argument("judgments", nargs="?", type=Path, help="a BEIR folder, a .csv or a .jsonl file")
    parser.add_argument("--health", action="store_true",
                        help="no judgments: queries drawn from the collection's own headings and sentences")
    parser.add_argument("--queries", type=int, default=HEALTH_QUERIES,
                        help=f"queries the health check draws (default {HEALTH_QUERIES})")
    parser.add_argument("--seed", type=int, default=0, help="which queries the health check draws (default 0)")
    parser.add_argument("--split", default="test", help="a BEIR folder's qrels split (default test)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma list (default {','.join(MODES)})")
    parser.add_argument("-k", "--k", type=int, default=100, help="results per query, for recall@k (default 100)")
    parser.add_argument("--exact", action="store_true", help="exact vector search instead of the HNSW index")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE ('-': stdout, no table)")
    Settings.add_arguments(parser, COMMON_FLAGS)
    add_verbose(parser)
    parser.set_defaults(run=_eval)


def _eval(args: argparse.Namespace) -> int:
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    problem = _usage_problem(args, modes)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        judged = [] if args.health else load_judgments(args.judgments, args.split)
        with KnowledgeBase(Settings.from_arguments(args)) as kb:
            if args.health:
                result = health_check(kb, args.queries, seed=args.seed, modes=modes, k=args.k)
            else:
                result = evaluate(kb, judged, modes, k=args.k, exact=True if args.exact else None)
    except PgkbError as exc:
        print_error(exc, args.verbose)
        return 2
    if args.json == "-":
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    source = f"health check (seed {args.seed})" if args.health else str(args.judgments)
    Console().print(_table(result, source))
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        except OSError as exc:
            print(f"error: cannot write {args.json} ({exc.strerror})", file=sys.stderr)
            return 2
    return 0


def _usage_problem(args: argparse.Namespace, modes: list[str]) -> str | None:
    if (args.judgments is None) == (not args.health):
        return "give a judgments file or folder, or --health"
    if not modes or set(modes) - set(MODES):
        return f"--modes takes a comma list of {', '.join(MODES)}, not {args.modes!r}"
    if args.k < 1 or args.queries < 1:
        return "--k and --queries take a number of at least 1"
    return None


def _table(result: Evaluation, source: str) -> Table:
    table = Table(title=f"collection {result.collection}: {source}", title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False)
    for column in ("mode", "nDCG@10", "recall@10", f"recall@{result.k}", "MRR", "p50 ms", "p95 ms", "queries"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for mode, s in result.modes.items():
        table.add_row(mode, f"{s.ndcg_at_10:.3f}", f"{s.recall_at_10:.3f}", f"{s.recall_at_k:.3f}", f"{s.mrr:.3f}",
                      f"{s.latency_p50_ms:.1f}", f"{s.latency_p95_ms:.1f}", str(s.queries))
    return table
