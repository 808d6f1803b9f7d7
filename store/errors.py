"""Errors the user can act on; each message says what to do."""


class StoreError(Exception):
    """A database problem: unreachable, not started, missing collection..."""


class SpaceMismatch(StoreError):
    """Vectors of another embedding space than the collection's."""
