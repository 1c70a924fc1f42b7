"""Passwords, server-side sessions, API tokens, CSRF, login throttling and current-user
dependencies."""

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordBearer
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, joinedload

from config import Settings
from database import SessionDep
from models import AuthSession, LoginFailure, User, utcnow

SESSION_COOKIE = "inkwell_session"
ANON_CSRF_COOKIE = "inkwell_csrf"
BROWSER_SESSION_TTL = timedelta(days=14)
API_TOKEN_TTL = timedelta(days=30)
SessionKind = Literal["browser", "api"]

INVALID_LOGIN = "Invalid username or password"
COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent / "common_passwords.txt"

# Throttling: attempts allowed in the window before each further one must wait, per key kind.
THROTTLE_WINDOW = timedelta(minutes=15)
FREE_ATTEMPTS = {"user": 5, "ip": 20}
MAX_WAIT_SECONDS = int(THROTTLE_WINDOW.total_seconds())

# Argon2id at the least memory of OWASP's five equally strong settings (7 MiB, 5 passes,
# 1 lane; the others trade passes for up to 46 MiB) rather than the library default of
# 64 MiB: each login in progress adds that much to a worker's memory, and a web worker
# should stay small. Hashes made with other settings still verify, and are remade with
# these on the next successful login.
password_hasher = PasswordHash((Argon2Hasher(memory_cost=7_168, time_cost=5, parallelism=1),))


# ---------------------------------------------------------------- passwords


def hash_password(password: str) -> str:
    return password_hasher.hash(password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


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
    valid, upgraded = password_hasher.verify_and_update(password, stored or _dummy_hash())
    if not (valid and user and stored):
        return None
    if upgraded:
        user.password_hash = upgraded
        db.commit()
    return user


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip())


def is_common_password(password: str) -> bool:
    return password.lower() in common_passwords()


# ---------------------------------------------------------------- sessions and tokens


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(db: Session, *, user: User, kind: SessionKind) -> str:
    """Store a new session (hashed) and return the secret token for the client."""
    token = secrets.token_urlsafe(32)
    ttl = BROWSER_SESSION_TTL if kind == "browser" else API_TOKEN_TTL
    db.add(AuthSession(token_hash=_digest(token), user=user, kind=kind, expires_at=utcnow() + ttl))
    db.commit()
    return token


def find_session(db: Session, *, token: str, kind: SessionKind) -> AuthSession | None:
    """The live session for `token` with its user loaded, in one statement."""
    return db.scalar(
        select(AuthSession)
        .options(joinedload(AuthSession.user))
        .where(
            AuthSession.token_hash == _digest(token),
            AuthSession.kind == kind,
            AuthSession.expires_at > utcnow(),
        )
    )


def end_session(db: Session, *, token: str) -> None:
    db.execute(delete(AuthSession).where(AuthSession.token_hash == _digest(token)))
    db.commit()


def end_all_sessions(db: Session, *, user: User, keep_token: str | None = None) -> None:
    """Revoke every session and token of `user`, except the one presenting `keep_token`."""
    statement = delete(AuthSession).where(AuthSession.user_id == user.id)
    if keep_token:
        statement = statement.where(AuthSession.token_hash != _digest(keep_token))
    db.execute(statement)
    db.commit()


def set_password(db: Session, *, user: User, password: str, keep_token: str | None) -> None:
    """Change the password and end every other session: a stolen cookie dies with it."""
    user.password_hash = hash_password(password)
    end_all_sessions(db, user=user, keep_token=keep_token)


# ---------------------------------------------------------------- login throttling


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


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(BROWSER_SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=bool(request.app.state.settings.secure_cookies),
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# ---------------------------------------------------------------- signing (CSRF, flashes)


def _secret(request: Request) -> bytes:
    settings: Settings = request.app.state.settings
    return settings.secret_key.encode()


def sign(request: Request, purpose: str, value: str) -> str:
    mac = hmac.new(_secret(request), f"{purpose}:{value}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def dumps_signed(request: Request, purpose: str, data: object) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
    return f"{payload}.{sign(request, purpose, payload)}"


def loads_signed(request: Request, purpose: str, text: str) -> object | None:
    payload, _, signature = text.partition(".")
    if not hmac.compare_digest(signature, sign(request, purpose, payload)):
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(payload.encode()))
    except ValueError:
        return None


def csrf_seed(request: Request) -> str:
    """What this client's CSRF token is bound to: its session token, or for a visitor who
    is not logged in, a random value in its own cookie (created on first use)."""
    seed = request.cookies.get(SESSION_COOKIE) or request.cookies.get(ANON_CSRF_COOKIE)
    if not seed:
        seed = getattr(request.state, "new_csrf_seed", None) or secrets.token_urlsafe(32)
        request.state.new_csrf_seed = seed
    return seed


def csrf_token(request: Request) -> str:
    return sign(request, "csrf", csrf_seed(request))


async def verify_csrf(request: Request) -> None:
    """Refuse a state-changing form whose token does not match this client's."""
    form = await request.form()
    sent = form.get("csrf_token")
    has_seed = SESSION_COOKIE in request.cookies or ANON_CSRF_COOKIE in request.cookies
    if not (has_seed and isinstance(sent, str) and hmac.compare_digest(sent, csrf_token(request))):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "The form has expired. Please try again.")


CsrfProtected = Depends(verify_csrf)


def safe_next(target: str | None) -> str:
    """A redirect target after login: a local path, or "/" for anything else."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


# ---------------------------------------------------------------- current-user dependencies


class LoginRequiredError(Exception):
    """Raised by page routes for anonymous visitors; the handler sends them to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def get_current_user(request: Request, db: SessionDep) -> User | None:
    """The user of this browser session, or None."""
    token = request.cookies.get(SESSION_COOKIE)
    session = find_session(db, token=token, kind="browser") if token else None
    # Release the snapshot (and, for writes, the lock) until the route's own work begins.
    db.commit()
    user = session.user if session else None
    request.state.user = user
    return user


CurrentUser = Annotated[User | None, Depends(get_current_user)]


def require_user(request: Request, user: CurrentUser) -> User:
    if user is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequiredError(path if request.method == "GET" else "/")
    return user


RequiredUser = Annotated[User, Depends(require_user)]

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/token", auto_error=False)
NOT_AUTHENTICATED = HTTPException(
    status.HTTP_401_UNAUTHORIZED, "Not authenticated", headers={"WWW-Authenticate": "Bearer"}
)


def get_api_user(db: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]) -> User:
    """The user a bearer token belongs to; 401 without a live token."""
    session = find_session(db, token=token, kind="api") if token else None
    db.commit()
    if session is None:
        raise NOT_AUTHENTICATED
    return session.user


ApiUser = Annotated[User, Depends(get_api_user)]
ApiToken = Annotated[str | None, Depends(oauth2_scheme)]
