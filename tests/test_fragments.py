"""Listings assembled from cached post entries: each entry rendered once per version of
its post, reused by every listing and reader, and re-rendered when what it shows changes."""

import re
from datetime import timedelta

from models import Post
from schemas import PostUpdate
from services import posts
from services.validity import invalidate_author
from tests.conftest import commit_as_writer
from web.fragments import FragmentCache

# The statement that loads whole posts (title, text …) for entries that must be rendered.
LOADS_POSTS = re.compile(r"SELECT posts\.id, posts\.title\b.*\bWHERE posts\.id IN", re.S)


def _post_loads(counter) -> list[str]:
    return [statement for statement in counter.statements if LOADS_POSTS.search(statement)]


def _entry_of(page: str, post_id: int) -> str:
    """The markup of the entry linking to post `post_id` in a listing page."""
    entries = re.findall(r'<article class="post-card">.*?</article>', page, re.S)
    return next(entry for entry in entries if f"/posts/{post_id}/" in entry)


def test_a_listing_miss_loads_no_post_whose_entry_is_cached(client, make_post, count_statements):
    posts = [make_post() for _ in range(3)]
    first = count_statements()
    assert client.get("/").status_code == 200
    assert len(_post_loads(first)) == 1  # rendered once, from posts loaded together
    counter = count_statements()
    # A URL the page cache has never seen: the page is made again, from cached entries.
    page = client.get("/?from=elsewhere")
    assert page.status_code == 200
    assert all(post.title in page.text for post in posts)
    assert _post_loads(counter) == []


def test_an_edit_renders_again_only_the_edited_posts_entry(
    client, make_post, api_headers, count_statements
):
    author_post, *others = [make_post() for _ in range(3)]
    headers = api_headers(author_post.author)
    client.get("/")
    response = client.patch(
        f"/api/posts/{author_post.id}", json={"title": "A better title"}, headers=headers
    )
    assert response.status_code == 200
    counter = count_statements()
    page = client.get("/").text
    assert "A better title" in _entry_of(page, author_post.id)
    assert author_post.title not in page
    assert all(other.title in page for other in others)
    [load] = _post_loads(counter)
    assert load.count("?") + load.count("%(") == 1  # one post id asked for


def test_a_logged_in_reader_gets_the_same_entries_as_everyone(
    client, make_post, make_user, browser_session
):
    post = make_post()
    anonymous = _entry_of(client.get("/").text, post.id)
    browser_session(client, make_user())
    logged_in = client.get("/").text
    assert 'action="http://testserver/logout"' in logged_in or "Log out" in logged_in
    assert _entry_of(logged_in, post.id) == anonymous
    assert "csrf" not in anonymous


def test_entries_are_kept_per_origin(client, make_post):
    post = make_post()
    here = client.get("/").text
    there = client.get("/", headers={"Host": "localhost"}).text
    assert "http://localhost/posts/" in _entry_of(there, post.id)
    assert "http://localhost/" not in _entry_of(here, post.id)


def test_an_entry_follows_its_authors_name_and_picture(client, db, make_post):
    post = make_post()
    client.get("/")
    author = post.author
    author.username = "renamed-author"
    author.image_file = "0123456789abcdef.png"
    invalidate_author(db, user_id=author.id)
    commit_as_writer(db, author)
    entry = _entry_of(client.get("/?after=rename").text, post.id)
    assert "renamed-author" in entry
    assert "profile_pics/0123456789abcdef.png" in entry


def test_a_scheduled_entry_loses_its_badge_when_its_moment_comes(
    client, clock, make_user, browser_session, api_headers
):
    author = make_user()
    browser_session(client, author)
    scheduled = client.post(
        "/api/posts",
        json={
            "title": "Comes out later",
            "content": "Soon.",
            "status": "scheduled",
            "published_at": (clock.moment + timedelta(hours=1)).isoformat(),
        },
        headers=api_headers(author),
    ).json()
    before = _entry_of(client.get("/drafts").text, scheduled["id"])
    assert "Scheduled" in before
    clock.advance(hours=1, minutes=1)
    after = _entry_of(client.get("/drafts").text, scheduled["id"])
    assert "Scheduled" not in after
    assert scheduled["title"] in _entry_of(client.get("/").text, scheduled["id"])


def test_a_deleted_post_leaves_the_listings_at_once(client, make_post, api_headers):
    kept, deleted = make_post(), make_post()
    client.get("/")
    response = client.delete(f"/api/posts/{deleted.id}", headers=api_headers(deleted.author))
    assert response.status_code == 204
    page = client.get("/?after=delete").text
    assert f"/posts/{deleted.id}/" not in page
    assert f"/posts/{kept.id}/" in page


def test_the_fragment_cache_keeps_to_its_byte_budget():
    from markupsafe import Markup

    cache = FragmentCache(max_bytes=10_000)
    for n in range(10):
        cache.put(("entry", n), (n,), Markup("x" * 3000))
        assert cache.get(("entry", 0), (0,)) is not None  # used after every store: kept
    assert cache.size_in_bytes <= 10_000
    assert cache.get(("entry", 9), (9,)) is not None
    assert cache.get(("entry", 1), (1,)) is None
    assert cache.get(("entry", 9), (10,)) is None  # a newer stamp: the old entry is gone
    assert cache.get(("entry", 9), (9,)) is None


def test_the_api_list_is_assembled_from_each_posts_cached_json(
    client, db, make_post, api_headers, count_statements
):
    edited, other = make_post(), make_post()
    headers = api_headers(edited.author)
    first = count_statements()
    listed = client.get("/api/posts", headers=headers).json()
    assert [post["id"] for post in listed] == [other.id, edited.id]
    assert len(_post_loads(first)) == 1
    warm = count_statements()
    assert client.get("/api/posts", headers=headers).json() == listed
    assert _post_loads(warm) == []
    # Changed elsewhere (a form, an import): the list renders that post again, alone.
    posts.update_post(db, post=db.get(Post, other.id), data=PostUpdate(title="Retitled"))
    after_change = count_statements()
    relisted = client.get("/api/posts", headers=headers).json()
    assert relisted[0]["title"] == "Retitled"
    assert relisted[1] == listed[1]
    [load] = _post_loads(after_change)
    assert load.count("?") + load.count("%(") == 1
    # Changed through the API: its answer is the JSON the list goes on to serve.
    changed = client.patch(
        f"/api/posts/{edited.id}", json={"content": "New words."}, headers=headers
    )
    assert changed.status_code == 200
    after_edit = count_statements()
    relisted = client.get("/api/posts", headers=headers).json()
    assert relisted[1] == changed.json()
    assert relisted[1]["content"] == "New words."
    assert _post_loads(after_edit) == []


def test_a_posts_cached_json_follows_its_edits_status_and_origin(
    client, clock, make_user, api_headers
):
    author = make_user()
    headers = api_headers(author)
    due = (clock.moment + timedelta(minutes=5)).isoformat()
    created = client.post(
        "/api/posts",
        json={"title": "Later", "content": "x", "status": "scheduled", "published_at": due},
        headers=headers,
    ).json()
    path = f"/api/posts/{created['id']}"
    assert client.get(path, headers=headers).json()["status"] == "scheduled"
    clock.advance(minutes=5)
    assert client.get(path, headers=headers).json()["status"] == "published"
    client.patch(path, json={"title": "Now"}, headers=headers)
    assert client.get(path, headers=headers).json()["title"] == "Now"
    elsewhere = client.get(path, headers={**headers, "Host": "localhost"}).json()
    assert elsewhere["url"].startswith("http://localhost/posts/")
    assert client.get(path, headers=headers).json()["url"].startswith("http://testserver/")


def _article_of(page: str) -> str:
    return re.search(r'<article class="post">.*?</article>', page, re.S).group(0)


def test_a_post_page_reuses_its_article_for_every_reader_and_adds_the_authors_actions(
    client, make_post, make_user, browser_session
):
    post = make_post()
    path = f"/posts/{post.id}/{post.slug}"
    anonymous = client.get(path).text
    browser_session(client, make_user())
    reader = client.get(path).text
    browser_session(client, post.author)
    author = client.get(path).text
    assert _article_of(anonymous) == _article_of(reader) == _article_of(author)
    assert 'class="post-actions"' in author
    assert 'class="post-actions"' not in reader + anonymous
    assert f"/posts/{post.id}/edit" in author
    assert f"/posts/{post.id}/edit" not in _article_of(author)


def test_listings_and_post_reads_run_inline_on_sqlite_and_on_a_thread_on_postgresql(
    client, backend, make_post, api_headers, monkeypatch
):
    """Short indexed reads skip the hand-off to a worker thread where the database is a
    local file; across the network they must not hold up the event loop."""
    from services import listings
    from tests.test_pagecache import asyncio_running

    post = make_post()
    headers = api_headers(post.author)  # personal: the page cache never answers
    on_event_loop: list[bool] = []
    for module, name in ((listings, "list_entries"), (posts, "get_post")):
        original = getattr(module, name)

        def watched(*args, _original=original, **kwargs):
            on_event_loop.append(asyncio_running())
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, watched)
    for path in ("/", f"/posts/{post.id}/{post.slug}", "/api/posts", f"/api/posts/{post.id}"):
        assert client.get(path, headers=headers).status_code == 200
    assert on_event_loop == [backend == "sqlite"] * 4
    # A search ranks its matches, work that grows with the posts: always on a thread.
    on_event_loop.clear()
    search = posts.search_posts

    def watched_search(*args, **kwargs):
        on_event_loop.append(asyncio_running())
        return search(*args, **kwargs)

    monkeypatch.setattr(posts, "search_posts", watched_search)
    assert client.get("/api/posts?q=body", headers=headers).status_code == 200
    assert on_event_loop == [False]
