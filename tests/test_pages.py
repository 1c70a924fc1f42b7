"""Server-rendered pages: listings, post and author pages, errors."""

import json
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from sqlalchemy import select


class LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append(values["href"])
        if tag == "img" and values.get("src"):
            self.images.append(values["src"])


def parse(html: str) -> LinkCollector:
    collector = LinkCollector()
    collector.feed(html)
    return collector


def test_home_lists_newest_posts_with_author_and_date(client, make_user, make_post):
    alice = make_user("alice")
    make_post(alice, title="Older post", date_posted=datetime(2024, 1, 15, 9, 30, tzinfo=UTC))
    newer = make_post(
        alice, title="Newer post", date_posted=datetime(2024, 2, 1, 9, 30, tzinfo=UTC)
    )
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert html.index("Newer post") < html.index("Older post")
    assert "January 15, 2024" in html
    assert "February 1, 2024" in html
    page = parse(html)
    assert f"http://testserver/posts/{newer.id}/{newer.slug}" in page.links
    assert f"http://testserver/users/{alice.id}/posts" in page.links
    assert any(
        src.startswith("http://testserver/static/profile_pics/default.jpg?v=")
        for src in page.images
    )


def test_posts_path_is_the_listing_too(client, make_post):
    make_post(title="Shown on /posts")
    assert "Shown on /posts" in client.get("/posts").text


def test_empty_home_has_friendly_state(client):
    response = client.get("/")
    assert response.status_code == 200
    assert "Nothing here yet" in response.text


def test_home_pagination_is_numbered(client, make_user, make_post):
    author = make_user()
    posts = [make_post(author, title=f"Numbered {n:02d}") for n in range(25)]
    first = client.get("/")
    assert "Numbered 24" in first.text and "Numbered 14" not in first.text
    assert 'href="http://testserver/?page=2"' in first.text
    assert 'href="http://testserver/?page=3"' in first.text
    third = client.get("/?page=3")
    assert third.status_code == 200
    assert "Numbered 04" in third.text and "Numbered 05" not in third.text
    assert 'rel="next"' not in third.text
    assert 'aria-current="page">3<' in third.text
    assert len(posts) == 25


def test_page_past_the_end_is_404(client, make_post):
    make_post()
    assert client.get("/?page=2").status_code == 404


@pytest.mark.parametrize("query", ["page=0", "page=abc", "page=-1"])
def test_bad_page_number_is_an_html_error_not_500(client, query):
    response = client.get(f"/?{query}")
    assert response.status_code == 400
    assert "text/html" in response.headers["content-type"]


def test_post_page_escapes_content(client, make_post):
    post = make_post(title="<script>alert(1)</script>", content="<img src=x onerror=alert(1)>")
    response = client.get(f"/posts/{post.id}")
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert "<img src=x" not in response.text


def test_author_page_shows_only_their_posts_and_avatar(client, make_user, make_post):
    alice = make_user("alice", image_file="abc123.jpg")
    bob = make_user("bob")
    make_post(alice, title="By Alice")
    make_post(bob, title="By Bob")
    response = client.get(f"/users/{alice.id}/posts")
    assert response.status_code == 200
    assert "By Alice" in response.text and "By Bob" not in response.text
    assert "http://testserver/media/profile_pics/abc123.jpg" in parse(response.text).images


def test_author_page_empty_state(client, make_user):
    carol = make_user("carol")
    response = client.get(f"/users/{carol.id}/posts")
    assert response.status_code == 200
    assert "hasn\u2019t published anything yet" in response.text


@pytest.mark.parametrize(
    "path",
    ["/posts/999", "/users/999/posts", "/no/such/page", "/posts/99999999999999", "/posts/abc"],
)
def test_unknown_pages_get_html_404_in_layout(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "We couldn\u2019t find that page" in response.text
    assert 'class="site-header"' in response.text


def test_api_404_stays_json(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_every_link_resolves(client, make_user, make_post):
    """Every internal link and image on the main pages answers 200."""
    author = make_user()
    post = make_post(author)
    for path in ("/", f"/posts/{post.id}", f"/users/{author.id}/posts"):
        page = parse(client.get(path).text)
        for url in page.links + page.images:
            if url.startswith("http://testserver"):
                assert client.get(url).status_code == 200, url


def test_static_files_are_served(client):
    assert client.get("/static/css/style.css").status_code == 200
    avatar = client.get("/static/profile_pics/default.jpg")
    assert avatar.status_code == 200
    assert avatar.content[:3] == b"\xff\xd8\xff"  # a real JPEG


@pytest.mark.parametrize(
    "path",
    ["/", "/api/posts", "/posts/{post}", "/api/posts/{post}", "/feed.xml", "/search?q=body"],
)
def test_conditional_get_answers_304_until_the_content_changes(
    client, make_post, api_headers, path
):
    post = make_post(title="Before")
    url = path.format(post=post.id)
    etag = client.get(url).headers["etag"]
    assert etag.startswith(('W/"', '"'))  # weak body hash, or a post's strong version tag
    repeat = client.get(url, headers={"If-None-Match": etag})
    assert repeat.status_code == 304
    assert repeat.content == b""
    assert repeat.headers["etag"] == etag

    edit = client.patch(
        f"/api/posts/{post.id}", json={"title": "After"}, headers=api_headers(post.author)
    )
    assert edit.status_code == 200
    fresh = client.get(url, headers={"If-None-Match": etag})
    assert fresh.status_code == 200
    assert "After" in fresh.text
    assert fresh.headers["etag"] != etag


def test_static_files_with_fingerprint_are_cached_for_a_year(client):
    stylesheet = client.get("/").text.split('rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    assert "?v=" in stylesheet
    response = client.get(stylesheet)
    assert response.status_code == 200
    assert "max-age=31536000" in response.headers["cache-control"]
    assert "immutable" in response.headers["cache-control"]


def _json_ld(html: str) -> dict:
    block = html.split('<script type="application/ld+json">', 1)[1].split("</script>", 1)[0]
    return json.loads(block)


def test_post_page_renders_sanitised_markdown_with_metadata(client, make_post):
    post = make_post(
        title="Markdown </script><script>alert(1)</script>",
        content="Some *emphasis* and [a link](https://example.com).\n\n<script>alert(2)</script>",
    )
    html = client.get(f"/posts/{post.id}").text
    assert "<em>emphasis</em>" in html
    assert '<a href="https://example.com" rel="nofollow ugc noopener">a link</a>' in html
    assert "<script>alert" not in html
    assert f'<link rel="canonical" href="http://testserver/posts/{post.id}/{post.slug}">' in html
    assert '<meta name="description" content="Some emphasis and a link. &lt;script&gt;' in html
    assert '<meta property="og:type" content="article">' in html
    data = _json_ld(html)
    assert data["@type"] == "BlogPosting"
    assert data["headline"] == post.title
    assert data["author"]["name"] == post.author.username
    assert "1 min read" in html


def test_listing_shows_plain_text_excerpt(client, make_post):
    words = " ".join(f"**word{n}**" for n in range(60))
    make_post(content=words)
    html = client.get("/").text
    excerpt = html.split('<p class="excerpt">', 1)[1].split("</p>", 1)[0]
    assert excerpt.startswith("word0 word1")
    assert excerpt.endswith("word39…")
    assert "<strong>" not in excerpt and "**" not in excerpt


def test_author_page_has_person_json_ld(client, make_user):
    author = make_user("persona")
    data = _json_ld(client.get(f"/users/{author.id}/posts").text)
    assert (data["@type"], data["name"]) == ("Person", "persona")


def test_stale_renderings_are_refreshed_at_startup(settings, make_post, db):
    from fastapi.testclient import TestClient

    from main import create_app
    from models import Post

    post = make_post(content="*fresh*")
    db.execute(Post.__table__.update().values(content_html="", render_version=0, excerpt=""))
    db.commit()
    edited_before = db.scalar(select(Post.updated_at))
    with TestClient(create_app(settings)) as other:
        assert "<em>fresh</em>" in other.get(f"/posts/{post.id}").text
    db.commit()
    db.expire_all()
    refreshed = db.get(Post, post.id)
    assert refreshed.render_version >= 1
    assert refreshed.updated_at == edited_before


def test_new_post_is_not_marked_edited(client, api_headers, make_user):
    author = make_user()
    created = client.post(
        "/api/posts", json={"title": "Fresh", "content": "New."}, headers=api_headers(author)
    ).json()
    assert created["updated_at"] == created["date_posted"]
    assert "(edited" not in client.get(f"/posts/{created['id']}").text


def test_feeds_and_api_posts_say_when_they_last_changed(client, make_post):
    from email.utils import parsedate_to_datetime

    post = make_post()
    for path in ("/feed.xml", f"/api/posts/{post.id}"):
        stamp = parsedate_to_datetime(client.get(path).headers["last-modified"])
        assert stamp == post.updated_at.replace(microsecond=0)


def test_cached_url_building_matches_the_router_for_every_named_route(app):
    from starlette.convertors import IntegerConvertor, PathConvertor
    from starlette.routing import NoMatchFound

    from web.urls import _leaf_routes, url_path

    named = [route for route in _leaf_routes(app.router.routes) if getattr(route, "name", None)]
    assert len(named) > 30
    for _ in range(2):  # the second round is answered from the cache
        for route in named:
            sample = {IntegerConvertor: 7, PathConvertor: "css/style.css"}
            params = {
                key: sample.get(type(convertor), "word")
                for key, convertor in route.param_convertors.items()
            }
            assert url_path(app, route.name, params) == app.url_path_for(route.name, **params)
    with pytest.raises(NoMatchFound):
        url_path(app, "post_detail", {"wrong": 1})
    with pytest.raises(NoMatchFound):
        url_path(app, "no_such_route", {})


def test_cached_url_building_works_for_any_starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from web.urls import url_path

    bare = Starlette(routes=[Route("/x/{n:int}", PlainTextResponse, name="x")])
    assert url_path(bare, "x", {"n": 3}) == "/x/3"
    assert url_path(bare, "x", {"n": 4}) == "/x/4"


def test_template_urls_are_the_routers_absolute_urls(app):
    from starlette.requests import Request

    from web.urls import url_for as absolute_url

    scope = {
        "type": "http",
        "app": app,
        "scheme": "https",
        "server": ("blog.example", 443),
        "root_path": "/blog",
        "path": "/blog/",
        "query_string": b"",
        "headers": [(b"host", b"blog.example")],
        "router": app.router,
    }
    request = Request(scope)
    for name, params in [
        ("home", {}),
        ("post_short", {"post_id": 3}),
        ("static", {"path": "a.css"}),
    ]:
        assert str(absolute_url(request, name, **params)) == str(request.url_for(name, **params))
    assert (
        str(absolute_url(request, "post_short", post_id=3)) == "https://blog.example/blog/posts/3"
    )
