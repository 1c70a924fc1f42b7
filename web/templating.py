"""The Jinja2 environment and the one `render` every page goes through (it adds the current
user, the CSRF token and pending flash messages, and sets the cookies those need)."""

import hashlib
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import escape
from starlette.datastructures import URL

from config import PROJECT_ROOT
from models import FIELD_LIMITS, Post, User
from web.cookies import ANON_CSRF_COOKIE, FLASH_COOKIE, clear_cookie, set_cookie
from web.privacy import mark_personal
from web.security import csrf_token, dumps_signed, loads_signed
from web.urls import post_url, url_for

TEMPLATE_DIR = PROJECT_ROOT / "templates"
STATIC_DIR = PROJECT_ROOT / "static"
FlashCategory = Literal["success", "error", "info"]


def long_date(value: datetime) -> str:
    """'January 15, 2024' — written out so it reads the same in every locale."""
    return f"{value:%B} {value.day}, {value.year}"


def page_window(current: int, last_known: int, radius: int = 2) -> list[int]:
    """Page numbers to show around `current`, never past the last page known to exist."""
    return list(range(max(1, current - radius), min(last_known, current + radius) + 1))


@pass_context
def template_url_for(context: Context, name: str, /, **params: Any) -> URL:
    return url_for(context["request"], name, **params)


@lru_cache(maxsize=256)
def _fingerprint(path: str) -> str:
    return hashlib.blake2b((STATIC_DIR / path).read_bytes(), digest_size=6).hexdigest()


@pass_context
def static_url(context: Context, path: str) -> str:
    """The URL of a static file with its content hash, so it may be cached for a year."""
    return f"{url_for(context['request'], 'static', path=path)}?v={_fingerprint(path)}"


@pass_context
def post_json_ld(context: Context, post: Post) -> dict[str, object]:
    """schema.org BlogPosting data for a post page (rendered with |tojson, which escapes <)."""
    request = context["request"]
    author_url = str(url_for(request, "user_posts", user_id=post.author.id))
    return {
        "@context": "https://schema.org",
        "@type": "BlogPosting",
        "headline": post.title,
        "description": post.excerpt,
        "datePublished": (post.published_at or post.date_posted).isoformat(),
        "dateModified": post.updated_at.isoformat(),
        "url": post_url(request, post),
        "author": {"@type": "Person", "name": post.author.username, "url": author_url},
    }


@pass_context
def person_json_ld(context: Context, user: User) -> dict[str, object]:
    """schema.org Person data for an author page."""
    request = context["request"]
    return {
        "@context": "https://schema.org",
        "@type": "Person",
        "name": user.username,
        "url": str(url_for(request, "user_posts", user_id=user.id)),
    }


templates = Jinja2Templates(directory=TEMPLATE_DIR)
templates.env.globals["url_for"] = template_url_for
templates.env.globals["post_json_ld"] = post_json_ld
templates.env.globals["post_url"] = pass_context(
    lambda context, post: post_url(context["request"], post)
)
templates.env.globals["person_json_ld"] = person_json_ld
templates.env.globals["static_url"] = static_url
templates.env.filters["long_date"] = long_date
templates.env.globals["page_window"] = page_window
templates.env.globals["field_limits"] = FIELD_LIMITS


def _pending_flashes(request: Request) -> list[dict[str, str]]:
    """The flash messages the browser brought back; none for a cookie the site did not write.

    Every page renders these, the error pages too, so nothing a client puts in the cookie
    may make this fail: a failure here would fail the error page that reports it as well.
    """
    cookie = request.cookies.get(FLASH_COOKIE)
    if cookie:
        mark_personal(request)
    try:
        messages = loads_signed(request, "flash", cookie) if cookie else None
    except Exception:  # whatever is wrong with the cookie, it only means no flash
        return []
    if not isinstance(messages, list):
        return []
    return [
        {"category": str(item.get("category", "info")), "message": str(item.get("message", ""))}
        for item in messages
        if isinstance(item, dict)
    ]


class LazyCsrfToken:
    """The CSRF token, computed only if the page prints it: a page without a form then sets
    no cookie, and stays the same for every anonymous reader (so it can be cached)."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self._value: str | None = None

    def __str__(self) -> str:
        if self._value is None:
            self._value = csrf_token(self._request)
        return self._value

    def __html__(self) -> str:
        return str(escape(str(self)))


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render a page in the site layout."""
    flashes = _pending_flashes(request)
    full_context = {
        "current_user": getattr(request.state, "user", None),
        # Read when the user was loaded: an error page renders after the session rolled back,
        # when the user's attributes can no longer be loaded.
        "viewer_is_admin": getattr(request.state, "is_admin", False),
        "csrf_token": LazyCsrfToken(request),
        "flashes": flashes,
        # Links to the sign-up form are only shown while anyone may use it.
        "registration_open": request.app.state.settings.registration_mode == "open",
        **(context or {}),
    }
    response = templates.TemplateResponse(request, name, full_context, status_code=status_code)
    if FLASH_COOKIE in request.cookies:
        clear_cookie(response, FLASH_COOKIE)
    new_seed = getattr(request.state, "new_csrf_seed", None)
    if new_seed:
        set_cookie(response, request, ANON_CSRF_COOKIE, new_seed)
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
        set_cookie(response, request, FLASH_COOKIE, dumps_signed(request, "flash", flashes))
    return response
