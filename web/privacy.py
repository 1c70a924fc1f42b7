"""Which responses are personal, and what keeps them out of every shared cache.

A response may be stored for others (the page cache, a proxy) only when its route marked it
public and nothing in making it was personal: a user looked up, a CSRF token made, a flash
message read. The helpers that do those things mark the request themselves, so a route
cannot forget to.
"""

from fastapi import Depends, Request
from starlette.requests import cookie_parser
from starlette.types import Scope

from web.cookies import PERSONAL_COOKIES

PUBLIC_MARK = "cache_public"
PERSONAL_MARK = "personal"
PRIVATE_CACHE_CONTROL = b"private, no-store"

Headers = list[tuple[bytes, bytes]]


def mark_personal(request: Request) -> None:
    """This response depends on who asked: never store it for anyone else."""
    setattr(request.state, PERSONAL_MARK, True)


async def mark_public(request: Request) -> None:
    """The route's response is the same for every visitor without credentials (async: a
    sync dependency would cost a hand-off to the thread pool for setting one attribute)."""
    setattr(request.state, PUBLIC_MARK, True)


Public = Depends(mark_public)


def _state(scope: Scope) -> dict[str, object]:
    return scope.get("state", {})


def is_personal(scope: Scope) -> bool:
    return bool(_state(scope).get(PERSONAL_MARK))


def may_be_shared(scope: Scope) -> bool:
    """Marked public by its route, and nothing personal went into it."""
    return bool(_state(scope).get(PUBLIC_MARK)) and not is_personal(scope)


def carries_credentials(scope: Scope) -> bool:
    """Whether the request holds anything that may make the app's answer personal, read with
    the same cookie parser the app uses (so `name =value` counts as `name=value`)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return True
        if name == b"cookie":
            cookies = cookie_parser(value.decode("latin-1"))
            if any(cookie in cookies for cookie in PERSONAL_COOKIES):
                return True
    return False


def with_privacy_headers(scope: Scope, headers: Headers) -> Headers:
    """Personal responses are private and not stored; pages say that cookies change them."""
    content_type = dict(headers).get(b"content-type", b"")
    if is_personal(scope):
        headers = [(k, v) for k, v in headers if k != b"cache-control"]
        headers.append((b"cache-control", PRIVATE_CACHE_CONTROL))
    if content_type.startswith(b"text/html"):
        headers.append((b"vary", b"Cookie"))
    return headers
