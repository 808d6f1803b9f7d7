"""`pgkb`: the knowledge base's commands (retrieval.commands), `pgkb serve`, the HTTP API, `pgkb mcp`
and `pgkb finetune`, which trains the embedding model (embedding) and re-embeds a collection (ingest)."""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
from dataclasses import replace
from pathlib import Path

from pgkb.cli import add_verbose
from pgkb.errors import ConfigurationError
from pgkb.settings import COMMON_FLAGS, FINETUNE_FLAGS, SERVE_FLAGS, STORE_FLAGS, Settings
from retrieval import commands

log = logging.getLogger(__name__)
# Requests in flight get this long to finish once the server is asked to stop (SIGTERM, Ctrl-C).
GRACEFUL_SECONDS = 30


def main(argv: list[str] | None = None) -> int:
    return commands.main(argv, more=(_add_serve, _add_mcp, _add_finetune))


def _add_serve(subcommands) -> None:
    parser = subcommands.add_parser(
        "serve", help="serve the knowledge base over HTTP",
        description="The HTTP API (/v1/...; described at /docs and /openapi.json): search, collections, "
                    "documents and uploads, for API keys made with `pgkb keys create`. Listens on 127.0.0.1 "
                    "unless told otherwise: put a TLS proxy in front to share it.")
    Settings.add_arguments(parser, (*STORE_FLAGS, *SERVE_FLAGS, "device"))
    add_verbose(parser)
    parser.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn  # the server's imports stay out of the other commands

    from .app import create_app

    settings = Settings.from_arguments(args)
    _configure_logging(settings.log_json, args.verbose)
    # The socket is bound here, so that port 0 (any free port) can be reported.
    listener = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM,
                             socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY on the connections of a TCP socket only
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((settings.host, settings.port))
    except OSError as exc:
        print(f"error: cannot listen on {settings.host}:{settings.port} (--host, --port): {exc.strerror}",
              file=sys.stderr)
        return 2
    host, port = listener.getsockname()[:2]
    config = uvicorn.Config(create_app(settings), log_config=None, timeout_graceful_shutdown=GRACEFUL_SECONDS,
                            access_log=True)
    print(f"pgkb serving on http://{host}:{port} (docs at /docs)", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def _add_mcp(subcommands) -> None:
    parser = subcommands.add_parser(
        "mcp", help="serve the knowledge base to an agent over MCP (stdio)",
        description="A Model Context Protocol server on standard input and output, for an agent on this "
                    "machine (tools: search, list_collections, get_context). It reads the store as the local "
                    "user does; over the network, use `pgkb serve`, which serves MCP at /mcp under API keys.")
    Settings.add_arguments(parser, (*COMMON_FLAGS, "device"))
    add_verbose(parser)
    parser.set_defaults(run=_mcp)


def _mcp(args: argparse.Namespace) -> int:
    try:
        from .mcp import build_mcp_server
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("mcp"):
            raise
        print("error: pgkb mcp needs the MCP SDK: pip install 'pgkb[mcp]'", file=sys.stderr)
        return 2
    from .app import Service

    # Standard output carries the protocol: logs go to standard error only (logging's default).
    service = Service(Settings.from_arguments(args))
    try:
        build_mcp_server(service).run("stdio")
    finally:
        service.close()
    return 0


def _add_finetune(subcommands) -> None:
    parser = subcommands.add_parser(
        "finetune", help="fine-tune the collection's embedding model on training triplets",
        description="Train the embedding model of --collection on a JSON Lines file of {anchor, positive, "
                    "negative_1..N} triplets (sentence-transformers' trainer, MultipleNegativesRankingLoss; LoRA "
                    "for large models) and write it with its pgkb profile to --out, a model folder to set as "
                    "PGKB_MODEL. With --into, then re-embed the collection into that new collection with it.")
    parser.add_argument("--training", required=True, type=Path, metavar="FILE", help="the triplets, JSON Lines")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="a new folder for the trained model")
    parser.add_argument("--into", metavar="COLLECTION",
                        help="then copy the collection into this new collection, its chunks embedded by the new model")
    Settings.add_arguments(parser, (*STORE_FLAGS, "collection", *FINETUNE_FLAGS, "device", "batch_tokens"))
    add_verbose(parser)
    parser.set_defaults(run=_finetune)


def _finetune(args: argparse.Namespace) -> int:
    from embedding.finetune import TrainingOptions, finetune
    from ingest.reembed import reembed
    from store import Store

    settings = Settings.from_arguments(args)
    if args.into == settings.collection:
        raise ConfigurationError(f"--into {args.into!r} is the collection trained from: name a new collection")
    store = Store.open(settings)
    try:
        space = store.collection(settings.collection).space
    finally:
        store.close()
    # The collection's model, read as its searches read it: the same query prefix and profile.
    report = finetune(space["model"], args.training, args.out, TrainingOptions(**settings.training_options()),
                      query_prefix=space.get("query_instruction") or "",
                      profile_file=Path(settings.model_profile) if settings.model_profile else None,
                      allow_download=settings.allow_download)
    print(f"trained {space['model']} on {report.triplets} triplets in {report.seconds:.0f} s "
          f"({report.samples_per_second:.1f} triplets/s{', LoRA' if report.lora else ''}); loss "
          f"{report.first_loss:.3f} -> {report.last_loss:.3f}; model written to {args.out}")
    if args.into:
        # The same vector size as the collection's (a Matryoshka cut stays that cut).
        copied = reembed(replace(settings, collection=args.into, model=str(args.out), dims=space["dims"]),
                         settings.collection)
        print(f"re-embedded {copied.documents} documents ({copied.chunks} chunks) into {args.into!r}")
    return 0


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _configure_logging(as_json: bool, verbose: bool) -> None:
    """A server logs what it does (start, stop, each request) at INFO; -v adds pgkb's details."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in root.handlers:
        handler.setFormatter(_JsonFormatter() if as_json else logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("ingest", "retrieval", "store", "embedding"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
