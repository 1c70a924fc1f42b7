"""The routes the benchmark drives, the credentials its readers and writers present, and the
API user that holds them."""

import html
import re
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import httpx

from bench.datasets import WRITER_PREFIX, Dataset
from bench.paths import PathSet

# Seeded titles are "<shape> <topic>"; sourdough is one of the topics, so it always matches.
SEARCH_WORD = "sourdough"
WRITER_PASSWORD = "bench writer passphrase, not a common one"
HOME = "/"
POST = "/posts/{id}"
API_POSTS = "/api/posts"
API_POST = "/api/posts/{id}"
WRITE_ROUTE = "POST /api/posts"
# Served only by bench/ceiling_app.py.
CEILING_PATH = "/__ceiling"


# Appended to a path with a fresh value on every request, so that the page cache never
# has the answer: the app ignores it, and the route does all its work each time.
CACHE_BUSTER = "nocache"
UNCACHED = " uncached"
LOGGED_IN = " (logged in)"
BEARER = " (bearer)"
# A random post per request out of a large sample of the dataset: a crawler's reads.
RANDOM_POST = "/posts/{id} random"

# What a request presents: nothing, the browser's session cookie, or an API bearer token.
Auth = Literal["none", "session", "bearer"]
SESSION_COOKIE = "inkwell_session"


@dataclass(frozen=True)
class Route:
    label: str
    path: str
    write: bool = False
    uncached: bool = False
    auth: Auth = "none"
    # A file of paths (bench/paths.py), one picked at random per request; `path` is then
    # one of them, for the status check and the statement count.
    paths_file: str = ""

    def busted(self, value: str) -> str:
        """The path with a cache-busting parameter (for uncached routes)."""
        separator = "&" if "?" in self.path else "?"
        return f"{self.path}{separator}{CACHE_BUSTER}={value}"

    def request_path(self, attempt: int) -> str:
        """The path of the `attempt`-th of a few single requests (bench/sqlcount.py), as
        wrk's scripts vary it: a fresh cache buster, or another path of the file, so that
        a route whose requests miss the page cache under load misses it here too."""
        if self.uncached:
            return self.busted(str(attempt))
        if self.paths_file:
            listed = Path(self.paths_file).read_text(encoding="utf-8").split()
            return listed[attempt % len(listed)]
        return self.path


def uncached(route: Route) -> Route:
    return replace(route, label=route.label + UNCACHED, uncached=True)


def logged_in(route: Route) -> Route:
    return replace(route, label=route.label + LOGGED_IN, auth="session")


def bearer(route: Route) -> Route:
    return replace(route, label=route.label + BEARER, auth="bearer")


def random_posts(paths: PathSet) -> Route:
    return Route(RANDOM_POST, paths.sample, paths_file=str(paths.file))


def routes(dataset: Dataset, crawled: PathSet | None = None) -> list[Route]:
    """Every Inkwell route measured, with real ids from the dataset: the reads as anonymous
    readers meet them (mostly from the page cache), the ones the growth targets name once
    more with the cache bypassed, logged-in readers (cookie) and API clients (token), a
    crawler's random post pages when `crawled` is given, and the write path."""
    home = Route(HOME, "/")
    page_50 = Route("/?page=50", "/?page=50")
    post = Route(POST, f"/posts/{dataset.post_id}/{dataset.post_slug}")
    found = Route(f"/search?q={SEARCH_WORD}", f"/search?q={SEARCH_WORD}")
    api_posts = Route(API_POSTS, "/api/posts")
    api_post = Route(API_POST, f"/api/posts/{dataset.post_id}")
    personal = [logged_in(route) for route in (home, post)]
    return [
        home,
        page_50,
        post,
        Route("/users/{id}/posts", f"/users/{dataset.user_id}/posts"),
        api_posts,
        api_post,
        Route("/feed.xml", "/feed.xml"),
        found,
        *[uncached(route) for route in (home, page_50, post, found)],
        *personal,
        *[uncached(route) for route in personal],
        *[bearer(route) for route in (api_posts, api_post)],
        *([random_posts(crawled)] if crawled else []),
        Route(WRITE_ROUTE, "/api/posts", write=True, auth="bearer"),
    ]


# ---------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """One benchmark user's API token and a browser session of the same user."""

    username: str
    token: str
    # The Cookie header a logged-in browser sends.
    cookie: str

    def headers(self, auth: Auth) -> dict[str, str]:
        if auth == "session":
            return {"Cookie": self.cookie}
        if auth == "bearer":
            return {"Authorization": f"Bearer {self.token}"}
        return {}


def wrk_headers(headers: dict[str, str]) -> list[str]:
    return [f"{name}: {value}" for name, value in headers.items()]


def create_writer(client: httpx.Client) -> tuple[str, str]:
    """Register a throwaway user through the API; its name and a bearer token for it."""
    name = WRITER_PREFIX + secrets.token_hex(6)
    created = client.post(
        "/api/users",
        json={"username": name, "email": f"{name}@example.com", "password": WRITER_PASSWORD},
    )
    created.raise_for_status()
    token = client.post("/api/token", data={"username": name, "password": WRITER_PASSWORD})
    token.raise_for_status()
    return name, str(token.json()["access_token"])


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def log_in(client: httpx.Client, username: str) -> str:
    """Log in through the site's own form, as a browser does, and return the Cookie header
    that browser then sends. The client's cookie jar is emptied again, so that its later
    requests stay anonymous."""
    client.cookies.clear()
    form = client.get("/login")
    form.raise_for_status()
    found = CSRF_FIELD.search(form.text)
    if found is None:
        raise RuntimeError("the log-in form has no CSRF token")
    fields = {
        "username": username,
        "password": WRITER_PASSWORD,
        "csrf_token": html.unescape(found[1]),
    }
    answer = client.post("/login", data=fields, follow_redirects=False)
    if answer.status_code != 303 or SESSION_COOKIE not in client.cookies:
        raise RuntimeError(f"log-in failed: {answer.status_code} {answer.text[:200]}")
    # The page the log-in redirects to shows (and clears) the welcome message, as it would
    # in the browser; what is left in the jar is what every later page view sends.
    client.get(answer.headers["location"]).raise_for_status()
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    client.cookies.clear()
    return cookie


def sign_in(client: httpx.Client) -> Credentials:
    """A new benchmark user with a token and a logged-in browser session."""
    username, token = create_writer(client)
    return Credentials(username, token, log_in(client, username))


WRITE_BODY = {
    "title": "A benchmark post about sourdough",
    "content": "I started with no plan at all.\n\nThe tools matter less than the habit.",
}
