"""Initial schema: collections, documents, chunks (vector + tsvector), ingest runs.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        """
        CREATE TABLE collections (
            id          serial PRIMARY KEY,
            name        text NOT NULL UNIQUE,
            model       text NOT NULL,
            dims        integer NOT NULL CHECK (dims > 0),
            space       jsonb NOT NULL,          -- the full EmbeddingSpace descriptor
            settings    jsonb NOT NULL DEFAULT '{}',
            created_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE documents (
            id            bigserial PRIMARY KEY,
            collection_id integer NOT NULL REFERENCES collections ON DELETE CASCADE,
            key           text NOT NULL,         -- path relative to the ingested root
            path          text NOT NULL,         -- where the file was read from
            sha256        text NOT NULL,
            size_bytes    bigint NOT NULL,
            mtime         timestamptz,
            media_type    text NOT NULL,
            title         text,
            metadata      jsonb NOT NULL DEFAULT '{}',
            status        text NOT NULL,
            error         text,
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            UNIQUE (collection_id, key)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE chunks (
            id            bigserial PRIMARY KEY,
            collection_id integer NOT NULL REFERENCES collections ON DELETE CASCADE,
            document_id   bigint NOT NULL REFERENCES documents ON DELETE CASCADE,
            ordinal       integer NOT NULL,
            text          text NOT NULL,
            section_path  text[] NOT NULL DEFAULT '{}',
            page_start    integer,
            page_end      integer,
            element_types text[] NOT NULL DEFAULT '{}',
            token_count   integer NOT NULL,
            content_hash  text NOT NULL,
            metadata      jsonb NOT NULL DEFAULT '{}',
            -- Dimension-free, so collections of different models share the table; each
            -- collection gets its own HNSW expression index on embedding::vector(dims).
            embedding     vector NOT NULL,
            -- Written by pgkb (store.fulltext): Chinese cut into words, section path weighted A.
            tsv           tsvector NOT NULL,
            UNIQUE (document_id, ordinal)
        )
        """
    )
    op.execute("CREATE INDEX chunks_collection_hash ON chunks (collection_id, content_hash)")
    op.execute("CREATE INDEX chunks_tsv ON chunks USING gin (tsv)")
    op.execute(
        """
        CREATE TABLE ingest_runs (
            id            bigserial PRIMARY KEY,
            collection_id integer REFERENCES collections ON DELETE SET NULL,
            started_at    timestamptz NOT NULL DEFAULT now(),
            finished_at   timestamptz,
            status        text NOT NULL DEFAULT 'running',
            options       jsonb NOT NULL DEFAULT '{}',
            counts        jsonb NOT NULL DEFAULT '{}',
            errors        jsonb NOT NULL DEFAULT '[]'
        )
        """
    )


def downgrade() -> None:
    # The vector extension stays: other schemas in the database may use it.
    op.execute("DROP TABLE ingest_runs, chunks, documents, collections")
