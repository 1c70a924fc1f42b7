"""SQLite: never reuse the id of a deleted post or user (AUTOINCREMENT).

Without it SQLite hands a deleted row's id to the next insert, so an old link or a feed
entry's id would come to name a different post. PostgreSQL sequences never reuse ids, so
this revision changes nothing there. On SQLite the tables are rebuilt, which drops their
triggers: they are taken from the revisions that made them and put back.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VERSIONS = Path(__file__).resolve().parent


def _revision(filename: str) -> ModuleType:
    """An earlier revision's module, for its trigger DDL (one definition, not a copy)."""
    spec = importlib.util.spec_from_file_location(filename, VERSIONS / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _triggers() -> tuple[list[str], list[str]]:
    """(CREATE statements, names) of every trigger on posts and users."""
    search = _revision("0003_reading.py")
    state = _revision("0005_content_version.py")
    creates = [sql for sql in search.SQLITE_UP if sql.lstrip().startswith("CREATE TRIGGER")]
    creates += [
        f"CREATE TRIGGER {name} {event} BEGIN {state.BUMP}; END"
        for name, event in state.SQLITE_TRIGGERS.items()
    ]
    names = [sql.split()[2] for sql in creates]
    return creates, names


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    creates, names = _triggers()
    for name in names:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for table in ("users", "posts"):
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
    for statement in creates:
        op.execute(statement)
    op.execute("INSERT INTO posts_fts(posts_fts) VALUES ('rebuild')")


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
