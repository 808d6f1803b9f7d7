"""Every error pgkb raises for something a user can act on derives from PgkbError, so a
caller (and the CLIs) catch one class; anything else is a bug and keeps its traceback.

    PgkbError
    ├── ConfigurationError   a setting, flag or input the user gave that pgkb cannot use (also ValueError)
    │                        kinds: ingest.run.UsageError, ingest.metadata.MetadataError,
    │                        retrieval.evaluation.JudgmentsError
    ├── ParseError           a file that cannot be read as a document
    ├── MaskingError         personal data masking could not run; kind: ingest.pii.KeyCollision
    ├── EmbeddingError       the model or embedding server failed or is missing (also ValueError)
    │                        kinds: embedding.ModelNotFound, embedding.ServerError
    ├── StoreError           the database: unreachable, missing collection, another space...
    └── QueryError           a bad search request: query text, filter, k (also ValueError)
                             kind: retrieval.filters.FilterError

The ValueError bases keep `except ValueError` in callers' code working for bad input.
"""


class PgkbError(Exception):
    """The root of pgkb's errors; each message says what went wrong and what to do."""


class ConfigurationError(PgkbError, ValueError):
    """A setting (PGKB_*, DATABASE_URL, a flag) or an input the user gave (a path, tags,
    metadata files, judgments) has a value pgkb cannot use."""


class ParseError(PgkbError):
    """A file could not be read as a document; `reason` is short and stable (encrypted,
    corrupt, empty file, too large...), `detail` says more."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class MaskingError(PgkbError):
    """Personal data masking could not run, so nothing may be stored. The message never
    quotes the text being masked."""


class EmbeddingError(PgkbError, ValueError):
    """The embedding model or server could not embed."""


class StoreError(PgkbError):
    """A database problem: unreachable, not started, missing collection..."""


class QueryError(PgkbError, ValueError):
    """A search request pgkb cannot run: its query text, filter or options."""
