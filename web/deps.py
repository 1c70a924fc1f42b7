"""Dependencies the routers share: settings, the current user (browser session or bearer
token) and pagination parameters."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial, wraps
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from config import Settings
from database import READ_ONLY_METHODS, Database, SessionDep, reading
from models import User
from services.sessions import SessionKind, find_user
from web.cookies import SESSION_COOKIE
from web.privacy import mark_personal

# The dependencies here are async so that a route's dependencies cost no thread hand-offs:
# the ones that read the database call it through Database.run (inline on SQLite).


Params = ParamSpec("Params")
Result = TypeVar("Result")


def short_read(route: Callable[Params, Result]) -> Callable[Params, Awaitable[Result]]:
    """Run a route that reads a few rows by index and renders them through Database.run:
    inline on SQLite, where the hand-off to a worker thread would cost more than the work
    (the route then needs no thread at all), on a thread for a database across the network.

    Only for bounded reads: on SQLite, the worker's other requests wait while it runs. The
    route must take `request` by that name.
    """

    @wraps(route)
    async def run_on_database(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        database: Database = kwargs["request"].app.state.database  # type: ignore[attr-defined]
        return await database.run(partial(route, *args, **kwargs))

    return run_on_database


async def get_app_settings(request: Request) -> Settings:
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


async def page_request(
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


def _session_user(db: Session, token: str, kind: SessionKind, writes: bool) -> User | None:
    if not writes:
        # The route reads on in the same transaction: one BEGIN for the whole request.
        return find_user(db, token=token, kind=kind)
    # A read of its own, ended at once: the route's writes take the write lock themselves.
    reading(db)
    user = find_user(db, token=token, kind=kind)
    db.commit()
    return user


async def _user_for(request: Request, db: Session, token: str, kind: SessionKind) -> User | None:
    database: Database = request.app.state.database
    writes = request.method not in READ_ONLY_METHODS
    return await database.run(partial(_session_user, db, token, kind, writes))


async def get_current_user(request: Request, db: SessionDep) -> User | None:
    """The user of this browser session, or None (no query without a session cookie)."""
    token = request.cookies.get(SESSION_COOKIE)
    user = None
    if token:
        mark_personal(request)
        user = await _user_for(request, db, token, "browser")
    request.state.user = user
    request.state.is_admin = user is not None and user.is_admin
    return user


CurrentUser = Annotated[User | None, Depends(get_current_user)]


async def require_user(request: Request, user: CurrentUser) -> User:
    if user is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequiredError(path if request.method == "GET" else "/")
    return user


RequiredUser = Annotated[User, Depends(require_user)]

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/token", auto_error=False)
NOT_AUTHENTICATED = HTTPException(
    status.HTTP_401_UNAUTHORIZED, "Not authenticated", headers={"WWW-Authenticate": "Bearer"}
)


async def get_api_user(
    request: Request, db: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User:
    """The user a bearer token belongs to; 401 without a live token."""
    mark_personal(request)
    user = await _user_for(request, db, token, "api") if token else None
    if user is None:
        raise NOT_AUTHENTICATED
    return user


ApiUser = Annotated[User, Depends(get_api_user)]


async def get_optional_api_user(
    request: Request, db: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User | None:
    """The token's user when a token is sent (401 if it is not live), else None."""
    return await get_api_user(request, db, token) if token else None


MaybeApiUser = Annotated[User | None, Depends(get_optional_api_user)]
ApiToken = Annotated[str | None, Depends(oauth2_scheme)]
