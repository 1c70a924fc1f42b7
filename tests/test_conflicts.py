"""No lost updates: edits made from the same version cannot silently overwrite each other."""

import html
import re

import pytest
from sqlalchemy import select

from models import Post
from schemas import PostUpdate
from services import posts
from services.errors import EditConflictError
from tests.support.accounts import form_token


@pytest.fixture
def post(make_user, make_post):
    return make_post(make_user("editor"), title="Original", content="Original text.")


def test_second_edit_from_the_same_version_gets_409(client, post, api_headers, db):
    headers = api_headers(post.author)
    version = client.get(f"/api/posts/{post.id}").json()["version"]
    first = client.patch(
        f"/api/posts/{post.id}", json={"title": "First", "version": version}, headers=headers
    )
    assert first.status_code == 200
    assert first.json()["version"] == version + 1
    second = client.patch(
        f"/api/posts/{post.id}", json={"title": "Second", "version": version}, headers=headers
    )
    assert second.status_code == 409
    db.commit()
    assert db.scalar(select(Post.title)) == "First"


def test_if_match_with_a_stale_etag_gets_412(client, post, api_headers, db):
    headers = api_headers(post.author)
    etag = client.get(f"/api/posts/{post.id}").headers["etag"]
    assert not etag.startswith("W/")
    body = {"title": "One", "content": "From client one."}
    first = client.put(f"/api/posts/{post.id}", json=body, headers={**headers, "If-Match": etag})
    assert first.status_code == 200
    assert first.headers["etag"] != etag
    body = {"title": "Two", "content": "From client two."}
    second = client.put(f"/api/posts/{post.id}", json=body, headers={**headers, "If-Match": etag})
    assert second.status_code == 412
    db.commit()
    assert db.scalar(select(Post.title)) == "One"


def test_etag_changes_when_the_author_is_renamed(client, post, api_headers):
    etag = client.get(f"/api/posts/{post.id}").headers["etag"]
    client.patch("/api/users/me", json={"username": "renamed"}, headers=api_headers(post.author))
    fresh = client.get(f"/api/posts/{post.id}", headers={"If-None-Match": etag})
    assert fresh.status_code == 200
    assert fresh.json()["author"]["username"] == "renamed"


def test_concurrent_commit_is_detected_by_the_version_column(app, backend, post):
    """Two transactions read version 1; the second UPDATE matches no row and is refused."""
    if backend == "sqlite":
        pytest.skip("SQLite writers start with BEGIN IMMEDIATE, so the second cannot read early")
    first = app.state.database.session(write=True)
    second = app.state.database.session(write=True)
    try:
        mine = posts.get_post(first, post_id=post.id)
        theirs = posts.get_post(second, post_id=post.id)
        posts.update_post(first, post=mine, data=PostUpdate(title="Mine"))
        with pytest.raises(EditConflictError):
            posts.update_post(second, post=theirs, data=PostUpdate(title="Theirs"))
    finally:
        first.close()
        second.close()


def test_edit_form_shows_the_conflict_and_keeps_the_users_text(
    client, post, browser_session, api_headers, db
):
    browser_session(client, post.author)
    form = client.get(f"/posts/{post.id}/edit").text
    version = re.search(r'name="version" value="(\d+)"', form).group(1)
    elsewhere = client.patch(
        f"/api/posts/{post.id}",
        json={"content": "Saved from another tab."},
        headers=api_headers(post.author),
    )
    assert elsewhere.status_code == 200
    mine = "My long careful rewrite.\n\n" + "Paragraph. " * 200
    response = client.post(
        f"/posts/{post.id}/edit",
        data={
            "title": "My title",
            "content": mine,
            "version": version,
            "csrf_token": form_token(client, f"/posts/{post.id}/edit"),
        },
    )
    assert response.status_code == 409
    assert "changed elsewhere" in response.text
    assert html.escape(mine) in response.text
    assert 'value="My title"' in response.text
    assert "Saved from another tab." in response.text
    db.commit()
    assert db.scalar(select(Post.content)) == "Saved from another tab."
    # Saving again from the re-rendered form (now at the current version) is deliberate.
    new_version = re.search(r'name="version" value="(\d+)"', response.text).group(1)
    again = client.post(
        f"/posts/{post.id}/edit",
        data={
            "title": "My title",
            "content": mine,
            "version": new_version,
            "csrf_token": form_token(client, "/"),
        },
        follow_redirects=False,
    )
    assert again.status_code == 303


@pytest.mark.parametrize(
    "version",
    ["0", "-1", "", "abc", "99999999999", "9" * 5000, "1.0", " 1", "\u0661", "00"],
    ids=[
        "zero",
        "negative",
        "empty",
        "word",
        "huge",
        "5000-digits",
        "decimal",
        "space",
        "arabic-one",
        "zeros",
    ],
)
def test_edit_form_with_a_version_the_server_never_sent_is_a_conflict(
    client, post, browser_session, api_headers, db, version
):
    """A newer version is stored; a version the form could not have carried saves nothing."""
    browser_session(client, post.author)
    newer = client.patch(
        f"/api/posts/{post.id}",
        json={"content": "Saved from another tab."},
        headers=api_headers(post.author),
    )
    assert newer.status_code == 200
    response = client.post(
        f"/posts/{post.id}/edit",
        data={
            "title": "Overwrite",
            "content": "This must not replace the newer text.",
            "version": version,
            "csrf_token": form_token(client, f"/posts/{post.id}/edit"),
        },
        follow_redirects=False,
    )
    assert response.status_code == 409
    assert "changed elsewhere" in response.text
    db.commit()
    assert db.execute(select(Post.title, Post.content)).one() == (
        "Original",
        "Saved from another tab.",
    )


def test_edit_form_without_a_version_field_is_a_conflict(client, post, browser_session, db):
    browser_session(client, post.author)
    response = client.post(
        f"/posts/{post.id}/edit",
        data={
            "title": "Overwrite",
            "content": "No version at all.",
            "csrf_token": form_token(client, f"/posts/{post.id}/edit"),
        },
        follow_redirects=False,
    )
    assert response.status_code == 409
    db.commit()
    assert db.scalar(select(Post.title)) == "Original"


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("version", [0, -1, 2**31])
def test_api_edit_with_an_impossible_version_is_422(client, post, api_headers, db, method, version):
    body = {"title": "Overwrite", "content": "Must not be saved.", "version": version}
    response = client.request(
        method, f"/api/posts/{post.id}", json=body, headers=api_headers(post.author)
    )
    assert response.status_code == 422
    assert all("version" in error["loc"] for error in response.json()["detail"])
    db.commit()
    assert db.scalar(select(Post.title)) == "Original"


def test_service_treats_version_zero_as_a_version(post, app):
    """0 is a version the client claims (and no post has), not "no version"."""
    session = app.state.database.session(write=True)
    try:
        mine = posts.get_post(session, post_id=post.id)
        with pytest.raises(EditConflictError):
            posts.update_post(session, post=mine, data=PostUpdate(title="Mine"), expected_version=0)
    finally:
        session.close()


def test_a_save_while_the_edit_renders_is_a_conflict(app, post, monkeypatch, db):
    """The edit's transaction ends before the (slow) rendering; a save landing just then
    must still refuse the edit, through the version its UPDATE names."""
    real_render = posts.rendered_fields

    def render_while_someone_saves(content: str) -> dict[str, object]:
        other = app.state.database.session(write=True)
        try:
            theirs = posts.get_post(other, post_id=post.id)
            posts.update_post(other, post=theirs, data=PostUpdate(title="Theirs"))
        finally:
            other.close()
        return real_render(content)

    monkeypatch.setattr(posts, "rendered_fields", render_while_someone_saves)
    session = app.state.database.session(write=True)
    try:
        mine = posts.get_post(session, post_id=post.id)
        with pytest.raises(EditConflictError):
            posts.update_post(session, post=mine, data=PostUpdate(content="Mine."))
    finally:
        session.close()
    db.commit()
    assert db.execute(select(Post.title, Post.content)).one() == ("Theirs", "Original text.")
