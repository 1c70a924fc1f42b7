"""Post images: the media library, which posts show which image, and file contents kept in
the database when MEDIA_STORAGE=database.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("byte_size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_media_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_media"),
        sa.UniqueConstraint("user_id", "digest", name="uq_media_user_id_digest"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_media_user_id_created_at_id", "media", ["user_id", "created_at", "id"])
    op.create_table(
        "post_media",
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("media_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"], ["posts.id"], name="fk_post_media_post_id_posts", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["media_id"], ["media.id"], name="fk_post_media_media_id_media", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("post_id", "media_id", name="pk_post_media"),
    )
    op.create_index("ix_post_media_media_id_post_id", "post_media", ["media_id", "post_id"])
    op.create_table(
        "media_blobs",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_media_blobs_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("name", name="pk_media_blobs"),
    )
    op.create_index("ix_media_blobs_user_id", "media_blobs", ["user_id"])


def downgrade() -> None:
    op.drop_table("media_blobs")
    op.drop_table("post_media")
    op.drop_table("media")
