"""PostgreSQL: the connection (embedded server or DATABASE_URL), schema and writes.

`store` knows nothing of parsers or models: it is handed typed records and numpy arrays.
"""

from .database import Store, hnsw_index_name, indexed_embedding, migrate, resolve_url
from .errors import SpaceMismatch, StoreError
from .records import Chunk, Collection, DocumentRecord, DocumentState, DocumentStatus, RunStatus

__all__ = [
    "Chunk", "Collection", "DocumentRecord", "DocumentState", "DocumentStatus", "RunStatus", "SpaceMismatch",
    "Store", "StoreError", "hnsw_index_name", "indexed_embedding", "migrate", "resolve_url",
]
