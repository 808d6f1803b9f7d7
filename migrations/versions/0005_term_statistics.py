"""BM25 statistics: each chunk's length in indexed words, and per collection its chunk count,
total length and each word's chunk frequency, kept by triggers in the chunks' own transaction.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The advisory lock (with a collection's id, a two-key lock) that one transaction at a time
# holds while it changes a collection's statistics: two transactions updating word rows in
# different orders would otherwise deadlock. (store.database's bulk-load lock is 0x706B62.)
STATISTICS_LOCK = 0x706B63


def upgrade() -> None:
    # A chunk's length for BM25: the words its tsvector holds, counted with repeats; generated,
    # so that every way of writing a chunk keeps it right.
    op.execute("""
        CREATE FUNCTION pgkb_term_count(tsv tsvector) RETURNS integer
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        RETURN (SELECT coalesce(sum(cardinality(positions)), 0) FROM unnest(tsv))""")
    op.execute("ALTER TABLE chunks ADD COLUMN term_count integer NOT NULL "
               "GENERATED ALWAYS AS (pgkb_term_count(tsv)) STORED")
    op.execute("""
        CREATE TABLE collection_statistics (
            collection_id integer PRIMARY KEY REFERENCES collections ON DELETE CASCADE,
            chunk_count   bigint NOT NULL,
            term_count    bigint NOT NULL
        )""")
    # fillfactor: room on each page for the new row versions of the counts a write changes
    # (heap-only updates, no index entry each).
    op.execute("""
        CREATE TABLE term_statistics (
            collection_id integer NOT NULL REFERENCES collections ON DELETE CASCADE,
            lexeme        text NOT NULL,
            chunk_count   integer NOT NULL,
            PRIMARY KEY (collection_id, lexeme)
        ) WITH (fillfactor = 70)""")
    op.execute(f"""
        CREATE FUNCTION pgkb_count_chunks(changed_collection integer, tsvs tsvector[], lengths bigint,
                                          sign integer) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            IF NOT EXISTS (SELECT FROM collections WHERE id = changed_collection) THEN
                RETURN;  -- the collection itself is being deleted, its statistics with it
            END IF;
            PERFORM pg_advisory_xact_lock({STATISTICS_LOCK}, changed_collection);
            INSERT INTO collection_statistics AS s
            VALUES (changed_collection, sign * cardinality(tsvs), sign * lengths)
            ON CONFLICT (collection_id) DO UPDATE
                SET chunk_count = s.chunk_count + excluded.chunk_count,
                    term_count = s.term_count + excluded.term_count;
            INSERT INTO term_statistics AS s
            SELECT changed_collection, lexeme, sign * count(*)
            FROM unnest(tsvs) AS chunk(tsv), unnest(tsvector_to_array(chunk.tsv)) AS lexeme
            GROUP BY lexeme
            ON CONFLICT (collection_id, lexeme) DO UPDATE SET chunk_count = s.chunk_count + excluded.chunk_count;
            IF sign < 0 THEN
                DELETE FROM term_statistics
                WHERE collection_id = changed_collection AND chunk_count = 0
                  AND lexeme IN (SELECT unnest(tsvector_to_array(chunk.tsv)) FROM unnest(tsvs) AS chunk(tsv));
            END IF;
        END $$""")
    for operation, function, table, sign in (("INSERT", "pgkb_chunks_inserted", "added", 1),
                                             ("DELETE", "pgkb_chunks_deleted", "removed", -1)):
        op.execute(f"""
            CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pgkb_count_chunks(collection_id, array_agg(tsv), sum(term_count), {sign})
                FROM {table} GROUP BY collection_id ORDER BY collection_id;
                RETURN NULL;
            END $$""")
        op.execute(f"""
            CREATE TRIGGER chunks_{operation.lower()}_statistics AFTER {operation} ON chunks
            REFERENCING {'NEW' if sign > 0 else 'OLD'} TABLE AS {table}
            FOR EACH STATEMENT EXECUTE FUNCTION {function}()""")
    # An UPDATE that changes a chunk's words counts as its removal and its insertion.
    op.execute("""
        CREATE FUNCTION pgkb_chunks_updated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pgkb_count_chunks(collection_id, array_agg(tsv), sum(term_count), -1)
            FROM (SELECT collection_id, tsv, term_count FROM removed
                  EXCEPT ALL SELECT collection_id, tsv, term_count FROM added) AS changed
            GROUP BY collection_id ORDER BY collection_id;
            PERFORM pgkb_count_chunks(collection_id, array_agg(tsv), sum(term_count), 1)
            FROM (SELECT collection_id, tsv, term_count FROM added
                  EXCEPT ALL SELECT collection_id, tsv, term_count FROM removed) AS changed
            GROUP BY collection_id ORDER BY collection_id;
            RETURN NULL;
        END $$""")
    op.execute("""
        CREATE TRIGGER chunks_update_statistics AFTER UPDATE ON chunks
        REFERENCING OLD TABLE AS removed NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION pgkb_chunks_updated()""")
    op.execute("""
        CREATE FUNCTION pgkb_chunks_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM term_statistics;
            DELETE FROM collection_statistics;
            RETURN NULL;
        END $$""")
    op.execute("""
        CREATE TRIGGER chunks_truncate_statistics AFTER TRUNCATE ON chunks
        FOR EACH STATEMENT EXECUTE FUNCTION pgkb_chunks_truncated()""")
    # The statistics of the chunks already stored.
    op.execute("""
        INSERT INTO collection_statistics
        SELECT collection_id, count(*), sum(term_count) FROM chunks GROUP BY collection_id""")
    op.execute("""
        INSERT INTO term_statistics
        SELECT collection_id, lexeme, count(*)
        FROM chunks, unnest(tsvector_to_array(tsv)) AS lexeme GROUP BY collection_id, lexeme""")


def downgrade() -> None:
    for operation, function in (("insert", "inserted"), ("delete", "deleted"), ("update", "updated"),
                                ("truncate", "truncated")):
        op.execute(f"DROP TRIGGER chunks_{operation}_statistics ON chunks")
        op.execute(f"DROP FUNCTION pgkb_chunks_{function}()")
    op.execute("DROP FUNCTION pgkb_count_chunks(integer, tsvector[], bigint, integer)")
    op.execute("DROP TABLE term_statistics, collection_statistics")
    op.execute("ALTER TABLE chunks DROP COLUMN term_count")
    op.execute("DROP FUNCTION pgkb_term_count(tsvector)")
