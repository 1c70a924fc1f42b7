"""The floor: Inkwell's home page for an anonymous visitor with nothing in between.

A bare ASGI application (no framework, no ORM) that does the home page's work on every
request: the same two statements (the newest 10 live posts with their authors joined, and
the bounded count of the rows after them that decides the pagination, both down the
(published_at, id) index), then a Jinja2 template
compiled once at import renders the same HTML. Nothing is cached between requests, so a new
post shows on the very next request, as it must in Inkwell.

    DATABASE_URL=sqlite:///bench/data/inkwell-1k.db uvicorn bench.floor:app --workers 2

It answers `GET /` only (page 1); everything else is a 404. On PostgreSQL (a
`postgresql+psycopg://` URL) it runs the same statements through psycopg (bench/db.py).
"""

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from starlette.types import Receive, Scope, Send

from bench import db

ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = ROOT / "static"
PAGE_SIZE = 10
# The home page links two pages ahead of the current one when they exist.
LOOKAHEAD_PAGES = 2

POSTS_SQL = """
    SELECT p.id, p.slug, p.title, p.excerpt, p.reading_minutes, p.published_at,
           u.id, u.username, u.image_file
    FROM posts AS p JOIN users AS u ON u.id = p.user_id
    WHERE p.published_at <= ? AND NOT p.hidden
    ORDER BY p.published_at DESC, p.id DESC
    LIMIT ?
"""
AHEAD_SQL = """
    SELECT count(*) FROM (
        SELECT p.id FROM posts AS p WHERE p.published_at <= ? AND NOT p.hidden
        ORDER BY p.published_at DESC, p.id DESC LIMIT ? OFFSET ?
    ) AS ahead
"""

_environment = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent), autoescape=True
)
TEMPLATE = _environment.get_template("floor_home.html")
HTML_HEADERS = [(b"content-type", b"text/html; charset=utf-8")]


def database_url() -> str:
    return os.environ.get("DATABASE_URL", "sqlite:///./blog.db")


def fingerprint(path: str) -> str:
    """The static file's content hash, as Inkwell's `static_url` computes it."""
    return hashlib.blake2b((STATIC_DIR / path).read_bytes(), digest_size=6).hexdigest()


def long_date(value: datetime) -> str:
    return f"{value:%B} {value.day}, {value.year}"


def post_view(row: tuple[Any, ...]) -> dict[str, Any]:
    post_id, slug, title, excerpt, minutes, published, user_id, username, image_file = row
    date = db.read_moment(published)
    return {
        "id": post_id,
        "slug": slug,
        "title": title,
        "excerpt": excerpt,
        "reading_minutes": minutes,
        "iso_date": date.isoformat(timespec="milliseconds"),
        "long_date": long_date(date),
        "user_id": user_id,
        "username": username,
        "image_file": image_file,
    }


class Floor:
    """One database connection per worker process, opened at startup. Statements run on
    the event loop itself: a worker serves one request at a time, and a hand-off to a
    thread would be a cost the floor does not owe."""

    def __init__(self) -> None:
        self.connection: db.Connection | None = None
        self.css_version = fingerprint("css/style.css")
        self.avatar_version = fingerprint("profile_pics/default.jpg")
        self.icon_version = fingerprint("favicon.svg")
        self.touch_icon_version = fingerprint("apple-touch-icon.png")

    def open(self) -> None:
        self.connection = db.Connection(database_url())

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def render_home(self, origin: str) -> bytes:
        assert self.connection is not None, "lifespan startup did not run"
        # Live posts only, as the database stores the time (what Inkwell's `live()` compares).
        now = self.connection.moment(datetime.now(UTC))
        rows = self.connection.execute(POSTS_SQL, (now, PAGE_SIZE)).fetchall()
        cap = LOOKAHEAD_PAGES * PAGE_SIZE
        (ahead,) = self.connection.execute(AHEAD_SQL, (now, cap, PAGE_SIZE)).fetchone()
        last_page = 1 + -(-ahead // PAGE_SIZE)
        return TEMPLATE.render(
            origin=origin,
            posts=[post_view(row) for row in rows],
            has_next=last_page > 1,
            window=range(1, last_page + 1),
            css_version=self.css_version,
            avatar_version=self.avatar_version,
            icon_version=self.icon_version,
            touch_icon_version=self.touch_icon_version,
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] != "GET" or scope["path"] != "/":
            await respond(send, 404, [(b"content-type", b"text/plain")], b"Not Found")
            return
        await respond(send, 200, HTML_HEADERS, self.render_home(origin(scope)))

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def origin(scope: Scope) -> str:
    """scheme://host[:port] from the Host header, as Starlette's url_for builds it."""
    for name, value in scope["headers"]:
        if name == b"host":
            return f"{scope['scheme']}://{value.decode('latin-1')}"
    host, port = scope["server"]
    return f"{scope['scheme']}://{host}:{port}"


async def respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body})


app = Floor()
