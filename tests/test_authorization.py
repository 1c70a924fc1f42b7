"""Every state-changing route, page and API, for an anonymous visitor, another user and the
author: the expected status, and the data unchanged wherever the request is refused."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import pytest
from sqlalchemy import select

from config import utcnow
from models import Post, RecoveryCode, ReviewLink, User
from services.passwords import hash_password
from services.reviews import create_review_link
from tests.support.accounts import PASSWORD, form_token
from tests.support.two_factor import SECRET, code_at, enable_two_factor


@cache
def password_hash() -> str:
    """One hash for every account here (hashing is deliberately slow)."""
    return hash_password(PASSWORD)


def post_time():
    return utcnow()


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: dict
    kind: str  # "page" (form + CSRF) or "api" (JSON + bearer token)
    expected: dict  # actor -> status
    # The post's status: a draft is hidden from everyone but its author (404, not 403).
    post_status: str = "published"
    # Arranges the acting user's account (the author's, for an anonymous visitor) and gives
    # the body fields only that account could know, such as a current two-factor code.
    prepare: Callable[[object, User], dict] | None = None


def pending_two_factor(db, user: User) -> dict:
    user.totp_pending_secret = SECRET
    db.commit()
    return {"code": code_at(SECRET, utcnow())}


def with_two_factor(db, user: User) -> dict:
    enable_two_factor(db, user)
    # The set-up used this moment's code; the next one is as good for a while.
    return {"code": code_at(SECRET, utcnow(), 1), "password": PASSWORD}


def renewing_codes(db, user: User) -> dict:
    return {"current_code": with_two_factor(db, user)["code"]}


TWO_FACTOR_DONE = {"anonymous": 303, "other": 200, "author": 200}


PAGE_AUTHOR_ONLY = {"anonymous": 303, "other": 403, "author": 303}
PAGE_SELF = {"anonymous": 303, "other": 303, "author": 303}
API_AUTHOR_ONLY = {"anonymous": 401, "other": 403, "author": None}

CASES = [
    Case(
        "POST",
        "/posts/{post}/edit",
        {"title": "Changed", "content": "Changed", "version": "1"},
        "page",
        PAGE_AUTHOR_ONLY,
    ),
    Case("POST", "/posts/{post}/delete", {}, "page", PAGE_AUTHOR_ONLY),
    Case("POST", "/posts/new", {"title": "New", "content": "New"}, "page", PAGE_SELF),
    Case(
        "POST",
        "/account",
        {"username": "renamed", "email": "renamed@example.com", "password": PASSWORD},
        "page",
        PAGE_SELF,
    ),
    Case(
        "PUT",
        "/api/posts/{post}",
        {"title": "Changed", "content": "Changed"},
        "api",
        {**API_AUTHOR_ONLY, "author": 200},
    ),
    Case(
        "PATCH",
        "/api/posts/{post}",
        {"title": "Changed"},
        "api",
        {**API_AUTHOR_ONLY, "author": 200},
    ),
    Case("DELETE", "/api/posts/{post}", {}, "api", {**API_AUTHOR_ONLY, "author": 204}),
    Case(
        "POST",
        "/api/posts",
        {"title": "New", "content": "New"},
        "api",
        {"anonymous": 401, "other": 201, "author": 201},
    ),
    Case(
        "PATCH",
        "/api/users/{author}",
        {"username": "renamed"},
        "api",
        {**API_AUTHOR_ONLY, "author": 200},
    ),
    Case(
        "DELETE",
        "/api/users/{author}",
        {"password": PASSWORD},
        "api",
        {**API_AUTHOR_ONLY, "author": 204},
    ),
    Case(
        "PATCH",
        "/api/users/me",
        {"username": "renamed"},
        "api",
        {"anonymous": 401, "other": 200, "author": 200},
    ),
    Case(
        "DELETE",
        "/api/users/me",
        {"password": PASSWORD},
        "api",
        {"anonymous": 401, "other": 204, "author": 204},
    ),
    Case("DELETE", "/api/token", {}, "api", {"anonymous": 401, "other": 204, "author": 204}),
    Case(
        "POST",
        "/posts/{post}/review-links",
        {},
        "page",
        {"anonymous": 303, "other": 404, "author": 303},
        "draft",
    ),
    Case(
        "POST",
        "/posts/{post}/review-links/{link}/revoke",
        {},
        "page",
        {"anonymous": 303, "other": 404, "author": 303},
        "draft",
    ),
    Case(
        "POST",
        "/posts/{post}/edit",
        {"title": "Changed", "content": "Changed", "version": "1", "status": "published"},
        "page",
        {"anonymous": 303, "other": 404, "author": 303},
        "draft",
    ),
    Case("POST", "/account/timezone", {"timezone": "Asia/Tokyo"}, "page", PAGE_SELF),
    Case(
        "POST",
        "/api/posts/{post}/review-links",
        {},
        "api",
        {"anonymous": 401, "other": 404, "author": 201},
        "draft",
    ),
    Case(
        "DELETE",
        "/api/posts/{post}/review-links/{link}",
        {},
        "api",
        {"anonymous": 401, "other": 404, "author": 204},
        "draft",
    ),
    Case(
        "PATCH",
        "/api/posts/{post}",
        {"status": "published"},
        "api",
        {"anonymous": 401, "other": 404, "author": 200},
        "draft",
    ),
    Case("POST", "/account/two-factor/setup", {}, "page", PAGE_SELF),
    Case(
        "POST",
        "/account/two-factor/confirm",
        {},
        "page",
        TWO_FACTOR_DONE,
        "published",
        pending_two_factor,
    ),
    Case(
        "POST",
        "/account/two-factor/recovery-codes",
        {},
        "page",
        TWO_FACTOR_DONE,
        "published",
        renewing_codes,
    ),
    Case(
        "POST", "/account/two-factor/disable", {}, "page", PAGE_SELF, "published", with_two_factor
    ),
    # The code step answers only a pending login: a session, or none, gets the log-in page.
    Case("POST", "/login/code", {"code": "123456"}, "page", PAGE_SELF),
]


def snapshot(db) -> tuple:
    db.commit()  # end the read transaction: on SQLite it would keep showing an old snapshot
    db.expire_all()
    users = db.execute(
        select(
            User.id,
            User.username,
            User.email,
            User.timezone,
            User.totp_secret,
            User.totp_pending_secret,
            User.totp_last_step,
        ).order_by(User.id)
    ).all()
    posts = db.execute(
        select(Post.id, Post.title, Post.content, Post.status).order_by(Post.id)
    ).all()
    links = db.scalars(select(ReviewLink.id).order_by(ReviewLink.id)).all()
    codes = db.scalars(select(RecoveryCode.code_hash).order_by(RecoveryCode.id)).all()
    return tuple(users), tuple(posts), tuple(links), tuple(codes)


@pytest.mark.parametrize("actor", ["anonymous", "other", "author"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
def test_authorization_matrix(
    client, db, make_user, make_post, browser_session, api_headers, case, actor
):
    author = make_user("author", password_hash=password_hash())
    other = make_user("other", password_hash=password_hash())
    published_at = None if case.post_status == "draft" else post_time()
    post = make_post(
        author,
        title="Original",
        content="Original",
        status=case.post_status,
        published_at=published_at,
    )
    link_id = 0
    if "{link}" in case.path:
        link_id = create_review_link(db, post=post)[0].id
    path = case.path.format(post=post.id, author=author.id, link=link_id)
    user = {"author": author, "other": other}.get(actor)
    body = {**case.body, **(case.prepare(db, user or author) if case.prepare else {})}
    before = snapshot(db)

    if case.kind == "page":
        if user:
            browser_session(client, user)
        # A valid token for this client, so only authorisation can refuse the request.
        data = {**body, "csrf_token": form_token(client, "/" if user else "/login")}
        response = client.request(case.method, path, data=data, follow_redirects=False)
    else:
        headers = api_headers(user) if user else {}
        response = client.request(case.method, path, json=body or None, headers=headers)

    assert response.status_code == case.expected[actor], response.text
    if actor == "anonymous" and case.kind == "page":
        assert "/login" in response.headers["location"]
    refused = response.status_code in {401, 403, 404} or (actor == "anonymous")
    if refused:
        assert snapshot(db) == before
    elif case.path.startswith(("/posts/{post}", "/api/posts/{post}", "/account/")):
        assert snapshot(db) != before


def test_edit_and_delete_controls_only_for_the_author(
    client, make_user, make_post, browser_session
):
    author = make_user("author")
    post = make_post(author)
    page = client.get(f"/posts/{post.id}").text
    assert f"/posts/{post.id}/edit" not in page
    browser_session(client, make_user("other"))
    assert f"/posts/{post.id}/edit" not in client.get(f"/posts/{post.id}").text
    assert client.get(f"/posts/{post.id}/edit").status_code == 403
    assert client.get(f"/posts/{post.id}/delete").status_code == 403
    browser_session(client, author)
    page = client.get(f"/posts/{post.id}").text
    assert f"/posts/{post.id}/edit" in page and f"/posts/{post.id}/delete" in page


def test_revoked_token_no_longer_works(client, make_user, api_headers):
    headers = api_headers(make_user())
    assert client.get("/api/users/me", headers=headers).status_code == 200
    assert client.delete("/api/token", headers=headers).status_code == 204
    response = client.get("/api/users/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_browser_session_is_not_an_api_token(client, make_user, browser_session):
    token = browser_session(client, make_user())
    response = client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
