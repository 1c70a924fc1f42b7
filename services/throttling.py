"""Login throttling, kept in the database so that every worker process sees the same count."""

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from config import utcnow
from models import LoginFailure

# Attempts allowed in the window before each further one must wait, per key kind.
THROTTLE_WINDOW = timedelta(minutes=15)
FREE_ATTEMPTS = {"user": 5, "ip": 20}
MAX_WAIT_SECONDS = int(THROTTLE_WINDOW.total_seconds())


def throttle_keys(username: str, client_ip: str) -> list[str]:
    return [f"user:{username.strip().lower()}"[:200], f"ip:{client_ip}"[:200]]


def seconds_until_allowed(db: Session, *, keys: list[str], now: datetime | None = None) -> int:
    """0 if a login attempt may go ahead, else how long the client must wait.

    Past the free attempts, each failure doubles the wait since the last failure, up to
    the whole window: slowed down first, then refused for a while.
    """
    now = now or utcnow()
    rows = db.execute(
        select(LoginFailure.key, func.count(), func.max(LoginFailure.failed_at))
        .where(LoginFailure.key.in_(keys), LoginFailure.failed_at > now - THROTTLE_WINDOW)
        .group_by(LoginFailure.key)
    ).all()
    wait = 0
    for key, failures, last_failure in rows:
        excess = failures - FREE_ATTEMPTS[key.split(":", 1)[0]]
        if excess >= 0:
            delay = timedelta(seconds=min(2**excess, MAX_WAIT_SECONDS))
            wait = max(wait, int((last_failure + delay - now).total_seconds()) + 1)
    return max(wait, 0)


def record_login_failure(db: Session, *, keys: list[str]) -> None:
    db.add_all(LoginFailure(key=key) for key in keys)
    db.commit()


def clear_login_failures(db: Session, *, key: str) -> None:
    db.execute(delete(LoginFailure).where(LoginFailure.key == key))
    db.commit()
