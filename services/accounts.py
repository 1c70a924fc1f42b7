"""Logging in, confirming the current password, and changing it: the sequences the forms and
the API share. Every password check, whichever door it comes through, runs under the same
throttle and counts against the same account."""

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import User
from services import passwords, sessions, throttling
from services.errors import ThrottledError, WrongPasswordError
from services.sessions import SessionKind

INVALID_LOGIN = "Invalid username or password"
WRONG_PASSWORD = "The current password is incorrect"
PASSWORD_NEEDED = "The current password is needed for this change"

# The name the routers have long used for it.
LoginThrottledError = ThrottledError


class InvalidLoginError(Exception):
    """Unknown user or wrong password (deliberately not told apart)."""


@dataclass(frozen=True)
class LoggedIn:
    user: User
    token: str


def find_by_username(db: Session, *, username: str) -> User | None:
    """The user of that name, however it is capitalised (usernames are unique regardless of
    case; the database compares both sides with its own lower(), as the index does)."""
    return db.scalar(select(User).where(func.lower(User.username) == func.lower(username.strip())))


def _check_under_throttle(
    db: Session, *, user: User | None, password: str, keys: list[str]
) -> bool:
    """Whether `password` is `user`'s, with the throttle on `keys` applied first.

    Raises ThrottledError while any key must wait. A failure is counted against every key;
    a success clears the account's count (keys[0]). No user, or one without a password,
    still costs one hash verification, so the time taken does not tell which accounts exist.
    """
    wait = throttling.seconds_until_allowed(db, keys=keys)
    stored = user.password_hash if user else None
    # End the transaction before the deliberately slow hash: a write request holds SQLite's
    # write lock from its first statement, and no one else should wait on argon2.
    db.commit()
    if wait:
        raise ThrottledError(wait)
    valid, upgraded = passwords.verify_password(password, stored)
    if not (valid and user):
        throttling.record_login_failure(db, keys=keys)
        return False
    if upgraded:
        user.password_hash = upgraded
    throttling.clear_login_failures(db, key=keys[0])
    return True


def log_in(
    db: Session, *, username: str, password: str, client_ip: str, kind: SessionKind
) -> LoggedIn:
    """Check the credentials under the throttle and start a session of `kind`.

    Raises ThrottledError while the account or address must wait, InvalidLoginError (after
    counting the failure) when the credentials do not match. Failures count against the
    account's id, so no spelling of its name has a count of its own; a name no account has
    is counted by that name, so guessing at it is slowed down just the same.
    """
    user = find_by_username(db, username=username)
    account = throttling.account_key(user.id) if user else throttling.unknown_name_key(username)
    keys = [account, throttling.address_key(client_ip)]
    if not _check_under_throttle(db, user=user, password=password, keys=keys):
        raise InvalidLoginError(INVALID_LOGIN)
    assert user is not None  # a match needs an account
    return LoggedIn(user, sessions.create_session(db, user=user, kind=kind))


def confirm_password(db: Session, *, user: User, password: str | None, client_ip: str) -> None:
    """Check that `password` is `user`'s current one, before a change that needs it.

    Counted like a login, against the same account and address: a guess through any door
    uses up the same allowance. Raises ThrottledError while either must wait, and
    WrongPasswordError for a wrong password (counted) or none at all (not counted).
    """
    keys = [throttling.account_key(user.id), throttling.address_key(client_ip)]
    if not password:
        wait = throttling.seconds_until_allowed(db, keys=keys)
        db.commit()
        if wait:
            raise ThrottledError(wait)
        raise WrongPasswordError(PASSWORD_NEEDED)
    if not _check_under_throttle(db, user=user, password=password, keys=keys):
        raise WrongPasswordError(WRONG_PASSWORD)


def set_password(db: Session, *, user: User, password: str, keep_token: str | None) -> None:
    """Change the password and end every other session: a stolen cookie dies with it.

    Call it with no transaction open (as confirm_password leaves the session): the new hash
    is made before the first statement, so no lock is held while argon2 runs.
    """
    user.password_hash = passwords.hash_password(password)
    sessions.end_all_sessions(db, user=user, keep_token=keep_token)
