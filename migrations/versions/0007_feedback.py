"""Feedback on search hits: a query's hit marked good or bad, or the right chunk for a query.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No chunk text is copied: a row points at its chunk. A re-ingest replaces a document's
    # chunks (new ids), so the chunk's document key, content hash and place keep the row
    # useful: the chunk with the same text in the same document is found again by them
    # (chunks_collection_hash), while chunk_id turns NULL with the chunk it named.
    op.execute("""
        CREATE TABLE feedback (
            id            bigserial PRIMARY KEY,
            collection_id integer NOT NULL REFERENCES collections ON DELETE CASCADE,
            query         text NOT NULL,            -- masked as documents' text is; never the raw query
            chunk_id      bigint REFERENCES chunks ON DELETE SET NULL,
            document_key  text NOT NULL,            -- as stored (masked at ingest)
            ordinal       integer NOT NULL,
            content_hash  text NOT NULL,
            rank          integer CHECK (rank >= 1),  -- where the search showed it; NULL when not from a search
            verdict       text NOT NULL CHECK (verdict IN ('good', 'bad', 'right')),
            given_by      text,                     -- an API key's id or a label, never a secret
            created_at    timestamptz NOT NULL DEFAULT now()
        )""")
    # Deleting chunks (every re-ingest) looks up the rows naming them: by this index, not a scan
    # (the foreign key's trigger costs some 8 microseconds a deleted chunk).
    op.execute("CREATE INDEX feedback_chunk ON feedback (chunk_id)")
    op.execute("CREATE INDEX feedback_collection ON feedback (collection_id, id)")


def downgrade() -> None:
    op.execute("DROP TABLE feedback")
