"""Reading: rendered Markdown stored with each post, and full-text search.

SQLite gets an FTS5 index kept in step with posts by triggers; PostgreSQL a generated
tsvector column with a GIN index. The search objects are not part of the models (they are
backend-specific), so the schema comparison in the tests leaves them out by name.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_UP = [
    # External-content FTS5 table: the text lives once, in posts.
    """CREATE VIRTUAL TABLE posts_fts USING fts5(
        title, content, content='posts', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER posts_fts_insert AFTER INSERT ON posts BEGIN
        INSERT INTO posts_fts(rowid, title, content) VALUES (new.id, new.title, new.content);
    END""",
    """CREATE TRIGGER posts_fts_delete AFTER DELETE ON posts BEGIN
        INSERT INTO posts_fts(posts_fts, rowid, title, content)
        VALUES ('delete', old.id, old.title, old.content);
    END""",
    """CREATE TRIGGER posts_fts_update AFTER UPDATE OF title, content ON posts BEGIN
        INSERT INTO posts_fts(posts_fts, rowid, title, content)
        VALUES ('delete', old.id, old.title, old.content);
        INSERT INTO posts_fts(rowid, title, content) VALUES (new.id, new.title, new.content);
    END""",
    "INSERT INTO posts_fts(posts_fts) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS posts_fts_update",
    "DROP TRIGGER IF EXISTS posts_fts_delete",
    "DROP TRIGGER IF EXISTS posts_fts_insert",
    "DROP TABLE IF EXISTS posts_fts",
]
POSTGRES_UP = [
    """ALTER TABLE posts ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(title, '')), 'A')
        || setweight(to_tsvector('english', coalesce(content, '')), 'B')) STORED""",
    "CREATE INDEX ix_posts_search_vector ON posts USING gin (search_vector)",
]
POSTGRES_DOWN = [
    "DROP INDEX IF EXISTS ix_posts_search_vector",
    "ALTER TABLE posts DROP COLUMN IF EXISTS search_vector",
]


def upgrade() -> None:
    with op.batch_alter_table("posts") as batch:
        batch.add_column(sa.Column("content_html", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("excerpt", sa.Text(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("reading_minutes", sa.Integer(), nullable=False, server_default="1")
        )
        # 0 = not rendered yet: the app renders such posts when it starts.
        batch.add_column(
            sa.Column("render_version", sa.Integer(), nullable=False, server_default="0")
        )
    for statement in SQLITE_UP if op.get_bind().dialect.name == "sqlite" else POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else POSTGRES_DOWN:
        op.execute(statement)
    with op.batch_alter_table("posts") as batch:
        batch.drop_column("render_version")
        batch.drop_column("reading_minutes")
        batch.drop_column("excerpt")
        batch.drop_column("content_html")
