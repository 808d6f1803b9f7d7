"""`search QUERY`: the command-line shell over `retrieval.KnowledgeBase.search`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from typing import Any

from rich.console import Console
from rich.markup import escape

from pgkb.cli import add_verbose, add_version, print_error
from pgkb.errors import ConfigurationError, PgkbError
from pgkb.settings import COMMON_FLAGS, REMOTE_FLAGS, RERANK_FLAGS, Settings, configure_logging

from .explanation import Explanation
from .filters import FilterError, compile_filters
from .search import DEFAULT_K, DEFAULT_MODE, MAX_K, MODES, Hit, KnowledgeBase, check_query
from .statement import DEFAULT_FUSION, FUSIONS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="search", description="Search a pgkb knowledge base.")
    add_version(parser)
    parser.add_argument("query", help='words, "quoted phrases", -excluded (Chinese and English)')
    parser.add_argument("-k", type=_hit_count, default=DEFAULT_K,
                        help=f"number of hits, 1 to {MAX_K:,} (default {DEFAULT_K})")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help=f"default: {DEFAULT_MODE}")
    parser.add_argument("--fusion", choices=FUSIONS, default=DEFAULT_FUSION,
                        help="hybrid fusion: score (each leg's standardised scores, weighted by its confidence; "
                             "default) or rrf")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="keep hits whose KEY equals VALUE (source, section, page, metadata.NAME...); "
                             "metadata.NAME=120000 also matches the number, =true the boolean, and either "
                             "an array holding it")
    parser.add_argument("--where", metavar="JSON", help='filters in the filter language, e.g. \'{"page": {"gte": 3}}\'')
    parser.add_argument("--group-by", choices=["document"], help="the best chunk of each document")
    parser.add_argument("--exact", action="store_true", help="exact vector search instead of the HNSW index")
    parser.add_argument("--rerank", type=_hit_count, metavar="N",
                        help="rescore the N best hits (N >= -k) with the reranking model (--rerank-model or "
                             "--rerank-url) and show the k it scores highest")
    parser.add_argument("--json", action="store_true", help="print hits as JSON")
    parser.add_argument("--explain", action="store_true",
                        help="print the SQL statement the search runs, with its parameters, instead of hits")
    parser.add_argument("--plan", action="store_true",
                        help="with --explain: also PostgreSQL's plan, from running it (EXPLAIN ANALYZE)")
    Settings.add_arguments(parser, (*COMMON_FLAGS, *RERANK_FLAGS, *REMOTE_FLAGS))
    add_verbose(parser)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    console = Console(soft_wrap=True)
    try:
        # Bad input is refused before the model and the database load, which take seconds.
        check_query(args.query)
        filters = _filters(args.where, args.filter)
        options: dict[str, Any] = dict(k=args.k, filters=filters or None, mode=args.mode, fusion=args.fusion,
                                       exact=True if args.exact else None, group_by=args.group_by)
        settings = Settings.from_arguments(args)
        if settings.url:
            hits = _remote_search(settings, args, options)
        else:
            with KnowledgeBase(settings) as kb:
                if args.explain or args.plan:
                    # The statement is the same with --rerank: the reranker runs on its hits.
                    return _explain(kb.explain(args.query, **options, analyze=args.plan), args.json)
                hits = kb.search(args.query, **options, rerank=args.rerank)
    except PgkbError as exc:
        print_error(exc, args.verbose)
        return 2
    if args.json:
        print(json.dumps([{**dataclasses.asdict(h), "citation": h.citation} for h in hits],
                         ensure_ascii=False, indent=2))
        return 0
    if not hits:
        console.print("no hits")
    for rank, hit in enumerate(hits, start=1):
        console.print(f"[bold]{rank}. {escape(hit.citation)}[/bold]  [dim]({_legs(hit)})[/dim]", highlight=False)
        console.print(f"   {_excerpt(hit)}\n", highlight=False)
    return 0


def _remote_search(settings: Settings, args: argparse.Namespace, options: dict[str, Any]) -> list[Hit]:
    """The search on a served API (retrieval.remote): its model is loaded already, so the
    command answers in the time of the search, as the API key's groups may read."""
    from .remote import RemoteKnowledgeBase

    local_only = [flag for flag, given in (("--explain", args.explain), ("--plan", args.plan),
                                           ("--exact", args.exact), ("--fusion", args.fusion != DEFAULT_FUSION))
                  if given]
    if local_only:
        raise ConfigurationError(f"{', '.join(local_only)} work on the database, not with --url")
    if not settings.api_key:
        raise ConfigurationError("--url needs an API key in PGKB_API_KEY (pgkb keys create)")
    remote = RemoteKnowledgeBase(settings.url or "", settings.api_key, settings.collection)
    return remote.search(args.query, k=options["k"], filters=options["filters"], mode=options["mode"],
                         group_by=options["group_by"], rerank=args.rerank)


def _hit_count(text: str) -> int:
    """-k, --rerank: a whole number of hits (argparse names the flag)."""
    try:
        k = int(text)
    except ValueError:
        k = 0
    if not 1 <= k <= MAX_K:
        raise argparse.ArgumentTypeError(f"takes a whole number from 1 to {MAX_K:,}, not {text!r}")
    return k


def _filters(where: str | None, items: list[str]) -> dict[str, Any]:
    """--where's filter and each --filter's, as one; each checked on its own, so that an
    error names the flag that holds it."""
    filters: dict[str, Any] = {}
    if where:
        try:
            filters = json.loads(where)
        except json.JSONDecodeError as exc:
            raise FilterError(f"--where is not valid JSON ({exc})") from None
        if not isinstance(filters, dict):
            raise FilterError("--where takes a JSON object")
        _check("--where", filters)
    for item in items:
        key, value = _key_value(item)
        _check(f"--filter {item}", {key: value})
        filters[key] = value
    return filters


def _check(flag: str, filters: dict[str, Any]) -> None:
    try:
        compile_filters(filters)
    except FilterError as exc:
        raise FilterError(f"{flag}: {exc}") from None


def _explain(explanation: Explanation, as_json: bool) -> int:
    """--explain: the statement, its parameters and settings (and --plan's plan); no secrets."""
    print(json.dumps(explanation.to_dict(), ensure_ascii=False, indent=2, default=str) if as_json
          else explanation)
    return 0


def _legs(hit: Hit) -> str:
    """Where each leg ranked the hit, with its own score, and the reranker's. The fused score
    orders the hits but means nothing alone (it is 0 for a lone candidate), so it is left to --json."""
    legs = [] if hit.rerank_score is None else [f"rerank {hit.rerank_score:.3f}"]
    if hit.vector_rank is not None and hit.vector_score is not None:
        legs.append(f"vector #{hit.vector_rank}, similarity {hit.vector_score:.2f}")
    if hit.keyword_rank is not None and hit.keyword_score is not None:
        legs.append(f"keyword #{hit.keyword_rank}, BM25 {hit.keyword_score:.2f}")
    return "; ".join(legs)


def _excerpt(hit: Hit) -> str:
    """The highlighted snippet of a keyword match, else the start of the chunk."""
    if hit.snippet and "<b>" in hit.snippet:
        return _bold(" ".join(hit.snippet.split()))
    text = " ".join(hit.text.split())
    return escape(text[:300] + ("…" if len(text) > 300 else ""))


def _bold(snippet: str) -> str:
    """ts_headline's <b>...</b> as rich markup, the rest escaped."""
    parts = re.split(r"(</?b>)", snippet)
    out, bold = [], False
    for part in parts:
        if part in ("<b>", "</b>"):
            bold = part == "<b>"
            out.append("[bold yellow]" if bold else "[/bold yellow]")
        else:
            out.append(escape(part))
    return "".join(out)


def _key_value(item: str) -> tuple[str, object]:
    """--filter KEY=VALUE as the filter language reads it. VALUE is text: a page is read as a
    number, and a metadata value matches a number, boolean or array element written so."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise FilterError(f"--filter takes KEY=VALUE, not {item!r}")
    if key == "page":
        try:
            return key, int(value)
        except ValueError:
            return key, value  # refused by the filter language, which names what it takes
    if key.startswith("metadata."):
        return key, {"match": value}
    return key, value
