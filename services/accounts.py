"""Logging in and changing passwords: the sequence the login form and the API share."""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import User
from services import passwords, sessions, throttling
from services.sessions import SessionKind

INVALID_LOGIN = "Invalid username or password"


class LoginThrottledError(Exception):
    """Too many recent failures: the client must wait `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class InvalidLoginError(Exception):
    """Unknown user or wrong password (deliberately not told apart)."""


@dataclass(frozen=True)
class LoggedIn:
    user: User
    token: str


def authenticate(db: Session, *, username: str, password: str) -> User | None:
    """The user whose name and password match, else None.

    An unknown user, or one without a password, still costs one hash verification so the
    response time does not reveal which usernames exist.
    """
    user = db.scalar(select(User).where(User.username == username.strip()))
    stored = user.password_hash if user else None
    # End the transaction before the deliberately slow hash: a write request holds SQLite's
    # write lock from its first statement, and no one else should wait on argon2.
    db.commit()
    valid, upgraded = passwords.verify_password(password, stored)
    if not (valid and user):
        return None
    if upgraded:
        user.password_hash = upgraded
        db.commit()
    return user


def log_in(
    db: Session, *, username: str, password: str, client_ip: str, kind: SessionKind
) -> LoggedIn:
    """Check the credentials under the throttle and start a session of `kind`.

    Raises LoginThrottledError while the account or address must wait, InvalidLoginError
    (after counting the failure) when the credentials do not match.
    """
    keys = throttling.throttle_keys(username, client_ip)
    wait = throttling.seconds_until_allowed(db, keys=keys)
    if wait:
        raise LoginThrottledError(wait)
    user = authenticate(db, username=username, password=password)
    if user is None:
        throttling.record_login_failure(db, keys=keys)
        raise InvalidLoginError(INVALID_LOGIN)
    throttling.clear_login_failures(db, key=keys[0])
    return LoggedIn(user, sessions.create_session(db, user=user, kind=kind))


def set_password(db: Session, *, user: User, password: str, keep_token: str | None) -> None:
    """Change the password and end every other session: a stolen cookie dies with it."""
    user.password_hash = passwords.hash_password(password)
    sessions.end_all_sessions(db, user=user, keep_token=keep_token)
