"""Revision history: what every post held at each of its versions.

Each existing post gets one revision, its current version, so no history starts empty. It is
copied in SQL as plain UTF-8 text (encoding "text"); revisions saved by the app from then on
are compressed.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tag names of the post, as a JSON array in the post's order (tag ids).
TAGS_SQL = {
    "sqlite": (
        "(SELECT json_group_array(name) FROM (SELECT t.name AS name FROM post_tags pt"
        " JOIN tags t ON t.id = pt.tag_id WHERE pt.post_id = posts.id ORDER BY t.id))"
    ),
    "postgresql": (
        "(SELECT coalesce(json_agg(t.name ORDER BY t.id), '[]'::json)::text FROM post_tags pt"
        " JOIN tags t ON t.id = pt.tag_id WHERE pt.post_id = posts.id)"
    ),
}
CONTENT_BYTES_SQL = {
    "sqlite": "CAST(content AS BLOB)",
    "postgresql": "convert_to(content, 'UTF8')",
}


def upgrade() -> None:
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(100), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("slug", sa.String(80), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("encoding", sa.String(8), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("base_number", sa.Integer(), nullable=False),
        sa.Column("words_added", sa.Integer(), nullable=True),
        sa.Column("words_removed", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["post_id"], ["posts.id"], name="fk_revisions_post_id_posts", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_revisions_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_revisions"),
        sa.UniqueConstraint("post_id", "number", name="uq_revisions_post_id"),
    )
    op.create_index("ix_revisions_user_id", "revisions", ["user_id"])
    dialect = op.get_bind().dialect.name
    op.execute(
        "INSERT INTO revisions (post_id, number, title, tags, slug, status, published_at,"
        " user_id, saved_at, encoding, body, base_number)"
        f" SELECT id, version, title, {TAGS_SQL[dialect]}, slug, status, published_at,"
        f" user_id, updated_at, 'text', {CONTENT_BYTES_SQL[dialect]}, version FROM posts"
    )


def downgrade() -> None:
    op.drop_index("ix_revisions_user_id", table_name="revisions")
    op.drop_table("revisions")
