"""The routes the benchmark drives, and the API user that performs the writes."""

import secrets
from dataclasses import dataclass

import httpx

from bench.datasets import WRITER_PREFIX, Dataset

# Seeded titles are "<shape> <topic>"; sourdough is one of the topics, so it always matches.
SEARCH_WORD = "sourdough"
WRITER_PASSWORD = "bench writer passphrase, not a common one"
HOME = "/"
WRITE_ROUTE = "POST /api/posts"
# Served only by bench/ceiling_app.py.
CEILING_PATH = "/__ceiling"


# Appended to a path with a fresh value on every request, so that the page cache never
# has the answer: the app ignores it, and the route does all its work each time.
CACHE_BUSTER = "nocache"
UNCACHED = " uncached"


@dataclass(frozen=True)
class Route:
    label: str
    path: str
    write: bool = False
    uncached: bool = False

    def busted(self, value: str) -> str:
        """The path with a cache-busting parameter (for uncached routes)."""
        separator = "&" if "?" in self.path else "?"
        return f"{self.path}{separator}{CACHE_BUSTER}={value}"


def uncached(route: Route) -> Route:
    return Route(route.label + UNCACHED, route.path, uncached=True)


def routes(dataset: Dataset) -> list[Route]:
    """Every Inkwell route measured, with real ids from the dataset: the reads as readers
    meet them (mostly from the page cache), the ones the growth targets name once more with
    the cache bypassed, and the write path."""
    home = Route(HOME, "/")
    page_50 = Route("/?page=50", "/?page=50")
    post = Route("/posts/{id}", f"/posts/{dataset.post_id}/{dataset.post_slug}")
    found = Route(f"/search?q={SEARCH_WORD}", f"/search?q={SEARCH_WORD}")
    return [
        home,
        page_50,
        post,
        Route("/users/{id}/posts", f"/users/{dataset.user_id}/posts"),
        Route("/api/posts", "/api/posts"),
        Route("/api/posts/{id}", f"/api/posts/{dataset.post_id}"),
        Route("/feed.xml", "/feed.xml"),
        found,
        *[uncached(route) for route in (home, page_50, post, found)],
        Route(WRITE_ROUTE, "/api/posts", write=True),
    ]


def create_writer(client: httpx.Client) -> str:
    """Register a throwaway user through the API and return a bearer token for it."""
    name = WRITER_PREFIX + secrets.token_hex(6)
    created = client.post(
        "/api/users",
        json={"username": name, "email": f"{name}@example.com", "password": WRITER_PASSWORD},
    )
    created.raise_for_status()
    token = client.post("/api/token", data={"username": name, "password": WRITER_PASSWORD})
    token.raise_for_status()
    return str(token.json()["access_token"])


WRITE_BODY = {
    "title": "A benchmark post about sourdough",
    "content": "I started with no plan at all.\n\nThe tools matter less than the habit.",
}
