"""The ingest stage: discover files, parse, chunk, embed, write.

    from ingest import ingest
    report = ingest("./docs")
"""

import os
from importlib import import_module

# unstructured pings its vendor when it is imported and prints an advert; pgkb runs on
# intranets and promises to send nothing anywhere. These must be set before the first import
# of unstructured, which ingest.chunking and ingest.parsers make when they are imported, in
# this process and in every parser worker (which imports ingest.parsers, and so this first):
# this package's import is the one place that precedes them all.
os.environ["SCARF_NO_ANALYTICS"] = "true"
os.environ["UNSTRUCTURED_DISABLE_NOTICE"] = "1"

__all__ = ["FileOutcome", "IngestReport", "Outcome", "RunStatus", "UsageError", "ingest"]

# The module each public name comes from.
_HOMES = {"FileOutcome": "report", "IngestReport": "report", "Outcome": "report", "RunStatus": "report",
          "UsageError": "run", "ingest": "run"}


def __getattr__(name: str):
    # The run (model, database, masking) loads on first use, so a parser worker process,
    # which imports only ingest.parsers, starts in a second instead of loading all of that.
    if name in _HOMES:
        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
