"""Text responses are gzip-compressed with per-encoding ETags; HEAD answers every GET."""

import gzip

import httpx
import pytest

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


def encoded_body(client, path: str, **headers: str) -> tuple[httpx.Response, bytes]:
    with client.stream("GET", path, headers=headers) as response:
        return response, b"".join(response.iter_raw())


@pytest.mark.parametrize(
    "path", ["/", "/feed.xml", "/sitemap.xml", "/api/posts", "/static/css/style.css"]
)
def test_text_is_compressed_for_clients_that_accept_gzip(client, make_post, path):
    for n in range(5):
        make_post(content="Words that repeat and repeat. " * 20, title=f"Post {n}")
    plain, plain_body = encoded_body(client, path, **IDENTITY)
    packed, packed_body = encoded_body(client, path, **GZIP)
    assert plain.status_code == packed.status_code == 200
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert gzip.decompress(packed_body) == plain_body
    assert len(packed_body) < len(plain_body)
    assert int(packed.headers["content-length"]) == len(packed_body)
    for response in (plain, packed):
        assert "Accept-Encoding" in response.headers["vary"]
    assert packed.headers["etag"] != plain.headers["etag"]


def test_an_etag_revalidates_in_the_encoding_it_was_given(client, make_post):
    make_post(content="Long enough to be worth compressing. " * 20)
    for headers in (GZIP, IDENTITY):
        first, _ = encoded_body(client, "/", **headers)
        again, body = encoded_body(
            client, "/", **headers, **{"If-None-Match": first.headers["etag"]}
        )
        assert again.status_code == 304, headers
        assert again.headers["etag"] == first.headers["etag"]
        assert body == b""


def test_cached_pages_are_compressed_too(app, client, make_post):
    make_post(content="Cached and compressed. " * 30)
    encoded_body(client, "/", **IDENTITY)  # fills the page cache
    assert app.state.page_cache.size_in_bytes > 0
    packed, body = encoded_body(client, "/", **GZIP)
    assert packed.headers["content-encoding"] == "gzip"
    assert b"Cached and compressed." in gzip.decompress(body)


def test_if_match_accepts_the_compressed_etag(client, make_user, api_headers):
    headers = api_headers(make_user("editor"))
    created = client.post(
        "/api/posts", json={"title": "T", "content": "Body " * 200}, headers=headers
    ).json()
    fetched, _ = encoded_body(client, f"/api/posts/{created['id']}", **GZIP)
    assert fetched.headers["etag"].endswith('-gzip"')
    edited = client.patch(
        f"/api/posts/{created['id']}",
        json={"title": "Edited"},
        headers={**headers, "If-Match": fetched.headers["etag"]},
    )
    assert edited.status_code == 200, edited.text


def get_routes(app) -> list[str]:
    """A concrete path for every GET page route and API read."""
    paths = []
    for route in app.routes:
        methods = getattr(route, "methods", None) or set()
        if "GET" in methods and "{" not in route.path:
            paths.append(route.path)
    return paths


def test_head_answers_every_get_route_with_the_same_headers(app, client, make_post):
    post = make_post()
    paths = [*get_routes(app), f"/posts/{post.id}", f"/users/{post.user_id}/posts"]
    for path in paths:
        got = client.get(path, follow_redirects=False)
        head = client.head(path, follow_redirects=False)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        for name in ("content-type", "content-length", "etag"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
