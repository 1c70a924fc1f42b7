"""Logging in, confirming the current password, and changing it: the sequences the forms and
the API share. Every password check, whichever door it comes through, runs under the same
throttle and counts against the same account."""

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import User
from services import passwords, sessions, throttling, two_factor
from services.errors import (
    PendingLoginError,
    SuspendedError,
    ThrottledError,
    WrongPasswordError,
)

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


@dataclass(frozen=True)
class CodeNeeded:
    """The password was right, but the account has two-factor sign-in: no session yet, only
    a pending login (`token`) that the code step must present within PENDING_LOGIN_TTL."""

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


def _authenticate(db: Session, *, username: str, password: str, client_ip: str) -> User:
    """The account `username` and `password` open, checked under the throttle.

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
    return user


def _refuse_suspended(user: User) -> None:
    # Only after the password matched: a wrong guess learns nothing about the account.
    if user.is_suspended:
        raise SuspendedError(SuspendedError.message)


def finish_login(db: Session, *, user: User) -> LoggedIn | CodeNeeded:
    """Log in a browser whose user has proved who they are (a password, a reset link): a
    session, or for an account with two-factor sign-in, a pending login that only the code
    step (`complete_login`) turns into one. Every way a browser logs in ends here, so a
    suspended account (SuspendedError) is refused here too."""
    _refuse_suspended(user)
    if user.two_factor_enabled:
        return CodeNeeded(user, sessions.create_session(db, user=user, kind="pending"))
    return LoggedIn(user, sessions.create_session(db, user=user, kind="browser"))


def log_in(db: Session, *, username: str, password: str, client_ip: str) -> LoggedIn | CodeNeeded:
    """The log-in form's first step: the credentials, then `finish_login`."""
    user = _authenticate(db, username=username, password=password, client_ip=client_ip)
    return finish_login(db, user=user)


def pending_login_user(db: Session, *, token: str) -> User | None:
    """Whose login `token` is waiting for its code, while it has not expired."""
    pending = sessions.find_session(db, token=token, kind="pending")
    return pending.user if pending else None


def complete_login(
    db: Session, *, token: str, code: str, client_ip: str
) -> tuple[LoggedIn, two_factor.CodeKind]:
    """The code step: a session for the pending login `token`, once `code` is right.

    Raises PendingLoginError without a live pending login (none, expired, or completed by
    another request first), and what two_factor.check_code raises for the code.
    """
    user = pending_login_user(db, token=token)
    db.commit()
    if user is None:
        raise PendingLoginError
    kind = two_factor.check_code(db, user=user, code=code, client_ip=client_ip)
    if not sessions.end_session(db, token=token):
        raise PendingLoginError
    return LoggedIn(user, sessions.create_session(db, user=user, kind="browser")), kind


def issue_api_token(
    db: Session, *, username: str, password: str, otp: str | None, client_ip: str
) -> LoggedIn:
    """An API token for the credentials, and for an account with two-factor sign-in a code
    too (`otp`), in the one request: raises what `_authenticate` and
    two_factor.check_code raise."""
    user = _authenticate(db, username=username, password=password, client_ip=client_ip)
    _refuse_suspended(user)
    if user.two_factor_enabled:
        two_factor.check_code(db, user=user, code=otp, client_ip=client_ip)
    return LoggedIn(user, sessions.create_session(db, user=user, kind="api"))


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
