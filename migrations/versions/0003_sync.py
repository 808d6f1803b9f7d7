"""What incremental ingest compares: the user's tags and the options a document was cut with.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The metadata the user attached (folder config, sidecar, --tag), apart from what the
    # parser found in the file (metadata), so either can change without losing the other.
    op.execute("ALTER TABLE documents ADD COLUMN tags jsonb NOT NULL DEFAULT '{}'")
    # A digest of the ingest options that shape the chunks (chunk size, masking policy): a
    # file whose bytes are unchanged is cut again when they change.
    op.execute("ALTER TABLE documents ADD COLUMN fingerprint text NOT NULL DEFAULT ''")


def downgrade() -> None:
    op.execute("ALTER TABLE documents DROP COLUMN fingerprint")
    op.execute("ALTER TABLE documents DROP COLUMN tags")
