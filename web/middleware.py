"""HTTP plumbing: streaming request-body limits per route, ETag/304 for rendered documents,
long-lived caching for fingerprinted static files, security headers and request ids."""

import hashlib
import os
import re
import uuid
from collections.abc import Callable
from os import PathLike
from typing import Any, TypeVar

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.media import MAX_PICTURE_BYTES

DEFAULT_BODY_LIMIT = 1024 * 1024
# Multipart framing and the form's other fields, on top of the picture itself.
UPLOAD_OVERHEAD = 64 * 1024
UPLOAD_BODY_LIMIT = MAX_PICTURE_BYTES + UPLOAD_OVERHEAD


class RequestTooLarge(HTTPException):
    """The body grew past the limit. An HTTPException, so FastAPI's body parsing re-raises it
    as it is instead of turning it into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit // 1024} KiB.")
        self.limit = limit


EndpointT = TypeVar("EndpointT", bound=Callable[..., Any])


def body_limit(limit: int) -> Callable[[EndpointT], EndpointT]:
    """Give a route a body limit of its own (put it under the route decorator); every other
    route gets DEFAULT_BODY_LIMIT."""

    def mark(endpoint: EndpointT) -> EndpointT:
        endpoint.body_limit = limit  # type: ignore[attr-defined]
        return endpoint

    return mark


class BodyLimitedRoute(APIRoute):
    """A route that counts its body bytes as they arrive and stops at its limit, whatever
    Content-Length says. Every router uses this class."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = getattr(self.endpoint, "body_limit", DEFAULT_BODY_LIMIT)
        await super().handle(scope, _limited(scope, receive, limit), send)


def _limited(scope: Scope, receive: Receive, limit: int) -> Receive:
    declared = _content_length(scope)
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        if declared is not None and declared > limit:
            raise RequestTooLarge(limit)
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise RequestTooLarge(limit)
        return message

    return limited_receive


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# Only documents this app renders are fingerprinted; static files have their own validators.
ETAG_TYPES = (b"text/html", b"application/json", b"application/atom+xml", b"application/xml")


class ETagMiddleware:
    """Weak ETags from a hash of the body, and 304 Not Modified when the client has it.

    Hashing what was actually rendered can never declare a stale page fresh: any change to
    the data, the template or the viewer's session changes the tag.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffered_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                if not _fingerprintable(message):
                    await send(message)
                    start = None
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await _finish(scope, start, b"".join(chunks), send)

        await self.app(scope, receive, buffered_send)


def _fingerprintable(start: Message) -> bool:
    headers = dict(start["headers"])
    content_type = headers.get(b"content-type", b"")
    return start["status"] == 200 and content_type.startswith(ETAG_TYPES)


async def _finish(scope: Scope, start: Message, body: bytes, send: Send) -> None:
    # A route that knows its resource's version sets a strong ETag itself; keep it.
    etag = dict(start["headers"]).get(b"etag")
    headers = list(start["headers"])
    if etag is None:
        etag = b'W/"' + hashlib.blake2b(body, digest_size=16).hexdigest().encode() + b'"'
        headers.append((b"etag", etag))
    await send_validated(scope, send, start["status"], headers, body)


async def send_validated(
    scope: Scope, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    """Send the response, or 304 Not Modified when the client already holds its ETag."""
    etag = dict(headers).get(b"etag")
    if etag is not None and _matches(etag, _if_none_match(scope)):
        kept = [(k, v) for k, v in headers if k not in (b"content-length", b"content-type")]
        await send({"type": "http.response.start", "status": 304, "headers": kept})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _matches(etag: bytes, candidates: list[bytes]) -> bool:
    """If-None-Match uses the weak comparison: W/ prefixes are ignored."""
    return b"*" in candidates or etag.removeprefix(b"W/") in {
        tag.removeprefix(b"W/") for tag in candidates
    }


def _if_none_match(scope: Scope) -> list[bytes]:
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            return [tag.strip() for tag in value.split(b",")]
    return []


class FingerprintedStaticFiles(StaticFiles):
    """Static files; a URL carrying the file's fingerprint (`?v=`, see web.templating.static_url)
    can be cached for a year, because a changed file gets a new URL."""

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        fingerprinted = b"v=" in scope.get("query_string", b"")
        response.headers["Cache-Control"] = (
            "public, max-age=31536000, immutable" if fingerprinted else "public, max-age=300"
        )
        return response


# ---------------------------------------------------------------- response headers

# No inline script or style anywhere in the site's pages, so none is allowed. Post images may
# come from other sites over http(s) (the Markdown sanitiser allows nothing else).
PAGE_CSP = (
    "default-src 'self'; img-src 'self' https: http:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's interactive docs are built from an inline script and a CDN bundle.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://fastapi.tiangolo.com; frame-ancestors 'none'"
)
# Uploaded files are data: nothing in them may run, even if a browser were to render one.
MEDIA_CSP = "default-src 'none'; sandbox"
DOCS_PATHS = ("/docs", "/redoc")
HSTS = b"max-age=63072000; includeSubDomains"
REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


def security_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The headers every response carries (also used for the 500 page, which is produced
    outside the middleware stack)."""
    path = scope.get("path", "")
    if path.startswith("/media/"):
        csp = MEDIA_CSP
    elif path.startswith(DOCS_PATHS):
        csp = DOCS_CSP
    else:
        csp = PAGE_CSP
    headers = [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    if scope.get("scheme") == "https":
        headers.append((b"strict-transport-security", HSTS))
    return headers


Headers = list[tuple[bytes, bytes]]


def rewriting_headers(send: Send, rewrite: Callable[[Headers], Headers]) -> Send:
    """`send`, with the response's headers passed through `rewrite` on their way out."""

    async def send_rewritten(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": rewrite(list(message["headers"]))}
        await send(message)

    return send_rewritten


class SecurityHeadersMiddleware:
    """Adds security_headers() to every response; media files are never served as HTML."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(scope)
        is_media = scope["path"].startswith("/media/")

        def add_headers(headers: Headers) -> Headers:
            headers = [h for h in headers if h[0] not in dict(extra)]
            if is_media:
                headers = _as_download_unless_image(headers)
            return headers + extra

        await self.app(scope, receive, rewriting_headers(send, add_headers))


def _as_download_unless_image(headers: Headers) -> Headers:
    content_type = dict(headers).get(b"content-type", b"")
    if content_type.startswith(b"image/") and b"svg" not in content_type:
        return headers
    kept = [(k, v) for k, v in headers if k != b"content-type"]
    return [
        *kept,
        (b"content-type", b"application/octet-stream"),
        (b"content-disposition", b"attachment"),
    ]


class SingleHostMiddleware:
    """400 for a request with more than one Host header: the host check, the URL builder and
    the page cache must all mean the same host, and with two they might not."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and sum(name == b"host" for name, _ in scope["headers"]) > 1:
            response = Response("More than one Host header", 400, media_type="text/plain")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class RequestIdMiddleware:
    """Gives each request an id (the client's X-Request-ID if it is sane, else a new one),
    keeps it in request.state for the logs, and returns it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-request-id", b"")
        request_id = sent if REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex.encode()
        scope.setdefault("state", {})["request_id"] = request_id.decode()

        def add_id(headers: Headers) -> Headers:
            return [*(h for h in headers if h[0] != b"x-request-id"), (b"x-request-id", request_id)]

        await self.app(scope, receive, rewriting_headers(send, add_id))
