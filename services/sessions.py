"""Server-side sessions and API tokens: only a hash of each secret is stored."""

from datetime import timedelta
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, joinedload

from config import utcnow
from models import AuthSession, User
from services.tokens import digest, new_token

BROWSER_SESSION_TTL = timedelta(days=14)
API_TOKEN_TTL = timedelta(days=30)
SessionKind = Literal["browser", "api"]


def create_session(db: Session, *, user: User, kind: SessionKind) -> str:
    """Store a new session (hashed) and return the secret token for the client."""
    token = new_token()
    ttl = BROWSER_SESSION_TTL if kind == "browser" else API_TOKEN_TTL
    db.add(AuthSession(token_hash=digest(token), user=user, kind=kind, expires_at=utcnow() + ttl))
    db.commit()
    return token


def find_session(db: Session, *, token: str, kind: SessionKind) -> AuthSession | None:
    """The live session for `token` with its user loaded, in one statement."""
    return db.scalar(
        select(AuthSession)
        .options(joinedload(AuthSession.user))
        .where(
            AuthSession.token_hash == digest(token),
            AuthSession.kind == kind,
            AuthSession.expires_at > utcnow(),
        )
    )


def end_session(db: Session, *, token: str) -> None:
    db.execute(delete(AuthSession).where(AuthSession.token_hash == digest(token)))
    db.commit()


def end_all_sessions(db: Session, *, user: User, keep_token: str | None = None) -> None:
    """Revoke every session and token of `user`, except the one presenting `keep_token`."""
    statement = delete(AuthSession).where(AuthSession.user_id == user.id)
    if keep_token:
        statement = statement.where(AuthSession.token_hash != digest(keep_token))
    db.execute(statement)
    db.commit()
