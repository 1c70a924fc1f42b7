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


@dataclass(frozen=True)
class Route:
    label: str
    path: str
    write: bool = False


def routes(dataset: Dataset) -> list[Route]:
    """Every Inkwell route measured, with real ids from the dataset."""
    return [
        Route(HOME, "/"),
        Route("/?page=50", "/?page=50"),
        Route("/posts/{id}", f"/posts/{dataset.post_id}"),
        Route("/users/{id}/posts", f"/users/{dataset.user_id}/posts"),
        Route("/api/posts", "/api/posts"),
        Route("/api/posts/{id}", f"/api/posts/{dataset.post_id}"),
        Route("/feed.xml", "/feed.xml"),
        Route(f"/search?q={SEARCH_WORD}", f"/search?q={SEARCH_WORD}"),
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
