"""Index posts.render_version, so that start-up finds posts left by an older Markdown
renderer without scanning the whole table (a million posts took seconds per worker).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_posts_render_version", "posts", ["render_version"])


def downgrade() -> None:
    op.drop_index("ix_posts_render_version", table_name="posts")
