"""The mail outbox: messages written in the same transaction as the change that caused them,
and claimed by senders exactly once, whichever process or host they run in.

A claim is a short write transaction of its own: one conditional UPDATE that takes the due
messages no live claim holds (on PostgreSQL their rows are picked with FOR UPDATE SKIP
LOCKED, so concurrent senders pass over each other's instead of waiting; on SQLite writes
are serialised, so the condition alone decides). The claim lasts a lease, longer than any
delivery attempt takes: a sender that dies mid-way loses its messages to the next one when
the lease runs out, and no one else touches them before.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from config import utcnow
from models import OutboxMessage

# How long a claim keeps other senders away: far longer than one SMTP conversation.
CLAIM_LEASE = timedelta(minutes=5)
# Retries wait 30 s, 1 min, 2 min … up to an hour between attempts, until give_up_at.
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)
# Unless the message says otherwise (a link that expires sooner), senders keep trying a day.
DEFAULT_LIFETIME = timedelta(days=1)
SUBJECT_MAX_LENGTH = 200
ERROR_MAX_LENGTH = 1000


def one_line(text: str) -> str:
    """`text` with every run of whitespace, line breaks included, made one space: a header
    value cannot then start a header of its own."""
    return " ".join(text.split())


def enqueue(
    db: Session,
    *,
    to: str,
    subject: str,
    text: str,
    html: str,
    give_up_at: datetime | None = None,
) -> OutboxMessage:
    """Add a message to the outbox in the session's transaction (the caller commits it
    together with the change the message tells of)."""
    now = utcnow()
    message = OutboxMessage(
        recipient=to,
        subject=one_line(subject)[:SUBJECT_MAX_LENGTH],
        body_text=text,
        body_html=html,
        status="pending",
        created_at=now,
        next_attempt_at=now,
        give_up_at=give_up_at or now + DEFAULT_LIFETIME,
        attempts=0,
    )
    db.add(message)
    return message


@dataclass(frozen=True)
class Claimed:
    """A message a sender holds, with what it needs to send it."""

    id: int
    recipient: str
    subject: str
    body_text: str
    body_html: str
    created_at: datetime
    attempts: int
    claimed_by: str


def new_sender_id() -> str:
    return secrets.token_hex(16)


def claim_due(db: Session, *, sender: str, limit: int = 20) -> list[Claimed]:
    """Claim up to `limit` messages that are due and unclaimed, and commit the claim.

    Call it on a write session with no transaction open: the claim is the transaction.
    """
    now = utcnow()
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == "pending",
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until <= now),
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    # The UPDATE repeats the condition: on SQLite the subquery and the UPDATE are one
    # statement under the write lock; on PostgreSQL the rows are locked by the subquery.
    rows = db.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id.in_(due.scalar_subquery()),
            OutboxMessage.status == "pending",
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until <= now),
        )
        .values(
            claimed_by=sender,
            claimed_until=now + CLAIM_LEASE,
            attempts=OutboxMessage.attempts + 1,
        )
        .returning(
            OutboxMessage.id,
            OutboxMessage.recipient,
            OutboxMessage.subject,
            OutboxMessage.body_text,
            OutboxMessage.body_html,
            OutboxMessage.created_at,
            OutboxMessage.attempts,
        )
        .execution_options(synchronize_session=False)
    ).all()
    db.commit()
    return sorted(
        (Claimed(*row, claimed_by=sender) for row in rows), key=lambda claimed: claimed.id
    )


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failure: doubling, up to LONGEST_RETRY."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY)


def _held(claimed: Claimed) -> object:
    # Only the sender that holds the claim records the outcome (a sender whose lease ran
    # out must not overwrite what the next one did).
    return (OutboxMessage.id == claimed.id) & (OutboxMessage.claimed_by == claimed.claimed_by)


def mark_sent(db: Session, claimed: Claimed) -> bool:
    """Record the delivery; False if the claim had been lost meanwhile."""
    result = db.execute(
        update(OutboxMessage)
        .where(_held(claimed))
        .values(status="sent", sent_at=utcnow(), claimed_until=None, last_error=None)
        .execution_options(synchronize_session=False)
    )
    db.commit()
    return bool(result.rowcount)


def mark_failed_attempt(db: Session, claimed: Claimed, error: str, *, permanent: bool) -> str:
    """Record a failed attempt: try again after the backoff, or give up (`failed`) when the
    error is permanent or the next attempt would come after give_up_at. Returns the status."""
    now = utcnow()
    give_up_at = db.scalar(select(OutboxMessage.give_up_at).where(_held(claimed)))
    next_attempt = now + retry_delay(claimed.attempts)
    status = "failed" if permanent or give_up_at is None or next_attempt > give_up_at else "pending"
    db.execute(
        update(OutboxMessage)
        .where(_held(claimed))
        .values(
            status=status,
            next_attempt_at=next_attempt,
            claimed_until=None,
            last_error=error[:ERROR_MAX_LENGTH],
        )
        .execution_options(synchronize_session=False)
    )
    db.commit()
    return status
