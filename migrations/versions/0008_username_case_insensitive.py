"""Usernames unique whatever their case: a unique index on lower(username).

`frank` and `FRANK` were two accounts that look alike to readers, and the login throttle,
which counted failures by the lower-cased name, could be reset by logging in as the twin.
Existing twins are renamed first, so the index can be built: of the accounts whose names
differ only in case, the oldest (lowest id) keeps its name and each later one gets the
first free suffix `-2`, `-3` … (shortened to fit the column), in id order, so the outcome
is the same on every run. Each rename is logged; the renamed users log in with the new
name. Downgrading drops the index and leaves the names as they are.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_users_lower_username"
USERNAME_MAX_LENGTH = 50
logger = logging.getLogger("alembic.runtime.migration")


def _fold(connection: sa.Connection, name: str) -> str:
    # The database's own lower(), which the index uses (SQLite folds only ASCII).
    return connection.execute(sa.text("SELECT lower(:name)"), {"name": name}).scalar_one()


def rename_case_twins(connection: sa.Connection) -> list[tuple[int, str, str]]:
    """Rename every account whose name, lower-cased, an older account already has; returns
    (id, old name, new name) for each."""
    rows = connection.execute(
        sa.text("SELECT id, username, lower(username) FROM users ORDER BY id")
    ).all()
    existing = {folded for _, _, folded in rows}
    claimed: set[str] = set()
    renamed = []
    for user_id, name, folded in rows:
        if folded not in claimed:
            claimed.add(folded)
            continue
        number = 2
        while True:
            suffix = f"-{number}"
            candidate = name[: USERNAME_MAX_LENGTH - len(suffix)] + suffix
            candidate_folded = _fold(connection, candidate)
            if candidate_folded not in existing and candidate_folded not in claimed:
                break
            number += 1
        connection.execute(
            sa.text("UPDATE users SET username = :name WHERE id = :id"),
            {"name": candidate, "id": user_id},
        )
        claimed.add(candidate_folded)
        existing.add(candidate_folded)
        renamed.append((user_id, name, candidate))
        logger.warning(
            "Renamed user %d from %r to %r: usernames are now unique whatever their case",
            user_id,
            name,
            candidate,
        )
    return renamed


def upgrade() -> None:
    # An offline SQL script cannot look at the rows: rename any twins before running it.
    if not context.is_offline_mode():
        rename_case_twins(op.get_bind())
    op.create_index(INDEX, "users", [sa.text("lower(username)")], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="users")
