"""Access control: each document's readers (from its `access` tag), and API keys stored as hashes.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A document's readers: the groups its user metadata's `access` key names (a list, or a
    # comma-separated string); NULL when it has none (the collection's setting decides), and
    # no one when the value is anything else: a malformed label never makes a document public.
    # Only the user's tags count, never what a file says about itself. Generated, so every way
    # of writing a document (ingest, a tags-only update) keeps it right.
    op.execute("""
        CREATE FUNCTION pgkb_readers(tags jsonb) RETURNS text[]
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        RETURN CASE
            WHEN NOT tags ? 'access' THEN NULL
            WHEN jsonb_typeof(tags -> 'access') = 'array'
                THEN ARRAY(SELECT btrim(reader) FROM jsonb_array_elements_text(tags -> 'access') AS reader
                           WHERE btrim(reader) <> '')
            WHEN jsonb_typeof(tags -> 'access') = 'string'
                THEN ARRAY(SELECT btrim(reader) FROM regexp_split_to_table(tags ->> 'access', ',') AS reader
                           WHERE btrim(reader) <> '')
            ELSE '{}'::text[]
        END""")
    op.execute("ALTER TABLE documents ADD COLUMN readers text[] GENERATED ALWAYS AS (pgkb_readers(tags)) STORED")
    op.execute("CREATE INDEX documents_readers ON documents USING gin (readers)")
    op.execute("""
        CREATE TABLE api_keys (
            id           text PRIMARY KEY,          -- the key's public part, shown in listings
            secret_hash  text NOT NULL,             -- SHA-256 of the whole key; the key itself is never stored
            name         text NOT NULL,
            scope        text NOT NULL CHECK (scope IN ('read', 'ingest', 'admin')),
            collections  text[] NOT NULL,
            groups       text[] NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            revoked_at   timestamptz
        )""")


def downgrade() -> None:
    op.execute("DROP TABLE api_keys")
    op.execute("ALTER TABLE documents DROP COLUMN readers")
    op.execute("DROP FUNCTION pgkb_readers(jsonb)")
