"""gzip for text responses, with ETags kept right per encoding, and HEAD for every GET route.

Pages, JSON, feeds, the sitemap and stylesheets go out gzip-compressed to clients that accept
it, with `Vary: Accept-Encoding`. A compressed body is another representation, so its ETag
gets a `-gzip` suffix; conditional headers arrive with the suffix removed, so every layer
inside (the ETag check, the page cache, static files, If-Match on the API) compares the tags
it made itself. The same page is compressed once: the result is kept under its ETag.
"""

import gzip
import hashlib
import re
from collections import OrderedDict
from threading import Lock

from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMPRESSIBLE_TYPES = (
    b"text/",
    b"application/json",
    b"application/atom+xml",
    b"application/xml",
    b"application/javascript",
    b"image/svg+xml",
)
# Smaller bodies gain less than gzip's own framing costs.
MIN_COMPRESSED_BYTES = 256
GZIP_LEVEL = 6
GZIP_SUFFIX = b"-gzip"
MEMO_MAX_BYTES = 4 * 1024 * 1024
_GZIP_TAG = re.compile(rb'-gzip"')
_CONDITIONAL = (b"if-none-match", b"if-match")

Headers = list[tuple[bytes, bytes]]


def accepts_gzip(scope: Scope) -> bool:
    """Whether Accept-Encoding allows gzip (q=0 refuses it)."""
    for name, value in scope["headers"]:
        if name != b"accept-encoding":
            continue
        for item in value.lower().split(b","):
            coding, _, params = item.strip().partition(b";")
            if coding.strip() in (b"gzip", b"*"):
                quality = params.strip().removeprefix(b"q=")
                return not quality or _positive(quality)
    return False


def _positive(quality: bytes) -> bool:
    try:
        return float(quality) > 0
    except ValueError:
        return False


def identity_tag(tag: str) -> str:
    """An ETag as the application made it, whatever encoding the client saw."""
    return tag.replace('-gzip"', '"')


def _gzip_tag(etag: bytes) -> bytes:
    return etag[:-1] + GZIP_SUFFIX + b'"' if etag.endswith(b'"') else etag


class _CompressedBodies:
    """Compressed bodies by a digest of the body, bounded by bytes, least recently used out
    first (a hash costs a small fraction of compressing)."""

    def __init__(self) -> None:
        self._bodies: OrderedDict[bytes, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = Lock()

    def get_or_compress(self, body: bytes) -> bytes:
        key = hashlib.blake2b(body, digest_size=16).digest()
        with self._lock:
            found = self._bodies.get(key)
            if found is not None:
                self._bodies.move_to_end(key)
                return found
        compressed = gzip.compress(body, GZIP_LEVEL, mtime=0)
        with self._lock:
            if key not in self._bodies:
                self._bodies[key] = compressed
                self._bytes += len(compressed)
            while self._bytes > MEMO_MAX_BYTES:
                _, dropped = self._bodies.popitem(last=False)
                self._bytes -= len(dropped)
        return compressed


class CompressionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.memo = _CompressedBodies()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        had_gzip_tag = _strip_conditional_suffixes(scope)
        await self.app(scope, receive, self._encoding_send(scope, send, had_gzip_tag))

    def _encoding_send(self, scope: Scope, send: Send, had_gzip_tag: bool) -> Send:
        gzip_ok = accepts_gzip(scope)
        start: Message | None = None
        chunks: list[bytes] = []

        async def encoding_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = list(message["headers"])
                if message["status"] == 304 and had_gzip_tag and gzip_ok:
                    await send({**message, "headers": _with_gzip_etag(headers)})
                elif _compressible(message["status"], headers):
                    headers.append((b"vary", b"Accept-Encoding"))
                    if gzip_ok:
                        start = {**message, "headers": headers}
                        return
                    await send({**message, "headers": headers})
                else:
                    await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                if start is not None:  # a body sent another way: pass it on as it is
                    await send(start)
                    start = None
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._send_encoded(send, start, b"".join(chunks))

        return encoding_send

    async def _send_encoded(self, send: Send, start: Message, body: bytes) -> None:
        headers = start["headers"]
        if len(body) >= MIN_COMPRESSED_BYTES:
            body = self.memo.get_or_compress(body)
            headers = [(k, v) for k, v in _with_gzip_etag(headers) if k != b"content-length"]
            headers += [
                (b"content-encoding", b"gzip"),
                (b"content-length", str(len(body)).encode()),
            ]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _compressible(status: int, headers: Headers) -> bool:
    found = dict(headers)
    content_type = found.get(b"content-type", b"")
    return (
        status == 200
        and b"content-encoding" not in found
        and content_type.startswith(COMPRESSIBLE_TYPES)
    )


def _with_gzip_etag(headers: Headers) -> Headers:
    return [(k, _gzip_tag(v) if k == b"etag" else v) for k, v in headers]


def _strip_conditional_suffixes(scope: Scope) -> bool:
    """Remove `-gzip` from the tags in If-None-Match and If-Match; True if there was one."""
    found = False
    headers = []
    for name, value in scope["headers"]:
        if name in _CONDITIONAL and _GZIP_TAG.search(value):
            found = True
            value = _GZIP_TAG.sub(b'"', value)
        headers.append((name, value))
    if found:
        scope["headers"] = headers
    return found


class HeadMiddleware:
    """HEAD for every GET route: the GET response's status and headers, without the body
    (link checkers and crawlers ask with HEAD)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        finished = False

        async def send_without_body(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.start":
                await send(message)
            elif not finished and not message.get("more_body", False):
                finished = True
                await send({"type": "http.response.body", "body": b""})

        await self.app({**scope, "method": "GET"}, receive, send_without_body)
