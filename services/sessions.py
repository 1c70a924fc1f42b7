"""Server-side sessions and API tokens: only a hash of each secret is stored."""

from datetime import timedelta
from typing import Literal

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session, joinedload

from config import utcnow
from models import AuthSession, User
from services.tokens import digest, new_token

BROWSER_SESSION_TTL = timedelta(days=14)
API_TOKEN_TTL = timedelta(days=30)
# A login whose password was right, waiting for its second step (services.two_factor): it
# opens nothing itself, and lasts just long enough to find the phone and type a code.
PENDING_LOGIN_TTL = timedelta(minutes=5)
SessionKind = Literal["browser", "api", "pending"]
TTLS: dict[SessionKind, timedelta] = {
    "browser": BROWSER_SESSION_TTL,
    "api": API_TOKEN_TTL,
    "pending": PENDING_LOGIN_TTL,
}


def create_session(db: Session, *, user: User, kind: SessionKind) -> str:
    """Store a new session (hashed) and return the secret token for the client."""
    token = new_token()
    expires_at = utcnow() + TTLS[kind]
    db.add(AuthSession(token_hash=digest(token), user=user, kind=kind, expires_at=expires_at))
    db.commit()
    return token


# Built once: every request with a cookie or token runs one (services.validity says why).
_LIVE = (
    AuthSession.token_hash == bindparam("token_hash"),
    AuthSession.kind == bindparam("kind"),
    AuthSession.expires_at > bindparam("now"),
)
# A suspension ends the sessions too; this keeps any that a race left unusable.
_ACTIVE_USER = User.suspended_at.is_(None)
_LIVE_SESSION = (
    select(AuthSession)
    .options(joinedload(AuthSession.user))
    .where(*_LIVE, AuthSession.user.has(_ACTIVE_USER))
)
_LIVE_SESSION_USER = (
    select(User).join(AuthSession, AuthSession.user_id == User.id).where(*_LIVE, _ACTIVE_USER)
)


def _parameters(token: str, kind: SessionKind) -> dict[str, object]:
    return {"token_hash": digest(token), "kind": kind, "now": utcnow()}


def find_session(db: Session, *, token: str, kind: SessionKind) -> AuthSession | None:
    """The live session for `token` with its user loaded, in one statement."""
    return db.scalar(_LIVE_SESSION, _parameters(token, kind))


def find_user(db: Session, *, token: str, kind: SessionKind) -> User | None:
    """The user of the live session for `token` (what most requests need of it)."""
    return db.scalar(_LIVE_SESSION_USER, _parameters(token, kind))


def end_session(db: Session, *, token: str) -> bool:
    """Delete the session of `token`; whether there was one (of two requests racing to end
    the same session, exactly one is told it did)."""
    result = db.execute(delete(AuthSession).where(AuthSession.token_hash == digest(token)))
    db.commit()
    return bool(result.rowcount)


def end_all_sessions(db: Session, *, user: User, keep_token: str | None = None) -> None:
    """Revoke every session and token of `user`, except the one presenting `keep_token`."""
    statement = delete(AuthSession).where(AuthSession.user_id == user.id)
    if keep_token:
        statement = statement.where(AuthSession.token_hash != digest(keep_token))
    db.execute(statement)
    db.commit()
