"""Per-document counts of masked personal data, by entity type (never the values).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # e.g. {"EMAIL_ADDRESS": 3, "CN_ID_CARD": 1}; empty when nothing was found or masking was off.
    op.execute("ALTER TABLE documents ADD COLUMN pii_counts jsonb NOT NULL DEFAULT '{}'")


def downgrade() -> None:
    op.execute("ALTER TABLE documents DROP COLUMN pii_counts")
