"""PostgreSQL: the connection (embedded server or DATABASE_URL), schema and writes.

`store` knows nothing of parsers or models: it is handed typed records and numpy arrays.
"""

from .access import DEFAULT_UNLABELLED, UNLABELLED, AccessError, readable_by, readable_chunks
from .catalog import ChunkView, CollectionSummary, DocumentSummary, DroppedCollection, Removal, RunSummary
from .database import Store, indexed_embedding, migrate, resolve_url
from .errors import SpaceMismatch, StoreError, UnknownDocuments
from .feedback import VERDICTS, Feedback, JudgedChunk, UnknownChunk, Verdict
from .keys import SCOPES, ApiKey, ApiKeyError, NewKey, Scope
from .records import Chunk, Collection, DocumentRecord, DocumentState, DocumentStatus, RunStatus, citation, pages_label
from .tables import hnsw_index_name

__all__ = [
    "DEFAULT_UNLABELLED", "SCOPES", "UNLABELLED", "VERDICTS", "AccessError", "ApiKey", "ApiKeyError", "NewKey",
    "Scope", "Feedback", "JudgedChunk", "UnknownChunk", "Verdict",
    "citation", "pages_label", "readable_by", "readable_chunks",
    "Chunk", "ChunkView", "Collection", "CollectionSummary", "DocumentRecord", "DocumentState", "DocumentStatus",
    "DocumentSummary", "DroppedCollection", "Removal", "RunStatus", "RunSummary", "SpaceMismatch", "Store",
    "StoreError", "UnknownDocuments", "hnsw_index_name", "indexed_embedding", "migrate", "resolve_url",
]
