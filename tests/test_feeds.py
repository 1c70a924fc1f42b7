"""Atom feeds, the sitemap and robots.txt."""

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import feedparser
import pytest

from main import create_app
from routers import feeds

ATOM = "{http://www.w3.org/2005/Atom}"
SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
BASE = "http://testserver"
START = datetime(2024, 1, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def app(settings):
    """The app with the feeds router, whether or not main.py includes it yet."""
    application = create_app(settings)
    if not any(getattr(route, "name", None) == "site_feed" for route in application.routes):
        application.include_router(feeds.router)
    yield application
    application.state.database.dispose()


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def parse_feed(response):
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    ET.fromstring(response.content)  # well-formed for a strict XML parser too
    parsed = feedparser.parse(response.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    return parsed


def instant(value: str) -> datetime:
    """An RFC 3339 timestamp, which must carry its zone."""
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


def links(element) -> dict[str, str]:
    return {link.rel: link.href for link in element.links}


# ---------------------------------------------------------------- site feed


def test_site_feed_lists_the_newest_20_posts(client, make_user, make_post):
    alice = make_user("alice")
    posts = [
        make_post(alice if n % 2 else make_user(), title=f"Post {n}", date_posted=at(n))
        for n in range(25)
    ]
    feed = parse_feed(client.get("/feed.xml"))

    assert feed.feed.title == "Inkwell"
    assert feed.feed.id == f"{BASE}/feed.xml"
    assert links(feed.feed) == {"self": f"{BASE}/feed.xml", "alternate": f"{BASE}/"}
    newest = posts[::-1][:20]
    assert [entry.title for entry in feed.entries] == [post.title for post in newest]
    assert [entry.link for entry in feed.entries] == [
        f"{BASE}/posts/{p.id}/{p.slug}" for p in newest
    ]
    # The id is the permanent short address: it never changes with the slug.
    assert [entry.id for entry in feed.entries] == [f"{BASE}/posts/{p.id}" for p in newest]
    published = [instant(entry.published) for entry in feed.entries]
    assert published == sorted(published, reverse=True)
    assert published == [post.date_posted for post in newest]

    first = feed.entries[0]
    assert first.author == newest[0].author.username
    assert first.author_detail.href == f"{BASE}/users/{newest[0].author.id}/posts"
    assert first.content[0].type == "text/html"
    assert first.content[0].value == f"<p>{newest[0].content}</p>"


def test_feed_dates_are_zoned_and_updated_differs_from_published(client, make_post):
    # An old post edited recently: its entry says so, and so does the feed's own date.
    edited = make_post(title="Edited", date_posted=at(1), updated_at=at(100))
    newest = make_post(title="Newest", date_posted=at(2), updated_at=at(2))
    feed = parse_feed(client.get("/feed.xml"))

    by_title = {entry.title: entry for entry in feed.entries}
    assert instant(by_title["Edited"].published) == edited.date_posted
    assert instant(by_title["Edited"].updated) == at(100)
    assert instant(by_title["Newest"].published) == instant(by_title["Newest"].updated)
    assert instant(by_title["Newest"].updated) == newest.updated_at
    assert instant(feed.feed.updated) == at(100)


def test_empty_feed_is_valid_and_dated(client):
    before = datetime.now(UTC).replace(microsecond=0)
    feed = parse_feed(client.get("/feed.xml"))
    assert feed.entries == []
    assert instant(feed.feed.updated) >= before


def test_entry_content_is_the_sanitised_rendered_markdown(client, make_post):
    make_post(content="First *line*\n\n<b>Bold</b> & [x](javascript:alert(1))")
    root = ET.fromstring(client.get("/feed.xml").content)
    content = root.find(f"{ATOM}entry/{ATOM}content")
    assert content is not None
    assert content.get("type") == "html"
    assert "<p>First <em>line</em></p>" in content.text
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp;" in content.text
    assert "href" not in content.text  # markdown-it refuses to make a javascript: link


class TagFinder(HTMLParser):
    """Collects the tag names in an HTML fragment."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)


def test_hostile_text_gives_a_well_formed_feed(client, make_user, make_post):
    author = make_user("<b>&amp;]]>\x0bx")
    make_post(
        author,
        title="<script>alert(1)</script> ]]> & \x01\x0bend",
        content='<script>alert("x")</script>\n\n]]> & \x01\x0b<![CDATA[ done',
    )
    for path in ("/feed.xml", f"/users/{author.id}/feed.xml"):
        response = client.get(path)
        feed = parse_feed(response)
        entry = feed.entries[0]
        assert entry.title == "<script>alert(1)</script> ]]> & end"
        assert entry.author == "<b>&amp;]]>x"

        root = ET.fromstring(response.content)
        assert root.findtext(f"{ATOM}entry/{ATOM}title") == entry.title
        html = root.findtext(f"{ATOM}entry/{ATOM}content")
        assert "&lt;script&gt;" in html
        assert "]]&gt; &amp;" in html
        finder = TagFinder()
        finder.feed(html)
        assert finder.tags == {"p"}
    user_feed = feedparser.parse(client.get(f"/users/{author.id}/feed.xml").content)
    assert user_feed.feed.title == "Posts by <b>&amp;]]>x · Inkwell"


# ---------------------------------------------------------------- author feed


def test_user_feed_has_only_that_authors_posts(client, make_user, make_post):
    alice, bob = make_user("alice"), make_user("bob")
    for n in range(23):
        make_post(alice, title=f"Alice {n}", date_posted=at(2 * n))
        make_post(bob, title=f"Bob {n}", date_posted=at(2 * n + 1))
    feed = parse_feed(client.get(f"/users/{alice.id}/feed.xml"))

    assert feed.feed.title == "Posts by alice · Inkwell"
    assert feed.feed.id == f"{BASE}/users/{alice.id}/feed.xml"
    assert links(feed.feed) == {
        "self": f"{BASE}/users/{alice.id}/feed.xml",
        "alternate": f"{BASE}/users/{alice.id}/posts",
    }
    assert feed.feed.author == "alice"
    assert [entry.title for entry in feed.entries] == [f"Alice {n}" for n in range(22, 2, -1)]
    assert {entry.author for entry in feed.entries} == {"alice"}
    # The author page itself is still there beside the feed.
    assert client.get(f"/users/{alice.id}/posts").status_code == 200


def test_user_feed_of_author_without_posts_is_empty(client, make_user):
    author = make_user("quiet")
    feed = parse_feed(client.get(f"/users/{author.id}/feed.xml"))
    assert feed.entries == []
    assert feed.feed.title == "Posts by quiet · Inkwell"


@pytest.mark.parametrize("user_id", ["999", "99999999999"])
def test_unknown_user_feed_is_a_404_page(client, user_id):
    response = client.get(f"/users/{user_id}/feed.xml")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "User not found" in response.text


# ---------------------------------------------------------------- sitemap


def sitemap_entries(response) -> list[tuple[str, str | None]]:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.content)
    assert root.tag == f"{SITEMAP}urlset"
    entries = []
    for url in root:
        assert url.tag == f"{SITEMAP}url"
        lastmod = url.findtext(f"{SITEMAP}lastmod")
        if lastmod is not None:
            instant(lastmod)
        entries.append((url.findtext(f"{SITEMAP}loc"), lastmod))
    return entries


def test_sitemap_lists_home_posts_and_authors(client, make_user, make_post):
    alice, bob = make_user("alice"), make_user("bob")
    make_user("no-posts")
    first = make_post(alice, date_posted=at(1), updated_at=at(50))
    second = make_post(bob, date_posted=at(2), updated_at=at(2))
    third = make_post(alice, date_posted=at(3), updated_at=at(3))
    entries = sitemap_entries(client.get("/sitemap.xml"))

    assert [loc for loc, _ in entries] == [
        f"{BASE}/",
        f"{BASE}/posts/{third.id}/{third.slug}",
        f"{BASE}/posts/{second.id}/{second.slug}",
        f"{BASE}/posts/{first.id}/{first.slug}",
        f"{BASE}/users/{alice.id}/posts",
        f"{BASE}/users/{bob.id}/posts",
    ]
    lastmods = {loc: instant(lastmod) for loc, lastmod in entries if lastmod}
    assert lastmods[f"{BASE}/posts/{first.id}/{first.slug}"] == at(50)
    assert lastmods[f"{BASE}/users/{alice.id}/posts"] == at(50)
    assert lastmods[f"{BASE}/users/{bob.id}/posts"] == at(2)
    assert lastmods[f"{BASE}/"] == at(50)


def test_empty_sitemap_has_the_home_page(client):
    assert sitemap_entries(client.get("/sitemap.xml")) == [(f"{BASE}/", None)]


def test_sitemap_urls_are_right_whatever_the_host(settings, make_post):
    from fastapi.testclient import TestClient

    from main import create_app

    post = make_post()
    host = f"{feeds._URL_MARKER}.example"
    allowed = settings.model_copy(update={"allowed_hosts": [host]})
    with TestClient(create_app(allowed), base_url=f"http://{host}") as client:
        response = client.get("/sitemap.xml")
    locs = [loc for loc, _ in sitemap_entries(response)]
    assert f"http://{host}/posts/{post.id}/{post.slug}" in locs
    assert f"http://{host}/users/{post.user_id}/posts" in locs


def test_sitemap_stops_at_the_url_limit_newest_first(client, monkeypatch, make_user, make_post):
    monkeypatch.setattr(feeds, "SITEMAP_MAX_URLS", 6)
    posts = [make_post(date_posted=at(n)) for n in range(4)]  # four different authors
    locs = [loc for loc, _ in sitemap_entries(client.get("/sitemap.xml"))]
    newest, second = posts[3], posts[2]
    assert locs == [
        f"{BASE}/",
        f"{BASE}/posts/{newest.id}/{newest.slug}",
        f"{BASE}/posts/{second.id}/{second.slug}",
        f"{BASE}/users/{newest.user_id}/posts",
        f"{BASE}/users/{second.user_id}/posts",
    ]

    author = make_user()
    for n in range(10):
        make_post(author, date_posted=at(10 + n))
    locs = [loc for loc, _ in sitemap_entries(client.get("/sitemap.xml"))]
    assert len(locs) == 6
    assert locs[-1] == f"{BASE}/users/{author.id}/posts"


# ---------------------------------------------------------------- robots.txt


def test_robots_txt(client):
    response = client.get("/robots.txt")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    lines = response.text.splitlines()
    assert lines[0] == "User-agent: *"
    disallowed = {line.removeprefix("Disallow: ") for line in lines if line.startswith("Disallow")}
    assert disallowed == {"/account", "/posts/new", "/api/", "/login", "/register", "/drafts"}
    assert "Allow: /" in lines
    assert f"Sitemap: {BASE}/sitemap.xml" in lines


# ---------------------------------------------------------------- statement counts


@pytest.mark.parametrize("path", ["/feed.xml", "user", "/sitemap.xml"])
def test_statement_count_does_not_grow_with_posts(
    client, make_user, make_post, count_statements, path
):
    author = make_user()
    url = f"/users/{author.id}/feed.xml" if path == "user" else path
    counts = []
    made = 0
    for total in (1, 30):
        while made < total:
            # A new author per post for the site-wide lists: a lazy author load would show.
            make_post(author if path == "user" else make_user())
            made += 1
        counter = count_statements()
        response = client.get(url)
        assert response.status_code == 200
        if url == "/sitemap.xml":
            assert response.text.count("/posts/") == total
        else:
            assert response.text.count("<entry>") == min(total, 20)
        counts.append(counter.count)
    assert counts[0] == counts[1], counts
