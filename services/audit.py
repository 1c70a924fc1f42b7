"""The admin log, and the listings of the admin pages.

Every admin action writes an AuditEntry in the transaction of the action itself, naming the
admin, what was done, to what, and the reason given.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

from models import TITLE_MAX_LENGTH, AuditEntry, Invitation, Post, User
from services.paging import NumberedPage

RowT = TypeVar("RowT")
ADMIN_PAGE_SIZE = 25


@dataclass(frozen=True)
class AdminPage(NumberedPage, Generic[RowT]):
    """One page of an admin listing, newest first."""

    rows: Sequence[RowT]


def page_of(db: Session, query: Select[tuple[RowT]], *, page: int) -> AdminPage[RowT]:
    # One row past the page says whether there is a next one, without counting the table.
    offset = (page - 1) * ADMIN_PAGE_SIZE
    rows = list(db.scalars(query.offset(offset).limit(ADMIN_PAGE_SIZE + 1)).unique())
    more = len(rows) > ADMIN_PAGE_SIZE
    return AdminPage(page, ADMIN_PAGE_SIZE, page + 1 if more else page, rows[:ADMIN_PAGE_SIZE])


def _label(target: User | Post | Invitation) -> tuple[str, str]:
    if isinstance(target, User):
        return "user", target.username
    if isinstance(target, Post):
        return "post", target.title
    return "invitation", target.email[:TITLE_MAX_LENGTH]


def record(
    db: Session, admin: User, action: str, target: User | Post | Invitation, reason: str
) -> None:
    """Log an admin action in the open transaction (committed with the action itself)."""
    kind, label = _label(target)
    db.add(
        AuditEntry(
            admin_id=admin.id,
            admin_name=admin.username,
            action=action,
            target_kind=kind,
            target_id=target.id,
            target_label=label,
            reason=reason,
        )
    )
