"""A site-wide content version, bumped by triggers on every change a page could show.

Rendered pages are cached per worker process under this number; every request reads it
(one indexed row), so a write made through any process is seen on the very next request.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUMP = "UPDATE site_state SET content_version = content_version + 1 WHERE id = 1"
SQLITE_TRIGGERS = {
    "site_state_post_insert": "AFTER INSERT ON posts",
    "site_state_post_update": "AFTER UPDATE ON posts",
    "site_state_post_delete": "AFTER DELETE ON posts",
    "site_state_user_update": "AFTER UPDATE OF username, image_file ON users",
    "site_state_user_delete": "AFTER DELETE ON users",
}
POSTGRES_TRIGGERS = {
    "site_state_posts": "AFTER INSERT OR UPDATE OR DELETE ON posts",
    "site_state_users": "AFTER UPDATE OF username, image_file OR DELETE ON users",
}


def upgrade() -> None:
    op.create_table(
        "site_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("content_version", sa.BigInteger(), nullable=False, server_default="1"),
        sa.PrimaryKeyConstraint("id", name="pk_site_state"),
    )
    op.execute("INSERT INTO site_state (id, content_version) VALUES (1, 1)")
    if op.get_bind().dialect.name == "sqlite":
        for name, event in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {event} BEGIN {BUMP}; END")
        return
    op.execute(
        "CREATE FUNCTION bump_content_version() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN {BUMP}; RETURN NULL; END $$"
    )
    for name, event in POSTGRES_TRIGGERS.items():
        # Once per statement, not per row: a bulk change bumps the version once.
        op.execute(
            f"CREATE TRIGGER {name} {event} FOR EACH STATEMENT "
            "EXECUTE FUNCTION bump_content_version()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS site_state_posts ON posts")
        op.execute("DROP TRIGGER IF EXISTS site_state_users ON users")
        op.execute("DROP FUNCTION IF EXISTS bump_content_version()")
    op.drop_table("site_state")
