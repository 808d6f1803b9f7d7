"""The ingest stage: discover files, parse, chunk, embed, write.

    from ingest import ingest
    report = ingest("./docs")
"""

import os

# unstructured pings its vendor on import and prints an advert; pgkb runs on intranets and
# promises to send nothing anywhere. Set before any module of this package imports it.
os.environ["SCARF_NO_ANALYTICS"] = "true"
os.environ["UNSTRUCTURED_DISABLE_NOTICE"] = "1"

from .run import FileOutcome, IngestReport, UsageError, ingest  # noqa: E402

__all__ = ["FileOutcome", "IngestReport", "UsageError", "ingest"]
