"""The store's errors: StoreError (pgkb.errors) and its kinds."""

from pgkb.errors import StoreError

__all__ = ["SpaceMismatch", "StoreError"]


class SpaceMismatch(StoreError):
    """Vectors of another embedding space than the collection's."""
