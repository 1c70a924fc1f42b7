"""Drafts, scheduled posts, tags, readable URLs and review links, on every channel."""

from datetime import timedelta

import feedparser
import pytest
from sqlalchemy import select

from models import Post, Tag
from tests.support.accounts import form_token

CHANNELS = ("/", "/feed.xml", "/sitemap.xml", "/search?q=zeppelin", "/api/posts")


def api_post(client, headers, **fields):
    body = {"title": "Zeppelin notes", "content": "About a zeppelin.", **fields}
    response = client.post("/api/posts", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def shown_everywhere(client, post_id: int, author_id: int, tag: str | None = None) -> dict:
    """Whether the post appears on each reader channel, as an anonymous reader sees it."""
    client.cookies.clear()
    channels = [*CHANNELS, f"/users/{author_id}/posts", f"/users/{author_id}/feed.xml"]
    if tag:
        channels += [f"/tags/{tag}", f"/tags/{tag}/feed.xml", f"/api/posts?tag={tag}"]
    found = {}
    for path in channels:
        response = client.get(path)
        found[path] = response.status_code == 200 and f"/posts/{post_id}" in response.text
    return found


# ---------------------------------------------------------------- drafts


def test_a_draft_is_seen_by_its_author_only(client, make_user, api_headers):
    author = make_user("drafter")
    headers = api_headers(author)
    draft = api_post(client, headers, status="draft", tags=["Airships"])
    assert draft["status"] == "draft" and draft["published_at"] is None
    assert not any(shown_everywhere(client, draft["id"], author.id, "airships").values())
    # Not found, not forbidden: the draft's existence is not disclosed.
    assert client.get(f"/api/posts/{draft['id']}").status_code == 404
    assert client.get(f"/posts/{draft['id']}").status_code == 404
    other = api_headers(make_user("nosy"))
    assert client.get(f"/api/posts/{draft['id']}", headers=other).status_code == 404
    assert client.get("/tags").text.count("Airships") == 0
    # Its author reads it, and finds it among their own posts.
    assert client.get(f"/api/posts/{draft['id']}", headers=headers).json()["status"] == "draft"
    mine = client.get("/api/users/me/posts", headers=headers).json()
    assert [post["id"] for post in mine] == [draft["id"]]


def test_drafts_page_lists_unpublished_posts_first(client, make_account, api_headers):
    from tests.support.accounts import login

    author = make_account("writer")
    headers = api_headers(author)
    published = api_post(client, headers, title="Out already")
    draft = api_post(client, headers, title="Still drafting", status="draft")
    login(client, "writer")
    page = client.get("/drafts")
    assert page.status_code == 200
    assert page.text.index("Still drafting") < page.text.index("Out already")
    assert "Draft" in page.text
    assert page.headers["cache-control"] == "private, no-store"
    assert f"/posts/{draft['id']}/" in page.text and f"/posts/{published['id']}/" in page.text


def test_an_author_previews_their_draft_at_its_address(client, make_account, api_headers):
    from tests.support.accounts import login

    author = make_account("previewer")
    draft = api_post(client, api_headers(author), status="draft", title="Work in progress")
    login(client, "previewer")
    page = client.get(f"/posts/{draft['id']}/work-in-progress")
    assert page.status_code == 200
    assert "this is a draft" in page.text
    assert '<meta name="robots" content="noindex">' in page.text


# ---------------------------------------------------------------- scheduling


def test_a_scheduled_post_goes_live_at_its_moment_on_every_channel(
    client, make_user, api_headers, clock
):
    author = make_user("scheduler")
    when = clock.moment + timedelta(hours=2)
    post = api_post(
        client,
        api_headers(author),
        status="scheduled",
        published_at=when.isoformat(),
        tags=["Airships"],
    )
    assert post["status"] == "scheduled"
    before = shown_everywhere(client, post["id"], author.id, "airships")
    assert not any(before.values()), before
    clock.advance(hours=1, minutes=59)
    assert not any(shown_everywhere(client, post["id"], author.id, "airships").values())
    clock.advance(minutes=1)
    after = shown_everywhere(client, post["id"], author.id, "airships")
    assert all(after.values()), after
    assert client.get(f"/api/posts/{post['id']}").json()["status"] == "published"


def test_cached_pages_do_not_outlive_a_scheduled_moment(app, client, make_user, api_headers, clock):
    author = make_user("cachey")
    post = api_post(
        client,
        api_headers(author),
        status="scheduled",
        published_at=(clock.moment + timedelta(minutes=5)).isoformat(),
    )
    client.cookies.clear()
    for _ in range(2):
        assert f"/posts/{post['id']}/" not in client.get("/").text
    assert app.state.page_cache.size_in_bytes > 0  # the page before the moment is cached
    clock.advance(minutes=5)
    assert f"/posts/{post['id']}/" in client.get("/").text


def test_feeds_and_sitemap_date_posts_by_their_publication(client, make_user, api_headers, clock):
    author = make_user("dated")
    post = api_post(
        client,
        api_headers(author),
        status="scheduled",
        published_at=(clock.moment + timedelta(days=3)).isoformat(),
    )
    clock.advance(days=3, seconds=1)
    entry = feedparser.parse(client.get("/feed.xml").text).entries[0]
    assert entry.published.startswith(post["published_at"][:19])


def test_publishing_and_rescheduling_are_versioned_edits(client, make_user, api_headers, clock):
    headers = api_headers(make_user("editor"))
    post = api_post(client, headers, status="draft")
    live = client.patch(
        f"/api/posts/{post['id']}",
        json={"status": "published", "version": post["version"]},
        headers=headers,
    )
    assert live.status_code == 200 and live.json()["status"] == "published"
    stale = client.patch(
        f"/api/posts/{post['id']}",
        json={"status": "draft", "version": post["version"]},
        headers=headers,
    )
    assert stale.status_code == 409
    back = client.patch(
        f"/api/posts/{post['id']}",
        json={"status": "draft", "version": live.json()["version"]},
        headers=headers,
    )
    assert back.json()["status"] == "draft" and back.json()["published_at"] is None


def test_a_scheduled_post_needs_a_time(client, make_user, api_headers):
    response = client.post(
        "/api/posts",
        json={"title": "T", "content": "C", "status": "scheduled"},
        headers=api_headers(make_user("hasty")),
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_a_time_already_past_publishes_at_that_time(client, make_user, api_headers, clock):
    past = clock.moment - timedelta(days=30)
    post = api_post(
        client,
        api_headers(make_user("backdater")),
        status="scheduled",
        published_at=past.isoformat(),
    )
    assert post["status"] == "published"
    assert post["published_at"].startswith(past.isoformat()[:19])


# ---------------------------------------------------------------- the form


def test_the_form_schedules_in_the_authors_time_zone(client, make_account, db, clock):
    from tests.support.accounts import login

    author = make_account("parisian", timezone="Europe/Paris")
    login(client, "parisian")
    token = form_token(client, "/posts/new")
    response = client.post(
        "/posts/new",
        data={
            "title": "Bonjour",
            "content": "Le matin.",
            "tags": "Café Culture, cafe culture",
            "status": "scheduled",
            "publish_at": "2040-03-03T10:00",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    post = db.scalar(select(Post).where(Post.user_id == author.id))
    # 10:00 in Paris in March is 09:00 UTC (CET, before summer time).
    assert post.published_at.isoformat() == "2040-03-03T09:00:00+00:00"
    assert post.status == "scheduled"
    assert [tag.name for tag in post.tags] == ["Café Culture"]
    edit = client.get(f"/posts/{post.id}/edit").text
    assert 'value="2040-03-03T10:00"' in edit


def test_a_refused_form_keeps_tags_and_schedule(client, make_account):
    from tests.support.accounts import login

    make_account("typist")
    login(client, "typist")
    token = form_token(client, "/posts/new")
    response = client.post(
        "/posts/new",
        data={
            "title": "",
            "content": "Body kept.",
            "tags": "Keep, These",
            "status": "scheduled",
            "publish_at": "2040-01-01T08:30",
            "csrf_token": token,
        },
    )
    assert response.status_code == 422
    assert 'value="Keep, These"' in response.text
    assert 'value="2040-01-01T08:30"' in response.text
    assert 'value="scheduled" checked' in response.text


def test_a_draft_saved_from_the_form(client, make_account, db):
    from tests.support.accounts import login

    make_account("quiet")
    login(client, "quiet")
    token = form_token(client, "/posts/new")
    response = client.post(
        "/posts/new",
        data={
            "title": "Not yet",
            "content": "Thinking.",
            "status": "draft",
            "csrf_token": token,
        },
    )
    assert "Your draft has been saved." in response.text
    assert db.scalar(select(Post)).published_at is None


# ---------------------------------------------------------------- tags


def test_two_spellings_are_one_tag(client, make_user, api_headers, db):
    headers = api_headers(make_user("tagger"))
    first = api_post(client, headers, tags=["Café Culture"])
    second = api_post(client, headers, tags=["cafe culture", "Travel"])
    assert first["tags"] == ["Café Culture"]
    assert second["tags"] == ["Café Culture", "Travel"]
    assert db.scalar(select(Tag).where(Tag.slug == "cafe-culture")).name == "Café Culture"
    tags = client.get("/api/tags").json()
    assert {tag["slug"]: tag["post_count"] for tag in tags} == {"cafe-culture": 2, "travel": 1}
    listing = client.get("/api/posts?tag=cafe-culture").json()
    assert [post["id"] for post in listing] == [second["id"], first["id"]]
    assert client.get("/api/posts?tag=nothing-here").status_code == 404
    page = client.get("/tags/cafe-culture")
    assert page.status_code == 200
    assert '<link rel="alternate" type="application/atom+xml"' in page.text
    feed = feedparser.parse(client.get("/tags/cafe-culture/feed.xml").text)
    assert len(feed.entries) == 2
    assert "Café Culture" in client.get("/tags").text


def test_tags_in_any_script_get_a_slug(client, make_user, api_headers):
    post = api_post(client, api_headers(make_user("globe")), tags=["東京", "!!!"])
    slugs = [tag["slug"] for tag in client.get("/api/tags").json()]
    assert "東京" in slugs and any(slug.startswith("tag-") for slug in slugs)
    assert len(post["tags"]) == 2


def test_at_most_ten_tags(client, make_user, api_headers):
    response = client.post(
        "/api/posts",
        json={"title": "T", "content": "C", "tags": [f"t{n}" for n in range(11)]},
        headers=api_headers(make_user("greedy")),
    )
    assert response.status_code == 422


def tagged_count(client, tag: str) -> int:
    response = client.get(f"/api/posts?tag={tag}&per_page=100")
    return len(response.json()) if response.status_code == 200 else 0


@pytest.mark.parametrize("path", ["/tags/{tag}", "/api/posts?tag={tag}&per_page=50", "/"])
def test_tagged_listings_cost_the_same_for_1_and_50_posts(
    client, make_user, api_headers, count_statements, path
):
    headers = api_headers(make_user("prolific"))
    counts = []
    for total in (1, 50):
        while tagged_count(client, "same") < total:
            api_post(client, headers, tags=["Same", f"other{total}"])
        counter = count_statements()
        assert client.get(path.format(tag="same")).status_code == 200
        counts.append(counter.count)
    assert counts[0] == counts[1]


# ---------------------------------------------------------------- addresses


def test_every_address_a_post_had_redirects_to_the_current_one(client, make_user, api_headers):
    headers = api_headers(make_user("mover"))
    post = api_post(client, headers, title="My First Post")
    assert post["url"] == f"http://testserver/posts/{post['id']}/my-first-post"
    assert post["slug"] == "my-first-post"
    renamed = client.patch(
        f"/api/posts/{post['id']}", json={"slug": "a-better-name"}, headers=headers
    ).json()
    canonical = f"http://testserver/posts/{post['id']}/a-better-name"
    assert renamed["url"] == canonical
    for old in (f"/posts/{post['id']}", f"/posts/{post['id']}/my-first-post"):
        moved = client.get(old, follow_redirects=False)
        assert moved.status_code == 301, old
        assert moved.headers["location"] == canonical
    page = client.get(canonical).text
    assert f'<link rel="canonical" href="{canonical}">' in page
    assert f'content="{canonical}"' in page  # OpenGraph
    assert f'"url": "{canonical}"' in page  # JSON-LD


def test_a_slug_that_names_a_page_of_the_post_is_moved_aside(client, make_user, api_headers):
    author = make_user("edgy")
    post = api_post(client, api_headers(author), title="Edit")
    assert post["slug"] == "edit-post"
    assert client.get(f"/posts/{post['id']}/edit-post").status_code == 200
    # The post's page is tried first, yet its own pages stay theirs: for a stranger the
    # edit form is a log-in redirect, not a redirect to the post's canonical address.
    for page in ("edit", "delete", "history"):
        answer = client.get(f"/posts/{post['id']}/{page}", follow_redirects=False)
        assert answer.status_code == 303, page
        assert answer.headers["location"].startswith("http://testserver/login?next="), page


# ---------------------------------------------------------------- review links


def test_a_review_link_shows_the_draft_until_it_expires(client, make_user, api_headers, clock):
    headers = api_headers(make_user("reviewed"))
    draft = api_post(client, headers, status="draft", title="For your eyes")
    created = client.post(f"/api/posts/{draft['id']}/review-links", headers=headers)
    assert created.status_code == 201
    link = created.json()
    client.cookies.clear()
    page = client.get(link["url"])
    assert page.status_code == 200 and "For your eyes" in page.text
    assert page.headers["x-robots-tag"] == "noindex"
    assert '<meta name="robots" content="noindex">' in page.text
    assert "Preview" in page.text
    clock.advance(days=7, seconds=1)
    assert client.get(link["url"]).status_code == 404


def test_a_revoked_review_link_shows_nothing(client, make_user, api_headers, db):
    headers = api_headers(make_user("revoker"))
    draft = api_post(client, headers, status="draft")
    link = client.post(f"/api/posts/{draft['id']}/review-links", headers=headers).json()
    assert client.get(link["url"]).status_code == 200
    revoked = client.delete(f"/api/posts/{draft['id']}/review-links/{link['id']}", headers=headers)
    assert revoked.status_code == 204
    assert client.get(link["url"]).status_code == 404
    token = link["url"].rsplit("/", 1)[1]
    from models import ReviewLink

    assert all(token not in row.token_hash for row in db.scalars(select(ReviewLink)))


def test_review_links_are_for_their_author_and_for_unpublished_posts(
    client, make_user, api_headers
):
    author = api_headers(make_user("owner"))
    draft = api_post(client, author, status="draft")
    other = api_headers(make_user("stranger"))
    assert client.post(f"/api/posts/{draft['id']}/review-links", headers=other).status_code == 404
    published = api_post(client, author)
    assert (
        client.post(f"/api/posts/{published['id']}/review-links", headers=author).status_code == 409
    )


def test_review_links_from_the_edit_form(client, make_account, api_headers):
    from tests.support.accounts import login

    author = make_account("formal")
    draft = api_post(client, api_headers(author), status="draft")
    login(client, "formal")
    token = form_token(client, f"/posts/{draft['id']}/edit")
    made = client.post(f"/posts/{draft['id']}/review-links", data={"csrf_token": token})
    assert "Review link (shown once" in made.text
    assert "Revoke" in made.text


# ---------------------------------------------------------------- across worker processes


@pytest.mark.server
def test_a_scheduled_post_goes_live_on_every_worker_at_once(empty_database_url, tmp_path):
    """Two workers, each with its page cache warm, read one clock: when it reaches the post's
    moment, both show it on the next request, and neither a moment before."""
    import httpx

    from tests.support.clock import ClockFile
    from tests.support.load import register
    from tests.support.server import migrate
    from tests.support.server_group import separate_workers

    migrate(empty_database_url)
    clock = ClockFile(tmp_path / "clock")
    with separate_workers(empty_database_url, tmp_path / "media", 2, clock.path) as workers:
        token = register(workers[0].base_url, "timely")
        headers = {"Authorization": f"Bearer {token}"}
        when = clock.moment + timedelta(minutes=10)
        body = {
            "title": "On the hour",
            "content": "Now.",
            "status": "scheduled",
            "published_at": when.isoformat(),
            "tags": ["Punctual"],
        }
        created = httpx.post(f"{workers[0].base_url}/api/posts", json=body, headers=headers)
        assert created.status_code == 201, created.text
        address = f"/posts/{created.json()['id']}/"

        def shown(paths: tuple[str, ...]) -> list[bool]:
            return [address in httpx.get(w.base_url + p).text for w in workers for p in paths]

        paths = ("/", "/feed.xml", "/tags/punctual", "/sitemap.xml")
        for _ in range(2):  # the second round is served from each worker's cache
            assert shown(("/", "/feed.xml", "/sitemap.xml")) == [False] * 6
        clock.advance(minutes=9, seconds=59)
        assert shown(("/", "/feed.xml", "/sitemap.xml")) == [False] * 6
        clock.advance(seconds=1)
        assert shown(paths) == [True] * 8


def test_the_account_page_sets_the_time_zone(client, make_account, db):
    from tests.support.accounts import login

    user = make_account("traveller")
    login(client, "traveller")
    token = form_token(client, "/account")
    refused = client.post(
        "/account/timezone", data={"timezone": "Mars/Olympus", "csrf_token": token}
    )
    assert refused.status_code == 422
    assert "Choose a time zone from the list" in refused.text
    saved = client.post("/account/timezone", data={"timezone": "Asia/Tokyo", "csrf_token": token})
    assert "Your time zone has been saved." in saved.text
    assert "<option selected>Asia/Tokyo</option>" in saved.text
    db.expire_all()
    assert db.get(type(user), user.id).timezone == "Asia/Tokyo"


def test_the_api_sets_the_time_zone(client, make_user, api_headers):
    headers = api_headers(make_user("zoned"))
    changed = client.patch("/api/users/me", json={"timezone": "America/Chicago"}, headers=headers)
    assert changed.status_code == 200 and changed.json()["timezone"] == "America/Chicago"
    bad = client.patch("/api/users/me", json={"timezone": "Nowhere/At_All"}, headers=headers)
    assert bad.status_code == 422


# ---------------------------------------------------------------- hostile tags and slugs


def test_hostile_tag_names_run_nowhere(client, make_user, api_headers):
    """Every XSS payload as a tag name: the post, the tag's page, /tags, the home page and the
    tag feed show it as text, with nothing executable."""
    from xml.etree import ElementTree

    from tests.support.xss_tools import PAYLOADS, inspect_html

    headers = api_headers(make_user("hostile"))
    posts = []
    for start in range(0, len(PAYLOADS), 10):
        names = [payload[:40] for payload in PAYLOADS[start : start + 10]]
        created = client.post(
            "/api/posts",
            json={"title": "Tagged", "content": "Body.", "tags": names},
            headers=headers,
        )
        if created.status_code == 201:
            posts.append(created.json())
    assert len(posts) >= len(PAYLOADS) // 10
    pages = ["/", "/tags", *(f"/posts/{post['id']}" for post in posts)]
    tag_slugs = {tag["slug"] for tag in client.get("/api/tags").json()}
    pages += [f"/tags/{slug}" for slug in sorted(tag_slugs)[:40]]
    problems = []
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        _, found = inspect_html(response.text)
        problems += [(path, problem.message) for problem in found if problem.executable]
    for slug in sorted(tag_slugs)[:20]:
        ElementTree.fromstring(client.get(f"/tags/{slug}/feed.xml").content)  # well-formed
    assert problems == []


def test_search_pages_are_full_though_drafts_match(client, make_user, api_headers):
    """Drafts are left out by the search itself, so a page of results is a full page."""
    headers = api_headers(make_user("searcher"))
    for n in range(3):
        api_post(client, headers, title=f"Zeppelin draft {n}", status="draft")
    for n in range(3):
        api_post(client, headers, title=f"Zeppelin live {n}")
    found = client.get("/api/posts?q=zeppelin&per_page=3").json()
    assert sorted(post["title"] for post in found) == [f"Zeppelin live {n}" for n in range(3)]
