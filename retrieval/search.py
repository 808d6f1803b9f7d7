"""Search a collection: the query is embedded and matched by cosine similarity on the
collection's HNSW index, narrowed by filters, every hit citing its file, pages and section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import ColumnElement, cast, select, text

from embedding import load_embedder
from store import Settings, Store
from store.tables import chunks, documents

from .filters import compile_filters

# HNSW returns ef_search candidates before filters apply; a filtered query asks for more.
FILTERED_EF_SEARCH = 400


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    text: str
    score: float                  # cosine similarity, 1 is identical
    document_key: str             # the file, relative to the ingested folder
    path: str
    page_start: int | None
    page_end: int | None
    section_path: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def pages(self) -> str:
        if self.page_start is None:
            return ""
        if self.page_end in (None, self.page_start):
            return f"p. {self.page_start}"
        return f"pp. {self.page_start}-{self.page_end}"

    @property
    def citation(self) -> str:
        """'policy.pdf, pp. 2-3, Travel > Per diem'."""
        parts = [self.document_key, self.pages, " > ".join(self.section_path)]
        return ", ".join(p for p in parts if p)


class KnowledgeBase:
    """A connection and a loaded model, for many queries against one collection."""

    def __init__(self, settings: Settings | None = None, *, collection: str | None = None):
        self.settings = settings or Settings.from_env()
        self.store = Store.open(self.settings)
        self.collection = self.store.collection(collection or self.settings.collection)
        model = self.collection.space["model"]
        self.embedder = load_embedder(model, device=self.settings.device,
                                      batch_tokens=self.settings.batch_tokens)

    def search(self, query: str, k: int = 5,
               filters: dict[str, Any] | ColumnElement | None = None) -> list[Hit]:
        vector = self.embedder.embed_queries([query])[0]
        embedding = cast(chunks.c.embedding, Vector(self.collection.dims))
        distance = embedding.cosine_distance(vector.tolist())
        statement = (
            select(chunks.c.id, chunks.c.text, chunks.c.page_start, chunks.c.page_end,
                   chunks.c.section_path, chunks.c.metadata, documents.c.key, documents.c.path,
                   (1 - distance).label("score"))
            .join(documents, documents.c.id == chunks.c.document_id)
            # The literal collection id matches the partial HNSW index's predicate.
            .where(chunks.c.collection_id == self.collection.id, *compile_filters(filters))
            .order_by(distance)
            .limit(k)
        )
        with self.store.engine.begin() as conn:
            if filters:
                conn.execute(text(f"SET LOCAL hnsw.ef_search = {FILTERED_EF_SEARCH}"))
            rows = conn.execute(statement).all()
        return [
            Hit(chunk_id=r.id, text=r.text, score=float(r.score), document_key=r.key, path=r.path,
                page_start=r.page_start, page_end=r.page_end, section_path=tuple(r.section_path),
                metadata=r.metadata)
            for r in rows
        ]

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "KnowledgeBase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_default: dict[tuple, KnowledgeBase] = {}


def search(query: str, k: int = 5, filters: dict[str, Any] | ColumnElement | None = None, *,
           collection: str | None = None, settings: Settings | None = None) -> list[Hit]:
    """Search with the configured settings; the connection and model stay loaded for the next call."""
    settings = settings or Settings.from_env()
    name = collection or settings.collection
    cache_key = (settings, name)
    if cache_key not in _default:
        _default[cache_key] = KnowledgeBase(settings, collection=name)
    return _default[cache_key].search(query, k=k, filters=filters)
