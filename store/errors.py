"""The store's errors: StoreError (pgkb.errors) and its kinds."""

from pgkb.errors import StoreError

__all__ = ["SpaceMismatch", "StoreError", "UnknownDocuments"]


class SpaceMismatch(StoreError):
    """Vectors of another embedding space than the collection's."""


class UnknownDocuments(StoreError):
    """Keys a collection has no document for; nothing was removed."""

    def __init__(self, collection: str, keys: list[str]):
        self.collection, self.keys = collection, keys
        # Keys are printed as stored: personal data in them was masked at ingest.
        super().__init__(f"collection {collection!r} has no document with the key(s) {', '.join(map(repr, keys))}; "
                         f"nothing was removed")
