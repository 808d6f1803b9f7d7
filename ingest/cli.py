"""`ingest PATH`: the command-line shell over `ingest.run.ingest`.

Exit status: 0 when no file failed anew (every file was ingested, unchanged or skipped, or failed
as it did in the last run over the folder), 1 when one failed anew (or, with --strict, when any
failed) or the run stopped on an error, 2 for usage or configuration errors, 130 when stopped by
Ctrl-C, 143 by SIGTERM. A failure is new when the last run that went through the folder did not
report it for the same bytes with the same reason: a cron job hears of each new failure once.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pgkb.cli import add_verbose, add_version, print_error
from pgkb.errors import PgkbError
from pgkb.settings import COMMON_FLAGS, Settings, configure_logging, default

from .metadata import parse_tags
from .reembed import reembed
from .run import FileOutcome, IngestReport, ingest
from .sources import printable

PRUNED_SHOWN = 10  # keys of pruned documents the summary names (the report holds them all)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.path is None) == (args.reembed_from is None):
        parser.error("give a folder or file to ingest, or --reembed-from COLLECTION (not both)")
    console = Console(stderr=True)
    configure_logging(args.verbose)
    if args.reembed_from:
        return _reembed(args)
    stop = threading.Event()
    report = None
    try:
        settings = Settings.from_arguments(args, passwords=_passwords(args))
        tags = parse_tags(args.tag or [])
        report = IngestReport(settings.collection)
        with _progress(console, enabled=console.is_terminal and not args.quiet) as on_file, \
                _stopping_on_ctrl_c(stop, console), _stopping_on_sigterm():
            ingest(args.path, settings, tags=tags, prune=args.prune, force=args.force, prune_any_share=args.yes,
                   add_root=args.add_root, on_file=on_file, stop=stop, report=report)
    except BaseException as exc:
        if report is not None and report.run_id is not None:  # the run began: say what it did
            return _finish(report, args.report, console, args.strict, stopped_by=exc)
        if isinstance(exc, Terminated):
            print(f"error: {exc}", file=sys.stderr)
            return 143
        if isinstance(exc, PgkbError):
            print_error(exc, args.verbose)
            return 2
        raise
    return _finish(report, args.report, console, args.strict)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ingest", description="Ingest documents into a pgkb knowledge base.")
    add_version(parser)
    parser.add_argument("path", nargs="?", help="a folder (read recursively) or a single file")
    Settings.add_arguments(parser, COMMON_FLAGS)
    parser.add_argument("--reembed-from", metavar="COLLECTION",
                        help="instead of reading files, copy this collection into the new --collection with "
                             "vectors from --model (its stored chunks re-embedded, nothing parsed again)")
    sync = parser.add_argument_group("keeping a collection in step with a folder")
    sync.add_argument("--add-root", action="store_true",
                      help="ingest a folder that is not under the collection's roots (the folders it was "
                           "ingested from) into it, as one more root")
    sync.add_argument("--prune", action="store_true",
                      help="remove the documents under the folder whose files are no longer there")
    sync.add_argument("--yes", action="store_true",
                      help="let --prune remove more than PGKB_PRUNE_MAX_SHARE "
                           f"(default {default('prune_max_share')}) of the collection")
    sync.add_argument("--force", action="store_true", help="ingest every file again, even unchanged ones")
    sync.add_argument("--tag", action="append", metavar="KEY=VALUE",
                      help="metadata for every document of this run, for search filters (repeatable); "
                           "see also pgkb.toml and FILE.meta.json in the README")
    Settings.add_arguments(parser, ("chunk_tokens", "embed_headings", "batch_tokens", "workers", "device", "dims",
                                    "query_instruction", "embed_url", "engine", "ray_address"))
    pii = parser.add_argument_group("personal data masking (on by default)")
    Settings.add_arguments(pii, ("pii", "pii_entities", "pii_urls", "pii_threshold", "pii_operators", "pii_keys"))
    Settings.add_arguments(parser, ("follow_links", "unlabelled"))
    passwords = parser.add_argument_group("passwords for encrypted PDFs")
    passwords.add_argument("--password", action="append", metavar="PASSWORD",
                           help="a password to try (repeatable); other users of this machine can see it in "
                                "the process list, so prefer --passwords-stdin or --passwords-file")
    passwords.add_argument("--passwords-stdin", action="store_true",
                           help="read passwords to try from standard input, one per line")
    Settings.add_arguments(passwords, ("passwords_file",))
    parser.add_argument("--report", metavar="FILE", help="write the summary and every file's outcome here as JSON")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when any file failed, also one that failed the same way in the last run "
                             "(by default only a new failure does)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_verbose(parser, "log each file, and show an error's traceback")
    return parser


def _reembed(args: argparse.Namespace) -> int:
    try:
        report = reembed(Settings.from_arguments(args), args.reembed_from)
    except PgkbError as exc:
        print_error(exc, args.verbose)
        return 2
    print(f"re-embedded {report.source!r} into {report.target!r} with {report.model}: {report.documents} documents "
          f"({report.chunks} chunks), {report.failed} failed ones copied as failed, in {report.seconds:.1f} s")
    return 0


def _passwords(args: argparse.Namespace) -> tuple[str, ...] | None:
    """--password values and, with --passwords-stdin, the lines of standard input."""
    passwords = list(args.password or ())
    if args.passwords_stdin:
        passwords += [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
    return tuple(passwords) or None


def _finish(report: IngestReport, report_path: str | None, console: Console, strict: bool,
            stopped_by: BaseException | None = None) -> int:
    """The summary, the report file, and the exit status of a run that began, even one that
    stopped on an exception."""
    print_summary(report, Console(soft_wrap=True))
    written = _write_report(report, report_path) if report_path else True
    if stopped_by is not None:
        console.print(f"error: the run stopped before its end: {report.error}", highlight=False, markup=False)
        return 130 if isinstance(stopped_by, KeyboardInterrupt) else 143 if isinstance(stopped_by, Terminated) else 1
    if report.status == "interrupted":
        console.print(f"stopped by Ctrl-C after {len(report.files)} of {report.total_files} files; run the same "
                      "command again to finish (files already stored are skipped)", highlight=False)
        return 130
    failed = report.failed if strict else report.new_failures
    return 1 if failed or not written else 0


def _write_report(report: IngestReport, path: str) -> bool:
    try:
        Path(path).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write the report to {path}: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True


class _progress:
    """A progress bar on a terminal (files, pages, chunks, tokens/s, time left), else nothing.

    Used as a context manager that gives the `on_file` callback for `ingest`.
    """

    def __init__(self, console: Console, enabled: bool):
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[detail]}"), TimeRemainingColumn(),
                            console=console, disable=not enabled, transient=False)
        self.task = self.bar.add_task("files", total=None, detail="")
        # Running totals: summing the report at every file would cost O(files) each time.
        self.totals: Counter[str] = Counter()

    def __enter__(self):
        self.bar.__enter__()
        return self.update

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def update(self, outcome: FileOutcome, report: IngestReport) -> None:
        totals = self.totals
        totals.update(pages=outcome.pages, chunks=outcome.chunks, tokens=outcome.tokens,
                      failed=outcome.outcome == "failed")
        rate = totals["tokens"] / max(time.perf_counter() - report.files_started_at, 1e-9)
        detail = f"{totals['pages']} pages · {totals['chunks']} chunks · {rate:,.0f} tokens/s"
        if totals["failed"]:
            detail += f" · {totals['failed']} failed"
        self.bar.update(self.task, total=report.total_files, completed=len(report.files), detail=detail)


class Terminated(BaseException):
    """SIGTERM: the run stops at once, as on a second Ctrl-C, and is recorded as aborted."""

    def __init__(self):
        super().__init__("stopped by SIGTERM")


class _stopping_on_sigterm:
    def __enter__(self) -> None:
        self.previous = signal.signal(signal.SIGTERM, self._handle)

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self.previous)

    @staticmethod
    def _handle(signum, frame) -> None:
        raise Terminated


class _stopping_on_ctrl_c:
    """The first Ctrl-C asks the run to stop after the documents in progress; a second one quits now."""

    def __init__(self, stop: threading.Event, console: Console):
        self.stop, self.console = stop, console

    def __enter__(self) -> None:
        self.previous = signal.signal(signal.SIGINT, self._handle)

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum, frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        self.console.print("stopping after the documents in progress (Ctrl-C again to quit at once)")


def _headline(report: IngestReport, counts: dict) -> str:
    """How the run ended, in words that say what a failure means."""
    took = f"in {report.seconds:.1f} s"
    if report.status == "partial":
        return f"{counts['failed']} of {counts['seen']} files failed (listed below), the others are stored; {took}"
    if report.status == "failed":
        return f"nothing stored: {counts['failed']} of {counts['seen']} files failed (listed below); {took}"
    ended = {"succeeded": "done", "interrupted": "stopped early", "aborted": "stopped before its end"}
    return f"{ended.get(report.status, report.status)} {took}"


def print_summary(report: IngestReport, console: Console) -> None:
    counts = report.counts()
    rows = [("files", f"{counts['seen']} seen: {counts['ingested']} ingested, {counts['updated']} updated, "
                      f"{counts['unchanged']} unchanged, {counts['skipped']} skipped, {counts['failed']} failed"
                      + (f" ({counts['failed_new']} new)" if counts["failed"] else ""))]
    skipped = Counter(f.reason for f in report.files if f.outcome == "skipped")
    if skipped:
        rows.append(("skipped", ", ".join(f"{reason} {n}" for reason, n in skipped.most_common())))
    if counts["failed_by_reason"]:
        rows.append(("failures", ", ".join(f"{reason} {n}" for reason, n in counts["failed_by_reason"].items())))
    if report.pruned:
        shown = ", ".join(printable(key) for key in report.pruned[:PRUNED_SHOWN])
        more = f" and {len(report.pruned) - PRUNED_SHOWN} more" if len(report.pruned) > PRUNED_SHOWN else ""
        rows.append(("pruned", f"{len(report.pruned)} documents whose files are gone: {shown}{more}"))
    # Markdown and text files have no pages: "from 0 pages" read as if nothing was parsed.
    pages = f" from {counts['pages']} pages" if counts["pages"] else ""
    rows.append(("written", f"{counts['chunks']} chunks{pages}, "
                            f"{counts['embedded']} embedded ({counts['tokens']:,} tokens)"))
    if report.unmasked:
        rows.append(("not masked", report.unmasked))
    if counts["pii"]:
        rows.append(("masked", f"{sum(counts['pii'].values())} personal data values ("
                               + ", ".join(f"{entity} {n}" for entity, n in counts["pii"].items()) + ")"))
    if report.stage_seconds:
        rows.append(("busy time", ", ".join(f"{stage} {s:.1f} s" for stage, s in report.stage_seconds.items())))
    console.print(f"collection [bold]{escape(report.collection)}[/bold]: {escape(_headline(report, counts))}")
    for label, value in rows:
        console.print(f"  [bold]{label:<10}[/bold] {escape(value)}", highlight=False)
    # One line per failure, never truncated: logs and grep see the whole key and reason.
    for outcome in report.failed:
        label = "new" if report.is_new(outcome) else "known"
        console.print(f"  failed ({label})  {printable(outcome.key)}: {outcome.reason}", highlight=False,
                      markup=False)
