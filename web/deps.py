"""Dependencies the routers share: settings, the current user (browser session or bearer
token) and pagination parameters."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import OAuth2PasswordBearer

from config import Settings
from database import SessionDep, reading
from models import User
from services.sessions import find_session
from web.cookies import SESSION_COOKIE
from web.privacy import mark_personal


def get_app_settings(request: Request) -> Settings:
    """The settings the running app was created with."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


# ---------------------------------------------------------------- pagination

MAX_PAGE = 1_000_000
MAX_PER_PAGE = 100
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number")]
PerPage = Annotated[
    int | None, Query(ge=1, le=MAX_PER_PAGE, description="Items per page (default 10)")
]


@dataclass(frozen=True)
class PageRequest:
    """The page of a list an API client asked for, and its size."""

    number: int
    size: int


def page_request(
    settings: SettingsDep, page: PageNumber = 1, per_page: PerPage = None
) -> PageRequest:
    return PageRequest(page, per_page or settings.page_size)


Paging = Annotated[PageRequest, Depends(page_request)]


# ---------------------------------------------------------------- the current user


class LoginRequiredError(Exception):
    """Raised by page routes for anonymous visitors; the handler sends them to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def get_current_user(request: Request, db: SessionDep) -> User | None:
    """The user of this browser session, or None."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        mark_personal(request)
    # A read of its own, ended at once: the route's writes take the write lock themselves.
    reading(db)
    session = find_session(db, token=token, kind="browser") if token else None
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


def get_api_user(
    request: Request, db: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User:
    """The user a bearer token belongs to; 401 without a live token."""
    mark_personal(request)
    reading(db)
    session = find_session(db, token=token, kind="api") if token else None
    db.commit()
    if session is None:
        raise NOT_AUTHENTICATED
    return session.user


ApiUser = Annotated[User, Depends(get_api_user)]


def get_optional_api_user(
    request: Request, db: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User | None:
    """The token's user when a token is sent (401 if it is not live), else None."""
    return get_api_user(request, db, token) if token else None


MaybeApiUser = Annotated[User | None, Depends(get_optional_api_user)]
ApiToken = Annotated[str | None, Depends(oauth2_scheme)]
