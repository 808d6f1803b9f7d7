"""Every error pgkb raises for something a user can act on derives from PgkbError, so a
caller (and the CLIs) catch one class; anything else is a bug and keeps its traceback.

    PgkbError
    ├── ConfigurationError   a setting or option out of range, a bad flag value (also ValueError)
    ├── ParseError           a file that cannot be read as a document
    ├── MaskingError         personal data masking could not run
    ├── EmbeddingError       the model or embedding server failed or is missing (also ValueError)
    ├── StoreError           the database: unreachable, missing collection, another space...
    └── QueryError           a bad search request: query text, filter, k (also ValueError)

The ValueError bases keep `except ValueError` in callers' code working for bad input.
"""


class PgkbError(Exception):
    """The root of pgkb's errors; each message says what went wrong and what to do."""


class ConfigurationError(PgkbError, ValueError):
    """A setting (PGKB_*, DATABASE_URL, a flag) has a value pgkb cannot use."""


class ParseError(PgkbError):
    """A file could not be read as a document (encrypted, corrupt, unsupported, too large)."""


class MaskingError(PgkbError):
    """Personal data masking could not run, so nothing may be stored."""


class EmbeddingError(PgkbError, ValueError):
    """The embedding model or server could not embed."""


class StoreError(PgkbError):
    """A database problem: unreachable, not started, missing collection..."""


class QueryError(PgkbError, ValueError):
    """A search request pgkb cannot run: its query text, filter or options."""
