"""The Jinja2 environment and the one `render` every page goes through (it adds the current
user, the CSRF token and pending flash messages, and sets the cookies those need)."""

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from auth import ANON_CSRF_COOKIE, csrf_token, dumps_signed, loads_signed

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
FLASH_COOKIE = "inkwell_flash"
FlashCategory = Literal["success", "error", "info"]


def long_date(value: datetime) -> str:
    """'January 15, 2024' — written out so it reads the same in every locale."""
    return f"{value:%B} {value.day}, {value.year}"


def page_window(current: int, last_known: int, radius: int = 2) -> list[int]:
    """Page numbers to show around `current`, never past the last page known to exist."""
    return list(range(max(1, current - radius), min(last_known, current + radius) + 1))


templates = Jinja2Templates(directory=TEMPLATE_DIR)
templates.env.filters["long_date"] = long_date
templates.env.globals["page_window"] = page_window


def _pending_flashes(request: Request) -> list[dict[str, str]]:
    cookie = request.cookies.get(FLASH_COOKIE)
    messages = loads_signed(request, "flash", cookie) if cookie else None
    return messages if isinstance(messages, list) else []


def _secure(request: Request) -> bool:
    return bool(request.app.state.settings.secure_cookies)


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render a page in the site layout."""
    flashes = _pending_flashes(request)
    full_context = {
        "current_user": getattr(request.state, "user", None),
        "csrf_token": csrf_token(request),
        "flashes": flashes,
        **(context or {}),
    }
    response = templates.TemplateResponse(request, name, full_context, status_code=status_code)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE)
    new_seed = getattr(request.state, "new_csrf_seed", None)
    if new_seed:
        response.set_cookie(
            ANON_CSRF_COOKIE, new_seed, httponly=True, samesite="lax", secure=_secure(request)
        )
    return response


def redirect(
    request: Request,
    url: str,
    message: str | None = None,
    category: FlashCategory = "success",
) -> RedirectResponse:
    """303 See Other to `url` (post/redirect/get), with an optional flash message."""
    response = RedirectResponse(url, status_code=303)
    if message:
        flashes = [*_pending_flashes(request), {"category": category, "message": message}]
        response.set_cookie(
            FLASH_COOKIE,
            dumps_signed(request, "flash", flashes),
            httponly=True,
            samesite="lax",
            secure=_secure(request),
        )
    return response
