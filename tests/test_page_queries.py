"""SQL statements per page: constant, whatever the number of posts shown."""

import pytest
from sqlalchemy import event

from config import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Pages of 50 posts, so the statement-count test compares 1 against 50 rows.
    return settings.model_copy(update={"page_size": 50})


@pytest.mark.parametrize("page", ["home", "author"])
def test_page_statement_count_does_not_grow_with_posts(
    client, make_user, make_post, count_statements, page
):
    author = make_user()
    counts = []
    for total in (1, 50):
        while client.get("/api/posts?per_page=100").json().__len__() < total:
            # Home: a new author per post (a lazy author load would show); author page: one author.
            make_post(author if page == "author" else make_user())
        path = "/" if page == "home" else f"/users/{author.id}/posts"
        counter = count_statements()
        response = client.get(path)
        assert response.status_code == 200
        assert response.text.count('class="post-card"') == (
            total if page == "home" else min(total, 50)
        )
        counts.append(counter.count)
    assert counts[0] == counts[1]


def test_post_page_statement_count(client, make_post, count_statements):
    post = make_post()
    counter = count_statements()
    assert client.get(f"/posts/{post.id}/{post.slug}").status_code == 200
    # The content version, the post with its author, then its tags.
    assert counter.count == 3
    cached = count_statements()
    assert client.get(f"/posts/{post.id}/{post.slug}").status_code == 200
    assert cached.count == 1  # only the content version
    # The permanent short address is a redirect, cached like a page.
    assert client.get(f"/posts/{post.id}", follow_redirects=False).status_code == 301
    redirected = count_statements()
    assert client.get(f"/posts/{post.id}", follow_redirects=False).status_code == 301
    assert redirected.count == 1


def test_media_library_statement_count_does_not_grow_with_images(
    client, make_user, make_post, browser_session, api_headers, count_statements
):
    from tests.support.images import varied_png

    author = make_user()
    headers = api_headers(author)
    browser_session(client, author)
    counts = []
    for total in (1, 6):
        while len(client.get("/api/media?per_page=100", headers=headers).json()) < total:
            number = len(client.get("/api/media?per_page=100", headers=headers).json())
            files = {"file": ("a.png", varied_png(f"library{number}"), "image/png")}
            body = client.post("/api/media", files=files, headers=headers).json()
            # Each image shown in a post of its own and in someone else's.
            make_post(author, content=body["markdown"])
            make_post(make_user(), content=body["markdown"])
        counter = count_statements()
        response = client.get("/account/media")
        assert response.status_code == 200
        assert response.text.count('class="media-item"') == total
        counts.append(counter.count)
    assert counts[0] == counts[1]


def test_a_signed_in_read_is_one_transaction_and_a_write_keeps_its_own(
    app, client, make_post, browser_session, api_headers
):
    post = make_post()
    browser_session(client, post.author)
    headers = api_headers(post.author)
    # Each transaction takes a connection from the pool and gives it back when it ends.
    begun: list[object] = []

    def checked_out(*connection: object) -> None:
        begun.append(connection)

    pool = app.state.database.engine.pool
    event.listen(pool, "checkout", checked_out)
    try:
        assert client.get("/").status_code == 200
        assert len(begun) == 1  # who is signed in, then the page, in the same transaction
        client.cookies.clear()
        begun.clear()
        assert client.get(f"/api/posts/{post.id}", headers=headers).status_code == 200
        assert len(begun) == 1
        begun.clear()
        edit = client.patch(f"/api/posts/{post.id}", json={"title": "New"}, headers=headers)
        assert edit.status_code == 200
        # The token's read ends before the write begins, so the write lock is not held
        # while the token is looked up.
        assert len(begun) == 2
    finally:
        event.remove(pool, "checkout", checked_out)
