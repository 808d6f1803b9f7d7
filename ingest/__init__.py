"""The ingest stage: discover files, parse, chunk, embed, write.

    from ingest import ingest
    report = ingest("./docs")
"""

import os

# unstructured pings its vendor on import and prints an advert; pgkb runs on intranets and
# promises to send nothing anywhere. Set before any module of this package imports it.
os.environ["SCARF_NO_ANALYTICS"] = "true"
os.environ["UNSTRUCTURED_DISABLE_NOTICE"] = "1"

__all__ = ["FileOutcome", "IngestReport", "UsageError", "ingest"]


def __getattr__(name: str):
    # The run (model, database, masking) loads on first use, so a parser worker process,
    # which imports only ingest.parsers, starts in a second instead of loading all of that.
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
