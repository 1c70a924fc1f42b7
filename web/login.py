"""The end of every way into an account, for the browser: the session cookie, or for an
account with two-factor sign-in, the pending login's cookie and the code step."""

from fastapi import Request, Response
from sqlalchemy.orm import Session

from models import User
from services import accounts, sessions
from web.cookies import (
    PENDING_LOGIN_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    set_pending_login_cookie,
    set_session_cookie,
)
from web.security import safe_next
from web.templating import redirect
from web.urls import url_for


def finish_login(
    request: Request, db: Session, user: User, message: str, next_path: str
) -> Response:
    """Log in `user`, who has just proved who they are (a password, a reset link): a fresh
    session and on to `next_path` with `message`, or first the code step when the account
    has two-factor sign-in."""
    return login_response(request, db, accounts.finish_login(db, user=user), message, next_path)


def login_response(
    request: Request,
    db: Session,
    result: accounts.LoggedIn | accounts.CodeNeeded,
    message: str,
    next_path: str,
) -> Response:
    """The answer to a first step that succeeded (see services.accounts.finish_login)."""
    if isinstance(result, accounts.CodeNeeded):
        code_step = url_for(request, "login_code")
        if next_path:
            code_step = code_step.include_query_params(next=next_path)
        response = redirect(request, str(code_step))
        set_pending_login_cookie(response, request, result.token)
        return response
    response = redirect(request, safe_next(next_path), message)
    return start_session(request, db, response, result.token)


def start_session(request: Request, db: Session, response: Response, token: str) -> Response:
    """Give the browser the session `token`, ending whichever session it had before."""
    end_browser_session(request, db)
    set_session_cookie(response, request, token)
    if PENDING_LOGIN_COOKIE in request.cookies:
        clear_cookie(response, PENDING_LOGIN_COOKIE)
    return response


def end_browser_session(request: Request, db: Session) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        sessions.end_session(db, token=token)
