"""SQLAlchemy Core view of the schema, for building queries. Alembic migrations own the DDL."""

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR

metadata = MetaData()

collections = Table(
    "collections", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("model", Text, nullable=False),
    Column("dims", Integer, nullable=False),
    Column("space", JSONB, nullable=False),
    Column("settings", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True)),
)

documents = Table(
    "documents", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("collection_id", ForeignKey("collections.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("mtime", DateTime(timezone=True)),
    Column("media_type", Text, nullable=False),
    Column("title", Text),
    Column("metadata", JSONB, nullable=False),
    Column("tags", JSONB, nullable=False),
    # Who may read it: the groups its `access` tag names; None for no tag (migration 0006).
    Column("readers", ARRAY(Text), Computed("pgkb_readers(tags)")),
    Column("fingerprint", Text, nullable=False),
    Column("pii_counts", JSONB, nullable=False),
    Column("status", Text, nullable=False),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)

chunks = Table(
    "chunks", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("collection_id", ForeignKey("collections.id"), nullable=False),
    Column("document_id", ForeignKey("documents.id"), nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("section_path", ARRAY(Text), nullable=False),
    Column("page_start", Integer),
    Column("page_end", Integer),
    Column("element_types", ARRAY(Text), nullable=False),
    Column("token_count", Integer, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("metadata", JSONB, nullable=False),
    Column("embedding", Vector(), nullable=False),
    Column("tsv", TSVECTOR),
    Column("term_count", Integer, Computed("pgkb_term_count(tsv)")),  # tsv's words, with repeats: BM25's length
)

# Kept by triggers on chunks, in the chunks' own transaction (migration 0005): what BM25 needs.
collection_statistics = Table(
    "collection_statistics", metadata,
    Column("collection_id", ForeignKey("collections.id"), primary_key=True),
    Column("chunk_count", BigInteger, nullable=False),
    Column("term_count", BigInteger, nullable=False),
)

term_statistics = Table(
    "term_statistics", metadata,
    Column("collection_id", ForeignKey("collections.id"), primary_key=True),
    Column("lexeme", Text, primary_key=True),
    Column("chunk_count", Integer, nullable=False),  # how many of the collection's chunks hold it
)

ingest_runs = Table(
    "ingest_runs", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("collection_id", ForeignKey("collections.id")),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", Text, nullable=False),
    Column("options", JSONB, nullable=False),
    Column("counts", JSONB, nullable=False),
    Column("errors", JSONB, nullable=False),
)

# API keys (store.keys): the secret is kept as its SHA-256 only.
api_keys = Table(
    "api_keys", metadata,
    Column("id", Text, primary_key=True),
    Column("secret_hash", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("collections", ARRAY(Text), nullable=False),
    Column("groups", ARRAY(Text), nullable=False),
    Column("created_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

# Feedback on search hits (store.feedback, migration 0007): no chunk text, only where the chunk is.
feedback = Table(
    "feedback", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("collection_id", ForeignKey("collections.id"), nullable=False),
    Column("query", Text, nullable=False),  # masked
    Column("chunk_id", ForeignKey("chunks.id")),  # None once a re-ingest replaced the chunk
    Column("document_key", Text, nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("rank", Integer),
    Column("verdict", Text, nullable=False),
    Column("given_by", Text),
    Column("created_at", DateTime(timezone=True)),
)


def hnsw_index_name(collection_id: int) -> str:
    """A collection's own HNSW index (store.database makes it; one per collection, on its rows)."""
    return f"chunks_embedding_hnsw_{collection_id}"


__all__ = ["metadata", "collections", "documents", "chunks", "collection_statistics", "term_statistics", "ingest_runs",
           "api_keys", "feedback", "hnsw_index_name"]
