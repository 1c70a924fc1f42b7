"""Responses for anonymous readers, cached per worker process under a stamp of what they
were made from (services.validity): a post's own page under its row and its author's,
every other page under the site's content version and the newest moment a post went live.

Every hit still reads its stamp from the database (one row), so a change committed through
any worker process is seen on the very next request: the cache saves rendering, queries and
the framework's work, never freshness. It sits in front of the routes as ASGI middleware,
so a hit costs one small query (and on PostgreSQL one thread hand-off, so that the event
loop never waits on the network).
"""

from functools import partial

import anyio.to_thread
from fastapi import Request
from sqlalchemy.exc import DBAPIError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from database import Database
from models import Post
from services import validity
from web.bounded_cache import BoundedCache, Stamp
from web.middleware import rewriting_headers, send_validated
from web.privacy import carries_credentials, may_be_shared, with_privacy_headers

# What one worker may hold, whatever the pages: a cap on entries alone would let a few
# hundred long posts take more memory than the rest of the worker. 6 MiB is some 250 pages;
# with the fragment cache's 2 MiB (web.fragments) a worker holds 8 MiB of cached HTML.
MAX_CACHED_BYTES = 6 * 1024 * 1024
MAX_BODY_BYTES = 256 * 1024
UNCACHED_PREFIXES = ("/static/", "/media/")
# Pages, and the permanent redirects from a post's short or older address to its current one.
STORED_STATUSES = (200, 301)
# What a cached page was made from. For most pages, the content version that triggers bump
# on every write and the newest moment a post went live: a scheduled post coming due writes
# nothing, but it moves the second part, so pages made before its moment are never served
# after it. A post's page is stamped with its own post and author instead.
Version = Stamp
Stored = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body
# Where a route leaves the stamp of the page it made when that is not the site-wide one.
STAMP_STATE = "page_stamp"


def _size(stored: Stored) -> int:
    _, headers, body = stored
    return len(body) + sum(len(name) + len(value) for name, value in headers)


class PageCache(BoundedCache[Stored]):
    """A map from URL to a stored response and the version it was made at, bounded by the
    bytes it holds and emptied least recently used first."""

    def __init__(self, max_bytes: int = MAX_CACHED_BYTES) -> None:
        super().__init__(max_bytes, _size)


def content_version(stamps: validity.StampReads) -> Version | None:
    """What most pages are made from right now (one row, and one step down an index), or
    None when it cannot be read (then nothing is cached, and the route itself meets
    whatever is wrong with the database)."""
    try:
        return stamps.site()
    except DBAPIError:
        return None


def post_version(stamps: validity.StampReads, post_id: int) -> Version | None:
    """What a page of post `post_id` would be made from right now; None if it is gone or
    cannot be read."""
    try:
        return stamps.post(post_id)
    except DBAPIError:
        return None


def stamp_with_post(request: Request, post: Post) -> None:
    """The page this request makes shows `post` and its author and nothing else that
    changes: cache it under their rows, so that writes to other posts leave it cached."""
    setattr(request.state, STAMP_STATE, validity.post_stamp_of(post))


def _route_stamp(scope: Scope) -> Version | None:
    stamp = scope.get("state", {}).get(STAMP_STATE)
    return tuple(stamp) if stamp is not None else None


def _is_anonymous_get(scope: Scope) -> bool:
    if scope["method"] != "GET" or scope["path"].startswith(UNCACHED_PREFIXES):
        return False
    return not carries_credentials(scope)


def _cache_key(scope: Scope) -> str:
    # Pages hold absolute URLs, so the host is part of what was rendered: the same Host
    # header the URL builder reads (the first; a request with two was refused already).
    host = Headers(scope=scope).get("host", "")
    query = scope["query_string"].decode("latin-1")
    return f"{scope['scheme']}://{host}{scope['path']}?{query}"


def _storable(scope: Scope, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    # Only what the route marked public and made without anything personal; a response
    # that sets a cookie belongs to one visitor whatever the marks say.
    return (
        status in STORED_STATUSES
        and may_be_shared(scope)
        and all(name != b"set-cookie" for name, _ in headers)
        and len(body) <= MAX_BODY_BYTES
    )


class PageCacheMiddleware:
    """Serve anonymous GETs from the cache while the content version is unchanged, and mark
    personal responses private on their way out."""

    def __init__(self, app: ASGIApp, database: Database, cache: PageCache) -> None:
        self.app = app
        self.stamps = validity.StampReads(database)
        self.cache = cache
        # SQLite reads a page of a local file: quicker inline than the hand-off to a thread.
        # A PostgreSQL query waits on the network, which would stall the whole event loop.
        self.reads_off_loop = not database.calls_inline

    async def _content_version(self) -> Version | None:
        if self.reads_off_loop:
            return await anyio.to_thread.run_sync(content_version, self.stamps)
        return content_version(self.stamps)

    async def _post_version(self, post_id: int) -> Version | None:
        if self.reads_off_loop:
            return await anyio.to_thread.run_sync(post_version, self.stamps, post_id)
        return post_version(self.stamps, post_id)

    async def _lookup(self, key: str) -> tuple[Stored | None, Version | None]:
        """The stored entry if it is still fresh, and the site-wide version when it was read
        to learn that (a miss then needs no second read)."""
        stored = self.cache.peek(key)
        if stored is not None and validity.is_post_stamp(stored[0]):
            current = await self._post_version(int(stored[0][1]))  # type: ignore[call-overload]
            # A post that is gone has no stamp: its page is dropped like a stale one.
            entry = self.cache.get(key, current or ())
            if entry is not None:
                return entry, None
            stored = None
        # Read before the page is built: a write landing in between makes the stored page
        # newer than its version, never older, and the next request simply misses. (A
        # route that stamps its page itself takes the stamp from the rows it rendered.)
        version = await self._content_version()
        if stored is None or version is None:
            return None, version
        return self.cache.get(key, version), version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not _is_anonymous_get(scope):
            private_send = rewriting_headers(send, partial(with_privacy_headers, scope))
            await self.app(scope, receive, private_send)
            return
        key = _cache_key(scope)
        entry, version = await self._lookup(key)
        if entry is not None:
            await _send_stored(scope, entry, send)
            return
        await self.app(scope, receive, self._storing_send(scope, send, key, version))

    def _storing_send(self, scope: Scope, send: Send, key: str, version: Version | None) -> Send:
        start: Message = {}
        chunks: list[bytes] = []

        async def storing_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                # The headers as they leave (privacy headers included) are the ones stored.
                start = {**message, "headers": with_privacy_headers(scope, message["headers"])}
                await send(start)
                return
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                stamp = _route_stamp(scope) or version
                if not message.get("more_body", False) and stamp is not None:
                    body = b"".join(chunks)
                    headers = list(start["headers"])
                    if _storable(scope, start["status"], headers, body):
                        self.cache.put(key, stamp, (start["status"], headers, body))
            await send(message)

        return storing_send


async def _send_stored(scope: Scope, stored: Stored, send: Send) -> None:
    status, headers, body = stored
    await send_validated(scope, send, status, headers, body)
