"""What every pgkb command line (ingest, search, pgkb) shares: --version, -v/--verbose,
and how a PgkbError ends a command. Anything else raised is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import sys
import traceback

from pgkb import __version__
from pgkb.errors import PgkbError


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def add_verbose(parser: argparse.ArgumentParser, help: str = "say more, and show an error's traceback") -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help=help)


def print_error(error: PgkbError, verbose: bool) -> None:
    """An error's message on stderr, after its traceback with --verbose."""
    if verbose:
        traceback.print_exception(error)
    print(f"error: {error}", file=sys.stderr)
