"""`ingest PATH`: the command-line shell over `ingest.run.ingest`.

Exit status: 0 when every file was ingested (or skipped as unsupported), 1 when some
failed, 2 for usage or configuration errors.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from embedding import ModelNotFound
from store import Settings, StoreError, configure_logging

from .run import IngestReport, UsageError, ingest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ingest", description="Ingest documents into a pgkb knowledge base.")
    parser.add_argument("path", help="a folder (read recursively) or a single file")
    Settings.add_arguments(parser)
    parser.add_argument("--chunk-tokens", type=int, help="target chunk size in model tokens (PGKB_CHUNK_TOKENS)")
    parser.add_argument("--batch-tokens", type=int, help="tokens per embedding batch (PGKB_BATCH_TOKENS)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 or auto (PGKB_DEVICE)")
    parser.add_argument("--dims", type=int,
                        help="shorter (Matryoshka) vectors for models trained for them, e.g. 256 (PGKB_DIMS)")
    parser.add_argument("--query-instruction", metavar="TASK",
                        help="the task in the model's query instruction (Qwen3-Embedding), or the query "
                             "prefix of other models; stored with the collection (PGKB_QUERY_INSTRUCTION)")
    parser.add_argument("--embed-url", metavar="URL",
                        help="embed through an OpenAI-compatible server (vLLM, SGLang, TEI, Infinity) "
                             "serving --model; its API key is read from $PGKB_EMBED_API_KEY (PGKB_EMBED_URL)")
    pii = parser.add_argument_group("personal data masking (on by default)")
    pii.add_argument("--no-pii", action="store_true", help="store text unmasked (PGKB_PII=0)")
    pii.add_argument("--pii-entities", metavar="TYPES",
                     help='entity types to mask: "all" or a comma list, "-TYPE" removes one, e.g. all,-URL '
                          "(PGKB_PII_ENTITIES)")
    pii.add_argument("--pii-threshold", type=float, metavar="SCORE",
                     help="lowest score that is masked, 0 to 1 (PGKB_PII_THRESHOLD, default 0.5)")
    pii.add_argument("--pii-operator", metavar="OPERATORS",
                     help="replace (<TYPE>), redact or hash, and per type TYPE=OPERATOR, e.g. "
                          "replace,EMAIL_ADDRESS=hash; hash needs PGKB_PII_HASH_KEY (PGKB_PII_OPERATORS)")
    parser.add_argument("--password", action="append", metavar="PASSWORD",
                        help="a password to try on encrypted PDFs (repeatable)")
    parser.add_argument("--passwords-file", metavar="FILE",
                        help="a file of passwords to try on encrypted PDFs, one per line (PGKB_PASSWORDS_FILE)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each file")
    args = parser.parse_args(argv)

    console = Console(stderr=True)
    configure_logging(args.verbose)
    try:
        settings = Settings.from_arguments(args, chunk_tokens=args.chunk_tokens,
                                           batch_tokens=args.batch_tokens, device=args.device,
                                           dims=args.dims, query_instruction=args.query_instruction,
                                           embed_url=args.embed_url,
                                           pii=False if args.no_pii else None, pii_entities=args.pii_entities,
                                           pii_threshold=args.pii_threshold, pii_operators=args.pii_operator,
                                           passwords=tuple(args.password or ()) or None,
                                           passwords_file=args.passwords_file)
        show_progress = console.is_terminal and not args.quiet
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, disable=not show_progress) as progress:
            task = progress.add_task("ingesting", total=None)
            report = ingest(args.path, settings,
                            on_file=lambda outcome: progress.update(task, advance=1, description=outcome.key))
    except (UsageError, ModelNotFound, StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(report, Console(soft_wrap=True))
    return 1 if report.failed else 0


def print_summary(report: IngestReport, console: Console) -> None:
    counts = report.counts()
    reasons = ", ".join(f"{reason}: {n}" for reason, n in report.failures_by_reason().most_common())
    console.print(
        f"collection [bold]{report.collection}[/bold]: {counts['seen']} files seen, "
        f"{counts['ingested']} ingested, {counts['skipped']} skipped (unsupported type), "
        f"{counts['failed']} failed{f' ({reasons})' if reasons else ''}; "
        f"{counts['chunks']} chunks written in {report.seconds:.1f} s",
        highlight=False,
    )
    masked = report.pii_counts()
    if masked:
        by_type = ", ".join(f"{entity} {n}" for entity, n in masked.most_common())
        console.print(f"personal data masked: {sum(masked.values())} values ({by_type})", highlight=False)
    # One line per failure, never truncated: logs and grep see the whole key and reason.
    for outcome in report.failed:
        console.print(f"  failed  {outcome.key}: {outcome.reason}", highlight=False, markup=False)
