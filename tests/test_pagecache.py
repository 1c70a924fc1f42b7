"""Cached pages for anonymous readers: cheaper, and never stale."""

import asyncio
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from database import Database, OneRowRead
from main import create_app
from models import SiteState
from services import validity
from services.validity import invalidate_author
from tests.support.accounts import PASSWORD
from tests.support.server import migrate, running_server
from web import pagecache
from web.pagecache import PageCache


def test_repeat_view_is_served_from_cache_with_one_statement(client, make_post, count_statements):
    make_post(title="Cached title")
    first = client.get("/")
    counter = count_statements()
    second = client.get("/")
    assert second.text == first.text
    assert counter.count == 1
    assert "set-cookie" not in second.headers


def test_a_write_through_another_process_is_seen_on_the_next_request(
    client, settings, make_user, api_headers
):
    """Two app instances with their own caches share one database, as two workers do."""
    author = make_user("writer")
    assert "Nothing here yet" in client.get("/").text
    with TestClient(create_app(settings)) as other_worker:
        for n in range(3):
            created = other_worker.post(
                "/api/posts",
                json={"title": f"Fresh {n}", "content": "New."},
                headers=api_headers(author),
            )
            assert created.status_code == 201
            assert f"Fresh {n}" in client.get("/").text
        other_worker.patch(
            "/api/users/me", json={"username": "renamed"}, headers=api_headers(author)
        )
    assert ">renamed</a>" in client.get("/").text


def test_logged_in_pages_are_not_shared(client, make_user, make_post, browser_session):
    make_post(title="Shared post")
    anonymous = client.get("/").text
    browser_session(client, make_user("reader"))
    personal = client.get("/").text
    assert "Log out</button>" in personal and "Log out</button>" not in anonymous
    client.cookies.clear()
    assert client.get("/").text == anonymous


def test_a_deleted_post_disappears_at_once(client, make_post, api_headers):
    post = make_post(title="Short-lived")
    assert client.get(f"/posts/{post.id}").status_code == 200
    assert "Short-lived" in client.get("/").text
    client.delete(f"/api/posts/{post.id}", headers=api_headers(post.author))
    assert client.get(f"/posts/{post.id}").status_code == 404
    assert "Short-lived" not in client.get("/").text


@pytest.mark.server
def test_two_worker_processes_never_serve_a_stale_home_page(empty_database_url, tmp_path):
    migrate(empty_database_url)
    with running_server(empty_database_url, tmp_path / "media", workers=2) as base_url:
        account = {"username": "fresh", "email": "f@example.com", "password": PASSWORD}
        httpx.post(f"{base_url}/api/users", json=account)
        token = httpx.post(
            f"{base_url}/api/token", data={"username": "fresh", "password": PASSWORD}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        for n in range(20):
            # A new connection each time, so both workers serve (and cache) the home page.
            with httpx.Client(base_url=base_url, headers={"Connection": "close"}) as reader:
                assert reader.get("/").status_code == 200
                created = httpx.post(
                    f"{base_url}/api/posts",
                    json={"title": f"Visible at once {n}", "content": "x"},
                    headers=headers,
                )
                assert created.status_code == 201
                assert f"Visible at once {n}" in reader.get("/").text


def test_anonymous_api_reads_are_cached_and_fresh(
    client, settings, make_user, api_headers, count_statements
):
    author = make_user("apiwriter")
    assert client.get("/api/posts").json() == []
    counter = count_statements()
    assert client.get("/api/posts").json() == []
    assert counter.count == 1
    with TestClient(create_app(settings)) as other_worker:
        created = other_worker.post(
            "/api/posts", json={"title": "Seen", "content": "x"}, headers=api_headers(author)
        )
    listed = client.get("/api/posts")
    assert [post["title"] for post in listed.json()] == ["Seen"]
    etag = client.get(f"/api/posts/{created.json()['id']}").headers["etag"]
    cached = client.get(f"/api/posts/{created.json()['id']}", headers={"If-None-Match": etag})
    assert cached.status_code == 304


def test_requests_with_credentials_or_a_csrf_seed_bypass_the_cache(
    client, make_user, api_headers, count_statements
):
    user = make_user("me")
    client.get("/api/posts")
    counter = count_statements()
    client.get("/api/posts", headers=api_headers(user))
    assert counter.count > 1  # the token lookup and the listing itself ran
    login_page = client.get("/login")  # sets this visitor's CSRF seed cookie
    assert "inkwell_csrf" in login_page.headers.get("set-cookie", "")
    again = client.get("/login")
    assert "set-cookie" not in again.headers
    # Another visitor gets their own seed, not a copy of this visitor's page.
    client.cookies.clear()
    fresh = client.get("/login")
    assert "inkwell_csrf" in fresh.headers.get("set-cookie", "")


def _page(post) -> str:
    return f"/posts/{post.id}/{post.slug}"


def test_a_new_post_leaves_other_post_pages_cached(
    client, settings, make_post, api_headers, count_statements
):
    post = make_post(title="Old news")
    page, api = client.get(_page(post)), client.get(f"/api/posts/{post.id}")
    with TestClient(create_app(settings)) as other_worker:
        created = other_worker.post(
            "/api/posts",
            json={"title": "Breaking", "content": "x"},
            headers=api_headers(post.author),
        )
        assert created.status_code == 201
    counter = count_statements()
    assert client.get(_page(post)).text == page.text
    assert client.get(f"/api/posts/{post.id}").json() == api.json()
    # Only each post's own stamp was read: both answers came from the cache.
    assert counter.count == 2
    assert "Breaking" in client.get("/").text


def test_a_post_page_follows_its_post_and_author_at_once(client, settings, make_post, api_headers):
    post = make_post(title="Before the edit")
    headers = api_headers(post.author)
    assert "Before the edit" in client.get(_page(post)).text
    assert client.get(f"/api/posts/{post.id}").json()["title"] == "Before the edit"
    with TestClient(create_app(settings)) as other_worker:
        edited = other_worker.patch(
            f"/api/posts/{post.id}", json={"title": "After the edit"}, headers=headers
        )
        assert edited.status_code == 200
        assert "After the edit" in client.get(_page(post)).text
        assert client.get(f"/api/posts/{post.id}").json()["title"] == "After the edit"
        other_worker.patch("/api/users/me", json={"username": "renamed"}, headers=headers)
        assert ">renamed</a>" in client.get(_page(post)).text
        assert client.get(f"/api/posts/{post.id}").json()["author"]["username"] == "renamed"
        other_worker.patch(f"/api/posts/{post.id}", json={"status": "draft"}, headers=headers)
    assert client.get(_page(post)).status_code == 404
    assert client.get(f"/api/posts/{post.id}").status_code == 404


def test_invalidating_an_author_makes_only_their_pages_stale(
    client, db, make_user, make_post, count_statements
):
    hidden, other = make_post(author=make_user("hidden")), make_post(author=make_user("other"))
    for path in (_page(hidden), _page(other), "/"):
        client.get(path)
    invalidate_author(db, user_id=hidden.author.id)
    db.commit()
    unchanged = count_statements()
    client.get(_page(other))
    assert unchanged.count == 1
    for path in (_page(hidden), "/"):
        rebuilt = count_statements()
        assert client.get(path).status_code == 200
        assert rebuilt.count > 1, path


def test_a_scheduled_post_page_appears_at_its_moment(client, make_user, api_headers, clock):
    author = make_user("planner")
    created = client.post(
        "/api/posts",
        json={
            "title": "Later",
            "content": "x",
            "status": "scheduled",
            "published_at": (clock.moment + timedelta(minutes=5)).isoformat(),
        },
        headers=api_headers(author),
    ).json()
    path = f"/posts/{created['id']}/{created['slug']}"
    assert client.get(path).status_code == 404
    clock.advance(minutes=5)
    assert "Later" in client.get(path).text
    assert f"/posts/{created['id']}/" in client.get("/").text


def test_the_cache_keeps_to_its_byte_budget_dropping_the_least_recent():
    cache = PageCache(max_bytes=10_000)
    body = b"x" * 3000
    for n in range(10):
        cache.put(f"/page/{n}", (1,), (200, [], body))
        assert cache.get("/page/0", (1,)) is not None  # used after every write: kept
    assert cache.size_in_bytes <= 10_000
    assert cache.get("/page/9", (1,)) is not None
    assert cache.get("/page/1", (1,)) is None


def test_a_page_from_an_older_version_is_dropped_when_met():
    cache = PageCache()
    cache.put("/", (1,), (200, [(b"etag", b'"a"')], b"old"))
    assert cache.size_in_bytes > 0
    assert cache.get("/", (2,)) is None
    assert cache.size_in_bytes == 0
    cache.put("/", (2,), (200, [], b"new"))
    cache.put("/", (2,), (200, [], b"newer"))
    assert cache.size_in_bytes == len("/") + len(b"newer")


def test_the_version_is_read_off_the_event_loop_on_postgresql(
    client, backend, make_post, monkeypatch
):
    make_post(title="Waiting on the network")
    read_inside_event_loop: list[bool] = []
    read = pagecache.content_version

    def watched(engine):
        read_inside_event_loop.append(asyncio_running())
        return read(engine)

    monkeypatch.setattr(pagecache, "content_version", watched)
    assert client.get("/").status_code == 200
    assert client.get("/").status_code == 200
    # SQLite reads a local file, quicker inline; PostgreSQL waits on a socket.
    assert read_inside_event_loop == [backend == "sqlite"] * 2


def asyncio_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_the_stamps_read_past_the_orm_are_what_the_orm_reads(app, db, make_post, clock):
    """The page cache reads its stamps on raw DBAPI connections (database.OneRowRead): the
    values must be typed as SQLAlchemy would give them, or no stamp would ever match."""
    post = make_post()
    stamps = validity.StampReads(app.state.database)
    site = stamps.site()
    assert site is not None
    with app.state.database.engine.connect() as connection:
        assert site == tuple(connection.execute(validity.SITE_STAMP, {"now": clock.moment}).one())
    assert isinstance(site[1], datetime) and site[1].tzinfo is not None
    db.refresh(post)
    assert stamps.post(post.id) == validity.post_stamp_of(post)
    assert stamps.post(post.id + 1000) is None


def test_a_stamp_read_that_fails_is_a_dbapi_error_and_tells_its_observers(app):
    database = app.state.database
    statement = select(text("missing_column")).select_from(SiteState)
    broken = OneRowRead(database, statement)
    seen: list[str] = []
    database.statement_observers.append(seen.append)
    try:
        with pytest.raises(DBAPIError):
            broken()
    finally:
        database.statement_observers.remove(seen.append)
    assert seen == [str(statement.compile(dialect=database.engine.dialect))]
    # The connection went back to the pool in working order.
    assert validity.StampReads(database).site() is not None


def test_a_stamp_read_without_a_database_is_a_dbapi_error(tmp_path):
    # What the pool raises when it cannot connect is the driver's own error.
    unreachable = Database(f"sqlite:///{tmp_path}/no-such-folder/inkwell.db")
    with pytest.raises(DBAPIError) as raised:
        validity.StampReads(unreachable).site()
    assert raised.value.statement is None  # a connection failure: the error handlers retry
