"""Every cookie the site sets: the names, and one function that sets them all with the same
flags (HttpOnly, SameSite=Lax, Secure when configured)."""

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from services.sessions import BROWSER_SESSION_TTL, PENDING_LOGIN_TTL

SESSION_COOKIE = "inkwell_session"
# A login waiting for its two-factor code: the token of the pending login, nothing else.
PENDING_LOGIN_COOKIE = "inkwell_pending_login"
# Binds a visitor's CSRF token before they log in.
ANON_CSRF_COOKIE = "inkwell_csrf"
FLASH_COOKIE = "inkwell_flash"
# Cookies whose presence makes a response personal to the one browser that sent them.
PERSONAL_COOKIES = (SESSION_COOKIE, ANON_CSRF_COOKIE, FLASH_COOKIE, PENDING_LOGIN_COOKIE)


def set_cookie(
    response: Response, request: Request, name: str, value: str, max_age: timedelta | None = None
) -> None:
    """Set one of the site's cookies; none is readable by scripts or sent cross-site."""
    response.set_cookie(
        name,
        value,
        max_age=int(max_age.total_seconds()) if max_age else None,
        httponly=True,
        samesite="lax",
        secure=bool(request.app.state.settings.secure_cookies),
    )


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    set_cookie(response, request, SESSION_COOKIE, token, max_age=BROWSER_SESSION_TTL)


def set_pending_login_cookie(response: Response, request: Request, token: str) -> None:
    set_cookie(response, request, PENDING_LOGIN_COOKIE, token, max_age=PENDING_LOGIN_TTL)


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name)
