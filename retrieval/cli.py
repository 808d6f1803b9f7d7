"""`search QUERY`: the command-line shell over `retrieval.KnowledgeBase.search`."""

from __future__ import annotations

import argparse
import sys
import dataclasses
import json

from rich.console import Console

from embedding import ModelNotFound
from store import Settings, StoreError, configure_logging

from .filters import FilterError
from .search import KnowledgeBase


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="search", description="Search a pgkb knowledge base.")
    parser.add_argument("query")
    parser.add_argument("-k", type=int, default=5, help="number of hits (default 5)")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="keep hits whose KEY equals VALUE (source, section, page, metadata.NAME...)")
    parser.add_argument("--json", action="store_true", help="print hits as JSON")
    Settings.add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(verbose=False)
    console = Console(soft_wrap=True)
    try:
        filters = dict(_key_value(item) for item in args.filter)
        with KnowledgeBase(Settings.from_arguments(args)) as kb:
            hits = kb.search(args.query, k=args.k, filters=filters or None)
    except (FilterError, ModelNotFound, StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([{**dataclasses.asdict(h), "citation": h.citation} for h in hits],
                         ensure_ascii=False, indent=2))
        return 0
    if not hits:
        console.print("no hits")
    for rank, hit in enumerate(hits, start=1):
        console.print(f"[bold]{rank}. {hit.citation}[/bold]  [dim](score {hit.score:.3f})[/dim]", highlight=False)
        snippet = " ".join(hit.text.split())
        console.print(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}\n", highlight=False)
    return 0


def _key_value(item: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise FilterError(f"--filter takes KEY=VALUE, not {item!r}")
    return key, int(value) if key == "page" and value.isdigit() else value
