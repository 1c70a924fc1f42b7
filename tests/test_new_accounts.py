"""What a new account may post: a few posts in its first day, through the API, the editor
and an import alike, and nothing at all once suspended."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from config import NewAccountLimit
from models import ADMIN_ROLE, Post, User
from services import moderation, posts
from services.errors import ThrottledError
from tests.support.accounts import form_token
from tests.support.archives import zip_of
from tests.support.smtp import wait_until

LIMIT = 2
DAY_SECONDS = 24 * 3600


@pytest.fixture
def settings(settings):
    return settings.model_copy(
        update={"new_account_post_limit": LIMIT, "new_account_period_hours": 24}
    )


def post_count(db, user) -> int:
    db.rollback()  # a fresh read: the request's writes must be visible
    return db.scalar(select(func.count(Post.id)).where(Post.user_id == user.id))


def write(client, headers, title: str):
    return client.post("/api/posts", json={"title": title, "content": "Hello"}, headers=headers)


def test_a_new_account_writes_a_few_posts_on_its_first_day(
    client, db, clock, make_user, api_headers
):
    author = make_user("newcomer")
    headers = api_headers(author)
    assert [write(client, headers, f"Post {n}").status_code for n in range(LIMIT)] == [201] * 2

    clock.advance(hours=1)
    refused = write(client, headers, "One too many")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == str(DAY_SECONDS - 3600)
    assert "new account" in refused.json()["detail"]
    assert post_count(db, author) == LIMIT

    clock.advance(hours=23)
    assert write(client, headers, "A day later").status_code == 201
    assert post_count(db, author) == LIMIT + 1


def test_an_older_account_and_an_admin_are_not_limited(client, clock, make_user, api_headers):
    veteran = make_user("veteran")
    admin = api_headers(make_user("boss", role=ADMIN_ROLE))
    clock.advance(days=2)
    older = api_headers(veteran)
    for headers in (older, admin):
        codes = [write(client, headers, f"Post {n}").status_code for n in range(LIMIT + 1)]
        assert codes == [201] * (LIMIT + 1)


def test_the_editor_keeps_the_text_when_the_limit_is_reached(
    client, db, clock, make_user, api_headers, browser_session
):
    author = make_user("eager")
    headers = api_headers(author)
    for n in range(LIMIT):
        write(client, headers, f"Post {n}")
    browser_session(client, author)
    form = {
        "csrf_token": form_token(client, "/posts/new"),
        "title": "My third thought",
        "content": "Words worth keeping",
        "status": "published",
    }
    response = client.post("/posts/new", data=form, follow_redirects=False)
    assert response.status_code == 429
    assert "A new account may write 2 posts in its first 24 hours" in response.text
    assert "Try again in 24 hours." in response.text
    assert "My third thought" in response.text
    assert "Words worth keeping" in response.text
    assert post_count(db, author) == LIMIT


def test_an_import_counts_against_the_limit_whole(client, db, clock, make_user, api_headers):
    author = make_user("mover")
    headers = api_headers(author)
    archive = zip_of({f"{n}.md": f"---\ntitle: Post {n}\n---\nText {n}" for n in range(LIMIT + 1)})
    files = {"file": ("posts.zip", archive, "application/zip")}

    refused = client.post("/api/users/me/import", files=files, headers=headers)
    assert refused.status_code == 409
    assert "This import brings 3, so nothing was imported." in refused.json()["detail"]
    assert post_count(db, author) == 0

    clock.advance(days=1, seconds=1)
    accepted = client.post("/api/users/me/import", files=files, headers=headers)
    assert accepted.status_code == 200
    assert post_count(db, author) == LIMIT + 1


def test_a_suspended_author_cannot_post_with_a_token_they_held(client, db, make_user, api_headers):
    admin = make_user("warden", role=ADMIN_ROLE)
    author = make_user("spammer")
    headers = api_headers(author)
    moderation.suspend(db, admin=admin, user=author, reason="Spam")

    assert write(client, headers, "Buy now").status_code == 401
    assert post_count(db, author) == 0


def waiting_on_a_lock(database) -> int:
    with database.session(write=False) as session:
        query = text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return session.scalar(query)


# Two requests at once are serialised by SQLite's write lock anyway; on PostgreSQL the
# account's row lock does it.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_posts_at_once_cannot_both_take_the_last_one_left(app, make_user):
    database = app.state.database
    author_id = make_user("racer").id
    limit = NewAccountLimit(posts=1, period=timedelta(hours=24))
    first, second = database.session(write=True), database.session(write=True)
    outcome: list[str] = []

    def the_other_post() -> None:
        try:
            posts.count_new_account_posts(second, author=second.get(User, author_id), limit=limit)
            outcome.append("counted")
        except ThrottledError:
            outcome.append("refused")
        finally:
            second.rollback()

    try:
        posts.count_new_account_posts(first, author=first.get(User, author_id), limit=limit)
        racer = threading.Thread(target=the_other_post)
        racer.start()
        wait_until(lambda: waiting_on_a_lock(database) == 1)  # the other one waits for this
        first.commit()
        racer.join()
    finally:
        first.close()
        second.close()
    assert outcome == ["refused"]
