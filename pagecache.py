"""Rendered pages for anonymous readers, cached per worker process under the site's content
version.

Every request still reads the version from the database (one row, see migration 0005), so a
change committed through any worker process is seen on the very next request: the cache
saves rendering and queries, never freshness.
"""

from collections import OrderedDict
from collections.abc import Callable
from threading import Lock

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from auth import SESSION_COOKIE
from models import SiteState
from templating import FLASH_COOKIE

MAX_ENTRIES = 512
MAX_BODY_BYTES = 256 * 1024
# A page depends on these cookies (who is logged in, messages to show): never cached.
PERSONAL_COOKIES = (SESSION_COOKIE, FLASH_COOKIE)


class PageCache:
    """A bounded LRU map from URL to (content version, body)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._max_entries = max_entries
        # Routes run in a thread pool; OrderedDict moves are not atomic.
        self._lock = Lock()

    def get(self, key: str, version: int) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: str, version: int, body: bytes) -> None:
        with self._lock:
            self._entries[key] = (version, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)


def content_version(db: Session) -> int | None:
    """The site's content version, or None when the row is missing (then nothing is cached)."""
    return db.scalar(select(SiteState.content_version).where(SiteState.id == 1))


def _is_anonymous(request: Request) -> bool:
    return not any(name in request.cookies for name in PERSONAL_COOKIES)


def cached_page(request: Request, db: Session, build: Callable[[], Response]) -> Response:
    """`build()`'s page, or the same bytes from the cache when nothing has changed since."""
    if not _is_anonymous(request):
        return build()
    cache: PageCache = request.app.state.page_cache
    key = str(request.url)
    version = content_version(db)
    body = cache.get(key, version) if version is not None else None
    if body is not None:
        return HTMLResponse(body)
    response = build()
    if _storable(response) and version is not None:
        cache.put(key, version, bytes(response.body))
    return response


def _storable(response: Response) -> bool:
    # A response that sets a cookie (a new CSRF seed) belongs to one visitor only.
    return (
        response.status_code == 200
        and "set-cookie" not in response.headers
        and len(response.body) <= MAX_BODY_BYTES
    )
