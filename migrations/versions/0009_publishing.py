"""Publishing: drafts and scheduled posts (status, published_at), readable URLs (slug), tags,
review links, and each author's time zone.

Existing posts become published at their date_posted and get a slug from their title.
Listings now walk (published_at, id) instead of (date_posted, id).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import re
import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def _slug(title: str) -> str:
    # The same rule as services.posts.slugify at the time of writing; a migration keeps its
    # own copy so that later changes to the app do not change what it did.
    folded = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")[:80].rstrip("-")
    return slug or "post"


def upgrade() -> None:
    # Plain ALTER TABLE on both databases: a batch rebuild of posts on SQLite would drop the
    # search and content-version triggers with the old table.
    op.add_column(
        "posts", sa.Column("status", sa.String(16), nullable=False, server_default="published")
    )
    op.add_column("posts", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("posts", sa.Column("slug", sa.String(80), nullable=False, server_default="post"))
    op.drop_index("ix_posts_date_posted_id", table_name="posts")
    op.drop_index("ix_posts_user_id_date_posted_id", table_name="posts")
    op.create_index("ix_posts_published_at_id", "posts", ["published_at", "id"])
    op.create_index("ix_posts_user_id_published_at_id", "posts", ["user_id", "published_at", "id"])
    bind = op.get_bind()
    bind.execute(sa.text("UPDATE posts SET published_at = date_posted"))
    _fill_slugs(bind)
    op.add_column(
        "users", sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC")
    )
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(80), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tags"),
        sa.UniqueConstraint("slug", name="uq_tags_slug"),
    )
    op.create_table(
        "post_tags",
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"], ["posts.id"], name="fk_post_tags_post_id_posts", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tags.id"], name="fk_post_tags_tag_id_tags", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("post_id", "tag_id", name="pk_post_tags"),
    )
    op.create_index("ix_post_tags_tag_id_post_id", "post_tags", ["tag_id", "post_id"])
    op.create_table(
        "review_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"], ["posts.id"], name="fk_review_links_post_id_posts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_review_links"),
        sa.UniqueConstraint("token_hash", name="uq_review_links_token_hash"),
    )
    op.create_index("ix_review_links_post_id", "review_links", ["post_id"])


def _fill_slugs(bind: sa.engine.Connection) -> None:
    last = 0
    while rows := bind.execute(
        sa.text("SELECT id, title FROM posts WHERE id > :last ORDER BY id LIMIT :n"),
        {"last": last, "n": BATCH},
    ).all():
        bind.execute(
            sa.text("UPDATE posts SET slug = :slug WHERE id = :id"),
            [{"id": row.id, "slug": _slug(row.title)} for row in rows],
        )
        last = rows[-1].id


def downgrade() -> None:
    op.drop_table("review_links")
    op.drop_table("post_tags")
    op.drop_table("tags")
    op.execute("ALTER TABLE users DROP COLUMN timezone")
    op.drop_index("ix_posts_user_id_published_at_id", table_name="posts")
    op.drop_index("ix_posts_published_at_id", table_name="posts")
    op.create_index("ix_posts_date_posted_id", "posts", ["date_posted", "id"])
    op.create_index("ix_posts_user_id_date_posted_id", "posts", ["user_id", "date_posted", "id"])
    for column in ("slug", "published_at", "status"):
        # SQLite (3.35 and later) drops a column in place, keeping the table's triggers.
        op.execute(f"ALTER TABLE posts DROP COLUMN {column}")
