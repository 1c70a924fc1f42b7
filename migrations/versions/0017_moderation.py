"""Moderation: roles, suspended accounts, hidden posts and the audit log.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LISTING_INDEXES = {
    "ix_posts_published_at_id": ["published_at", "id"],
    "ix_posts_user_id_published_at_id": ["user_id", "published_at", "id"],
}


def upgrade() -> None:
    # Constant defaults: plain ALTER TABLEs on both databases, no table rebuild.
    op.add_column(
        "users", sa.Column("role", sa.String(16), nullable=False, server_default="author")
    )
    op.add_column("users", sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("posts", sa.Column("hidden", sa.Boolean(), nullable=False, server_default="0"))
    # Readers' listings filter on `hidden`: carried in their indexes, so that counting off
    # the rows before a deep page still reads an index alone.
    _index_listings(["hidden"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "admin_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="SET NULL", name="fk_audit_log_admin_id_users"),
            nullable=True,
        ),
        sa.Column("admin_name", sa.String(50), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target_kind", sa.String(16), nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=False),
        sa.Column("target_label", sa.String(100), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_created_at_id", "audit_log", ["created_at", "id"])


def _index_listings(extra: list[str]) -> None:
    for name, columns in LISTING_INDEXES.items():
        op.drop_index(name, table_name="posts")
        op.create_index(name, "posts", [*columns, *extra])


def downgrade() -> None:
    op.drop_index("ix_audit_log_created_at_id", table_name="audit_log")
    op.drop_table("audit_log")
    _index_listings([])
    # SQLite (3.35 and later) drops a column in place, keeping the table's triggers.
    op.execute("ALTER TABLE posts DROP COLUMN hidden")
    op.execute("ALTER TABLE users DROP COLUMN suspended_at")
    op.execute("ALTER TABLE users DROP COLUMN role")
