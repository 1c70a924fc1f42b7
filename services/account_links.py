"""Single-use links mailed to an account's address: issued as a random token, of which only
the SHA-256 is stored (services.tokens), and used up at most once, even by two requests that
arrive together."""

from datetime import timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload

from config import utcnow
from models import AccountToken, User
from services.errors import InvalidLinkError
from services.tokens import digest, new_token

Purpose = Literal["reset", "verify"]
# Anything longer than this is no token of ours, and is not worth hashing.
TOKEN_MAX_LENGTH = 200


def issue(db: Session, *, user: User, purpose: Purpose, email: str, ttl: timedelta) -> str:
    """Store a new link for `user` (in the session's transaction); return its token."""
    token = new_token()
    db.add(
        AccountToken(
            user=user,
            purpose=purpose,
            token_hash=digest(token),
            email=email,
            expires_at=utcnow() + ttl,
        )
    )
    return token


def find_live(db: Session, *, token: str, purpose: Purpose) -> AccountToken:
    """The unused, unexpired link for `token`, its user loaded; InvalidLinkError if none."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        raise InvalidLinkError(token)
    link = db.scalar(
        select(AccountToken)
        .options(joinedload(AccountToken.user))
        .where(
            AccountToken.token_hash == digest(token),
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
            AccountToken.expires_at > utcnow(),
        )
    )
    if link is None:
        raise InvalidLinkError(token)
    return link


def use_up(db: Session, link: AccountToken) -> None:
    """Mark `link` used, in the session's transaction; InvalidLinkError if another request
    used it first (the conditional UPDATE lets exactly one of them through)."""
    result = db.execute(
        update(AccountToken)
        .where(AccountToken.id == link.id, AccountToken.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:
        raise InvalidLinkError("already used")


def retire_all(db: Session, *, user_id: int, purpose: Purpose) -> None:
    """Mark every unused link of that kind of the account used (a newer one replaces them,
    or what they were for is done)."""
    db.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user_id,
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
