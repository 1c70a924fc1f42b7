"""Each author's own content version, so that cached post pages are kept per post.

A post page is cached under a stamp read from its own row and its author's (see
services.validity): a write to one post no longer throws away every other post's page.
What the site-wide counter of migration 0005 cannot see, a change that hides or shows all
of one author's posts at once, bumps this number (services.validity.invalidate_author).

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: a plain ALTER TABLE on both databases, no table rebuild.
    op.add_column(
        "users",
        sa.Column("content_version", sa.BigInteger(), nullable=False, server_default="1"),
    )


def downgrade() -> None:
    # SQLite (3.35 and later) drops a column in place, keeping the table's triggers.
    op.execute("ALTER TABLE users DROP COLUMN content_version")
