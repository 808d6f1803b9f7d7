"""`pgkb COMMAND`: the tools that work on a knowledge base, one subcommand each.

    pgkb eval JUDGMENTS      nDCG@10, recall@k, MRR and latency per search mode
    pgkb eval --health       the same, on queries drawn from the collection itself
    pgkb collections         the collections: model, documents, chunks, size, last ingest run
    pgkb documents C         a collection's documents, ingested or failed (and why)
    pgkb rm C KEY...         remove documents by key
    pgkb drop C              delete a collection and all it holds, once its name is typed
    pgkb access C public|nobody   who reads the collection's documents without an access tag
    pgkb keys create|list|revoke  API keys for `pgkb serve`
    pgkb feedback add|list   verdicts on search hits (the query masked)
    pgkb training-data export   (query, positive, hard negatives) rows for fine-tuning
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pgkb.cli import add_verbose, add_version, print_error
from pgkb.errors import PgkbError
from pgkb.settings import COMMON_FLAGS, RERANK_FLAGS, STORE_FLAGS, Settings, configure_logging
from store import SCOPES, UNLABELLED, VERDICTS, CollectionSummary, DocumentSummary, Feedback, Store, UnknownDocuments

from .evaluation import HEALTH_QUERIES, Evaluation, evaluate, health_check, load_judgments
from .search import MODES, KnowledgeBase
from .training import export_training_data


def main(argv: list[str] | None = None, more: Iterable[Callable[[Any], None]] = ()) -> int:
    """Run a `pgkb` subcommand; `more` adds subcommands of packages above this one (serve)."""
    parser = argparse.ArgumentParser(prog="pgkb", description="Work with a pgkb knowledge base.")
    add_version(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_eval, _add_collections, _add_documents, _add_rm, _add_drop, _add_access, _add_keys,
                _add_feedback, _add_training_data, *more):
        add(commands)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.run(args)
    except PgkbError as exc:
        print_error(exc, args.verbose)
        return 2


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
    parser.add_argument("--rerank", type=int, metavar="N",
                        help="also score each mode with the reranking model rescoring its N best hits (N >= k), "
                             "as its own row (hybrid+rerank...)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE ('-': stdout, no table)")
    Settings.add_arguments(parser, (*COMMON_FLAGS, *RERANK_FLAGS))
    add_verbose(parser)
    parser.set_defaults(run=_eval)


def _eval(args: argparse.Namespace) -> int:
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    problem = _usage_problem(args, modes)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    judged = [] if args.health else load_judgments(args.judgments, args.split)
    with KnowledgeBase(Settings.from_arguments(args)) as kb:
        if args.health:
            result = health_check(kb, args.queries, seed=args.seed, modes=modes, k=args.k, rerank=args.rerank)
        else:
            result = evaluate(kb, judged, modes, k=args.k, exact=True if args.exact else None, rerank=args.rerank)
    if args.json == "-":
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    source = f"health check (seed {args.seed})" if args.health else str(args.judgments)
    _print(_evaluation_table(result, source))
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
    if args.k < 1 or args.queries < 1 or (args.rerank is not None and args.rerank < 1):
        return "--k, --queries and --rerank take a number of at least 1"
    return None


def _evaluation_table(result: Evaluation, source: str) -> Table:
    header = ["mode", "nDCG@10", "recall@10", f"recall@{result.k}", "MRR", "p50 ms", "p95 ms", "queries"]
    rows = [[mode, f"{s.ndcg_at_10:.3f}", f"{s.recall_at_10:.3f}", f"{s.recall_at_k:.3f}", f"{s.mrr:.3f}",
             f"{s.latency_p50_ms:.1f}", f"{s.latency_p95_ms:.1f}", str(s.queries)]
            for mode, s in result.modes.items()]
    return _table(f"collection {result.collection}: {source}", header, rows, numbers=header[1:])


# -- managing the knowledge base -----------------------------------------------------------

def _add_collections(commands) -> None:
    parser = commands.add_parser(
        "collections", help="list the collections",
        description="Each collection: its model and dimensions, its documents (ingested and failed), chunks, "
                    "an estimate of its size on disk (its values as stored plus its HNSW index; the indexes "
                    "collections share are left out), its last ingest run and its roots (the folders it was "
                    "ingested from).")
    _add_store_flags(parser, listing=True)
    parser.set_defaults(run=_collections)


def _collections(args: argparse.Namespace) -> int:
    with _store(args) as store:
        summaries = store.list_collections()
    if args.json:
        print(json.dumps([summary.to_dict() for summary in summaries], indent=2))
    elif not summaries:
        print("no collections yet: `ingest FOLDER -c NAME` makes one")
    else:
        header = ["collection", "model", "dims", "documents", "failed", "chunks", "size", "last run", "roots"]
        rows = [_collection_row(summary) for summary in summaries]
        _print(_table(None, header, rows, numbers=("dims", "documents", "failed", "chunks", "size")))
    return 0


def _collection_row(c: CollectionSummary) -> list[str]:
    run = f"{c.last_run.status}, {_when(c.last_run.started_at)}" if c.last_run else "none"
    return [c.name, c.model, str(c.dims), str(c.documents), str(c.failed_documents), str(c.chunks),
            _size(c.size_bytes), run, ", ".join(c.roots)]


def _add_documents(commands) -> None:
    parser = commands.add_parser(
        "documents", help="list a collection's documents",
        description="A collection's documents by key (as stored: personal data in keys was masked at ingest): "
                    "ingested with their chunks and pages, or failed with the reason.")
    parser.add_argument("collection", help="the collection")
    parser.add_argument("--failed", action="store_true", help="only the documents whose file could not be read")
    _add_store_flags(parser, listing=True)
    parser.set_defaults(run=_documents)


def _documents(args: argparse.Namespace) -> int:
    with _store(args) as store:
        listed = store.list_documents(args.collection, failed_only=args.failed)
    if args.json:
        print(json.dumps([document.to_dict() for document in listed], indent=2))
    elif not listed:
        print(f"collection {args.collection!r} has no {'failed ' if args.failed else ''}documents")
    else:
        header = ["key", "status", "chunks", "pages", "ingested", "failure"]
        rows = [_document_row(document) for document in listed]
        _print(_table(None, header, rows, numbers=("chunks", "pages")))
    return 0


def _document_row(d: DocumentSummary) -> list[str]:
    return [d.key, d.status, str(d.chunks), "" if d.pages is None else str(d.pages), _when(d.ingested_at),
            d.error or ""]


def _add_rm(commands) -> None:
    parser = commands.add_parser(
        "rm", help="remove documents from a collection",
        description="Remove documents by key, with their chunks, in one transaction. If any key is unknown, "
                    "nothing is removed and the command exits 1 naming the unknown keys.")
    parser.add_argument("collection", help="the collection")
    parser.add_argument("keys", nargs="+", metavar="KEY", help="a document key, as `pgkb documents` lists it")
    _add_store_flags(parser)
    parser.set_defaults(run=_rm)


def _rm(args: argparse.Namespace) -> int:
    with _store(args) as store:
        try:
            removal = store.remove_documents(args.collection, args.keys)
        except UnknownDocuments as exc:
            print_error(exc, args.verbose)
            return 1
    print(f"removed {len(removal.keys)} document(s) and {removal.chunks} chunk(s) from collection "
          f"{removal.collection!r}: {', '.join(removal.keys)}")
    return 0


def _add_drop(commands) -> None:
    parser = commands.add_parser(
        "drop", help="delete a collection and everything it holds",
        description="Delete a collection with its documents, chunks, statistics, ingest runs and index. "
                    "Asks for the collection's name on a terminal; --yes skips that, and is needed where "
                    "there is no terminal.")
    parser.add_argument("collection", help="the collection")
    parser.add_argument("--yes", action="store_true", help="do not ask")
    _add_store_flags(parser)
    parser.set_defaults(run=_drop)


def _drop(args: argparse.Namespace) -> int:
    with _store(args) as store:
        summary = store.collection_summary(args.collection)  # an unknown name fails before asking
        if not args.yes:
            if not sys.stdin.isatty():
                print(f"error: dropping collection {args.collection!r} needs --yes where there is no terminal "
                      f"to confirm on", file=sys.stderr)
                return 2
            print(f"collection {summary.name!r} holds {summary.documents + summary.failed_documents} document(s) "
                  f"and {summary.chunks} chunk(s). Type its name to delete it: ", end="", file=sys.stderr, flush=True)
            if sys.stdin.readline().strip() != summary.name:
                print("not dropped: the name did not match", file=sys.stderr)
                return 1
        dropped = store.drop_collection(args.collection)
    print(f"dropped collection {dropped.name!r}: {dropped.documents} document(s), {dropped.chunks} chunk(s), "
          f"{dropped.runs} ingest run(s)")
    return 0


def _add_access(commands) -> None:
    parser = commands.add_parser(
        "access", help="who reads a collection's documents that have no access tag",
        description="A document's `access` tag (a folder's pgkb.toml, a sidecar, --tag access=G1,G2, an upload "
                    "field) names the groups that read it. Documents without one are read by everyone (public) "
                    "or by no one but admin keys (nobody). Applies at once, to every running server.")
    parser.add_argument("collection", help="the collection")
    parser.add_argument("unlabelled", choices=UNLABELLED, help="who reads documents without an access tag")
    _add_store_flags(parser)
    parser.set_defaults(run=_access)


def _access(args: argparse.Namespace) -> int:
    with _store(args) as store:
        store.set_unlabelled(args.collection, args.unlabelled)
    print(f"collection {args.collection!r}: documents without an access tag are read by "
          f"{'everyone' if args.unlabelled == 'public' else 'no one (admin keys only)'}")
    return 0


def _add_keys(commands) -> None:
    parser = commands.add_parser("keys", help="create, list and revoke API keys for `pgkb serve`",
                                 description="API keys for `pgkb serve`. The database keeps only a hash of each "
                                             "key: a key is shown once, when it is created.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a key and print it (once)")
    create.add_argument("--collection", "-c", action="append", required=True, dest="collections",
                        help="a collection the key may use (repeatable)")
    create.add_argument("--groups", default="", help="comma list of the groups the key's searches run as "
                                                      "(documents tagged access=GROUP)")
    create.add_argument("--scope", choices=SCOPES, default="read",
                        help="read: search and list; ingest: also upload and delete documents; admin: also see "
                             "every document whatever its access tag (default read)")
    create.add_argument("--name", default="", help="a note saying whose key it is")
    _add_store_flags(create)
    create.set_defaults(run=_keys_create)
    listing = actions.add_parser("list", help="list the keys (never their secrets)")
    _add_store_flags(listing, listing=True)
    listing.set_defaults(run=_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key at once, in every running server")
    revoke.add_argument("key_id", help="the key's id, as `pgkb keys list` shows it")
    _add_store_flags(revoke)
    revoke.set_defaults(run=_keys_revoke)


def _keys_create(args: argparse.Namespace) -> int:
    groups = [group.strip() for group in args.groups.split(",") if group.strip()]
    with _store(args) as store:
        made = store.create_key(args.name, args.scope, args.collections, groups)
    print(made.secret)
    print(f"key {made.key.id} ({made.key.scope}; collections {', '.join(made.key.collections)}; groups "
          f"{', '.join(made.key.groups) or 'none'}): keep it now, it is not shown again", file=sys.stderr)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        listed = store.list_keys()
    if args.json:
        print(json.dumps([key.to_dict() for key in listed], indent=2))
    elif not listed:
        print("no API keys yet: `pgkb keys create --collection C` makes one")
    else:
        header = ["id", "name", "scope", "collections", "groups", "created", "revoked"]
        rows = [[k.id, k.name, k.scope, ", ".join(k.collections), ", ".join(k.groups), _when(k.created_at),
                 _when(k.revoked_at) if k.revoked_at else ""] for k in listed]
        _print(_table(None, header, rows, numbers=()))
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    with _store(args) as store:
        revoked = store.revoke_key(args.key_id)
    print(f"revoked key {revoked.id}" + (f" ({revoked.name})" if revoked.name else ""))
    return 0


# -- feedback and training data -------------------------------------------------------------

# How a feedback's query is masked: as ingest masks documents (retrieval.feedback).
_MASKING_FLAGS = ("pii", "pii_entities", "pii_urls", "pii_threshold", "pii_operators")


def _add_feedback(commands) -> None:
    parser = commands.add_parser("feedback", help="record and list verdicts on search hits",
                                 description="Verdicts on search hits, for training data (`pgkb training-data "
                                             "export`). The query is stored with personal data masked, as ingest "
                                             "masks documents; the chunk's text is not copied.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="record a verdict on a hit of a query")
    add.add_argument("--query", required=True, help="the query searched")
    add.add_argument("--chunk", type=int, required=True, metavar="ID", help="the hit's chunk id (search --json)")
    add.add_argument("--verdict", choices=VERDICTS, required=True,
                     help="good: the hit answers the query; bad: it does not; right: the chunk that answers it")
    add.add_argument("--rank", type=int, metavar="R", help="the hit's place in the search's hits, from 1")
    add.add_argument("--given-by", metavar="LABEL", help="who gives it: a name or handle, never a secret")
    Settings.add_arguments(add, ("collection", *STORE_FLAGS))
    masking = add.add_argument_group("personal data masking of the query (as ingest's; on by default)")
    Settings.add_arguments(masking, _MASKING_FLAGS)
    add_verbose(add)
    add.set_defaults(run=_feedback_add)
    listing = actions.add_parser("list", help="list a collection's feedback, oldest first")
    Settings.add_arguments(listing, ("collection",))
    _add_store_flags(listing, listing=True)
    listing.set_defaults(run=_feedback_list)


def _feedback_add(args: argparse.Namespace) -> int:
    with KnowledgeBase(Settings.from_arguments(args)) as kb:
        recorded = kb.feedback(args.query, args.chunk, args.verdict, rank=args.rank, given_by=args.given_by)
    rank = f" at rank {recorded.rank}" if recorded.rank else ""
    print(f"feedback {recorded.id}: chunk {recorded.chunk_id} ({recorded.document_key}){rank} is {recorded.verdict} "
          f"for the query, stored as {recorded.query!r}")
    return 0


def _feedback_list(args: argparse.Namespace) -> int:
    settings = Settings.from_arguments(args)
    with closing(Store.open(settings)) as store:
        listed, _ = store.list_feedback(settings.collection)
    if args.json:
        print(json.dumps([row.to_dict() for row in listed], ensure_ascii=False, indent=2))
    elif not listed:
        print(f"collection {settings.collection!r} has no feedback yet: `pgkb feedback add` records some")
    else:
        header = ["id", "verdict", "rank", "chunk", "document", "query", "given by", "when"]
        _print(_table(None, header, [_feedback_row(row) for row in listed], numbers=("id", "rank", "chunk")))
    return 0


def _feedback_row(f: Feedback) -> list[str]:
    # A chunk a re-ingest replaced shows as its document and place: the export finds it again by its content.
    chunk = str(f.chunk_id) if f.chunk_id is not None else f"replaced (#{f.ordinal})"
    return [str(f.id), f.verdict, "" if f.rank is None else str(f.rank), chunk, f.document_key, f.query,
            f.given_by or "", _when(f.created_at)]


def _add_training_data(commands) -> None:
    parser = commands.add_parser("training-data", help="export training data for fine-tuning the embedding model",
                                 description="Training data for fine-tuning the collection's embedding model.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export", help="write (query, positive, hard negatives) rows as JSON Lines",
        description="Write JSON Lines rows {anchor, positive, negative_1..negative_N} (the sentence-transformers "
                    "dataset format): one per chunk judged good or right by feedback, its bad hits its first "
                    "negatives, and --label-free rows drawn from the collection (a heading, or a sentence taken "
                    "out of a chunk, as the query). The other negatives are mined from the collection's own hybrid "
                    "search. Texts are as stored: masked.")
    export.add_argument("--out", type=Path, required=True, metavar="FILE", help="the .jsonl file to write (replaced)")
    export.add_argument("--negatives", type=_whole_number, default=3, metavar="N",
                        help="negatives on every row (default 3)")
    export.add_argument("--label-free", type=_whole_number, default=0, metavar="M",
                        help="label-free rows to add, drawn from the collection's chunks (default 0)")
    export.add_argument("--seed", type=int, default=0, help="which label-free rows are drawn (default 0)")
    Settings.add_arguments(export, ("collection", *STORE_FLAGS))
    add_verbose(export)
    export.set_defaults(run=_training_data_export)


def _training_data_export(args: argparse.Namespace) -> int:
    settings = Settings.from_arguments(args)
    written = export_training_data(settings, settings.collection, args.out, negatives=args.negatives,
                                   label_free=args.label_free, seed=args.seed)
    print(f"wrote {written} training row(s) with {args.negatives} negative(s) each to {args.out}")
    return 0


def _whole_number(text: str) -> int:
    """--negatives, --label-free: 0 or more (argparse names the flag)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"takes a whole number, 0 or more, not {text!r}")
    return int(text)


def _add_store_flags(parser: argparse.ArgumentParser, listing: bool = False) -> None:
    if listing:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    Settings.add_arguments(parser, STORE_FLAGS)
    add_verbose(parser)


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[Store]:
    with closing(Store.open(Settings.from_arguments(args))) as store:
        yield store


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _size(size_bytes: int) -> str:
    size, units = float(size_bytes), ["B", "KiB", "MiB", "GiB", "TiB"]
    while size >= 1024 and len(units) > 1:
        size, units = size / 1024, units[1:]
    return f"{size_bytes} B" if units[0] == "B" else f"{size:.1f} {units[0]}"


def _print(table: Table) -> None:
    """On a terminal, the table fits its width; elsewhere (a pipe, a file) no line is folded."""
    Console(width=None if sys.stdout.isatty() else 10_000).print(table)


def _table(title: str | None, header: list[str], rows: Iterable[list[str]], numbers: Iterable[str]) -> Table:
    """A plain table, the columns named in `numbers` right-aligned. Cells are shown as they are
    (a key holding [brackets] is not markup)."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in header:
        table.add_column(column, justify="right" if column in numbers else "left", overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table
