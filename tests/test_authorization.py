"""Every state-changing route, page and API, for an anonymous visitor, another user and the
author: the expected status, and the data unchanged wherever the request is refused."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

import pytest
from sqlalchemy import func, select

from config import utcnow
from models import MediaFile, OutboxMessage, Post, RecoveryCode, ReviewLink, Revision, User
from schemas import PostUpdate
from services import account_links
from services.passwords import hash_password
from services.posts import update_post
from services.reviews import create_review_link
from tests.support.accounts import PASSWORD, form_token
from tests.support.archives import zip_of
from tests.support.images import png_bytes, varied_png
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
    # Edited once before the request, so that it has two revisions (the first to restore).
    edited: bool = False
    # Open to anyone (a mailed link's token is the authority): the change must happen
    # whoever sends it, and no one is sent to the log-in page.
    public: bool = False


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
ANYONE = {"anonymous": 303, "other": 303, "author": 303}
NEW_PASSWORD = "a brand new passphrase"

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
    *(
        case
        for post_status in ("published", "draft")
        for case in (
            Case(
                "POST",
                "/posts/{post}/history/1/restore",
                {"version": "2"},
                "page",
                {"anonymous": 303, "other": 404, "author": 303},
                post_status,
                edited=True,
            ),
            Case(
                "POST",
                "/api/posts/{post}/revisions/1/restore",
                {},
                "api",
                {"anonymous": 401, "other": 404, "author": 200},
                post_status,
                edited=True,
            ),
        )
    ),
    Case("POST", "/account/verification", {}, "page", PAGE_SELF),
    Case("POST", "/password-reset", {"email": "author@example.com"}, "page", ANYONE, public=True),
    Case(
        "POST",
        "/password-reset/{reset}",
        {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
        "page",
        ANYONE,
        public=True,
    ),
    Case("POST", "/verify-email/{verify}", {}, "page", ANYONE, public=True),
    Case(
        "POST",
        "/api/password-reset",
        {"email": "author@example.com"},
        "api",
        {"anonymous": 202, "other": 202, "author": 202},
        public=True,
    ),
    Case(
        "POST",
        "/api/password-reset/confirm",
        {"token": "{reset}", "new_password": NEW_PASSWORD},
        "api",
        {"anonymous": 204, "other": 204, "author": 204},
        public=True,
    ),
    # The author's image (unused) and the one their post shows.
    Case(
        "DELETE", "/api/media/{media}", {}, "api", {**API_AUTHOR_ONLY, "other": 404, "author": 204}
    ),
    Case(
        "DELETE",
        "/api/media/{used_media}?force=true",
        {},
        "api",
        {**API_AUTHOR_ONLY, "other": 404, "author": 204},
    ),
    Case(
        "DELETE",
        "/api/media/{used_media}",
        {},
        "api",
        {**API_AUTHOR_ONLY, "other": 404, "author": 409},
    ),
    Case("POST", "/account/media/{media}/delete", {}, "page", {**PAGE_AUTHOR_ONLY, "other": 404}),
    Case(
        "POST",
        "/account/media/{used_media}/delete",
        {"confirm": "yes"},
        "page",
        {**PAGE_AUTHOR_ONLY, "other": 404},
    ),
    Case(
        "POST",
        "/account/media/{used_media}/delete",
        {},
        "page",
        {"anonymous": 303, "other": 404, "author": 409},
    ),
    Case("POST", "/api/media", {}, "upload", {"anonymous": 401, "other": 201, "author": 201}),
    Case("POST", "/account/media", {}, "page-upload", PAGE_SELF),
    Case(
        "POST",
        "/account/media/upload",
        {},
        "page-upload",
        {**PAGE_SELF, "other": 201, "author": 201},
    ),
    Case(
        "POST",
        "/posts/new",
        {"title": "T", "content": "C", "action": "insert_image"},
        "page-upload",
        {**PAGE_SELF, "other": 200, "author": 200},
    ),
    Case(
        "POST",
        "/posts/{post}/edit",
        {"title": "T", "content": "C", "version": "1", "action": "insert_image"},
        "page-upload",
        {"anonymous": 303, "other": 403, "author": 200},
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
    # An import writes into the account of whoever sends it, never into anyone else's.
    Case(
        "POST",
        "/api/users/me/import",
        {},
        "import",
        {"anonymous": 401, "other": 200, "author": 200},
    ),
    Case("POST", "/account/import", {}, "page-import", {**PAGE_SELF, "other": 200, "author": 200}),
]


def import_archive() -> bytes:
    """A zip with one Markdown post, as an import takes it."""
    return zip_of({"imported.md": "---\ntitle: Imported\n---\nBrought in."})


def snapshot(db) -> tuple:
    db.commit()  # end the read transaction: on SQLite it would keep showing an old snapshot
    db.expire_all()
    users = db.execute(
        select(
            User.id,
            User.username,
            User.email,
            User.timezone,
            User.password_hash,
            User.email_verified_at,
            User.pending_email,
            User.totp_secret,
            User.totp_pending_secret,
            User.totp_last_step,
        ).order_by(User.id)
    ).all()
    posts = db.execute(
        select(Post.id, Post.title, Post.content, Post.status).order_by(Post.id)
    ).all()
    links = db.scalars(select(ReviewLink.id).order_by(ReviewLink.id)).all()
    revisions = db.execute(select(Revision.post_id, Revision.number).order_by(Revision.id)).all()
    mail = db.scalar(select(func.count(OutboxMessage.id)))
    media = db.scalars(select(MediaFile.id).order_by(MediaFile.id)).all()
    codes = db.scalars(select(RecoveryCode.code_hash).order_by(RecoveryCode.id)).all()
    return (
        tuple(users),
        tuple(posts),
        tuple(links),
        tuple(revisions),
        mail,
        tuple(media),
        tuple(codes),
    )


@pytest.mark.parametrize("actor", ["anonymous", "other", "author"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path} {c.post_status}")
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
    if case.edited:
        update_post(db, post=post, data=PostUpdate(title="Edited"))
    link_id = 0
    if "{link}" in case.path:
        link_id = create_review_link(db, post=post)[0].id
    tokens = {
        purpose: account_links.issue(
            db, user=author, purpose=purpose, email=author.email, ttl=timedelta(hours=1)
        )
        for purpose in ("reset", "verify")
    }
    db.commit()
    media_ids = {}
    if "media}" in case.path:
        media_ids = {
            "media": add_image(client, api_headers(author), "unused"),
            "used_media": add_image(client, api_headers(author), "used", show_in=post),
        }
    fill = {"post": post.id, "author": author.id, "link": link_id, **tokens, **media_ids}
    path = case.path.format(**fill)
    body = {k: v.format(**fill) if isinstance(v, str) else v for k, v in case.body.items()}
    user = {"author": author, "other": other}.get(actor)
    body = {**body, **(case.prepare(db, user or author) if case.prepare else {})}
    before = snapshot(db)

    if case.kind.startswith("page"):
        if user:
            browser_session(client, user)
        # A valid token for this client, so only authorisation can refuse the request.
        data = {**body, "csrf_token": form_token(client, "/" if user else "/login")}
        files = {
            "page-upload": {"file": ("a.png", png_bytes(), "image/png")},
            "page-import": {"file": ("a.zip", import_archive(), "application/zip")},
        }.get(case.kind)
        if files and "/posts/" in path:
            files = {"image": files["file"]}
        response = client.request(case.method, path, data=data, files=files, follow_redirects=False)
    elif case.kind in ("upload", "import"):
        headers = api_headers(user) if user else {}
        files = {"file": ("a.png", png_bytes(), "image/png")}
        if case.kind == "import":
            files = {"file": ("a.zip", import_archive(), "application/zip")}
        response = client.request(case.method, path, files=files, headers=headers)
    else:
        headers = api_headers(user) if user else {}
        response = client.request(case.method, path, json=body or None, headers=headers)

    assert response.status_code == case.expected[actor], response.text
    if case.public:
        assert snapshot(db) != before
        return
    if actor == "anonymous" and case.kind.startswith("page"):
        assert "/login" in response.headers["location"]
    refused = response.status_code in {401, 403, 404, 409} or (actor == "anonymous")
    if refused:
        assert snapshot(db) == before
    elif case.path.startswith(
        ("/posts/{post}", "/api/posts/{post}", "/account/", "/api/media", "/api/users/me/import")
    ):
        assert snapshot(db) != before


def add_image(client, headers: dict[str, str], seed: str, show_in: Post | None = None) -> int:
    """An image in the author's library; shown in `show_in` if given."""
    files = {"file": (f"{seed}.png", varied_png(seed), "image/png")}
    body = client.post("/api/media", files=files, headers=headers).json()
    if show_in is not None:
        content = {"content": body["markdown"]}
        assert client.patch(f"/api/posts/{show_in.id}", json=content, headers=headers).is_success
    return body["id"]


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


HISTORY_READS = [
    ("page", "/posts/{post}/history"),
    ("page", "/posts/{post}/history/diff?from=1&to=2"),
    ("page", "/posts/{post}/history/1/restore"),
    ("api", "/api/posts/{post}/revisions"),
    ("api", "/api/posts/{post}/revisions/1"),
]


@pytest.mark.parametrize("post_status", ["published", "draft"])
@pytest.mark.parametrize(("kind", "path"), HISTORY_READS)
def test_history_is_shown_to_its_author_alone(
    client, db, make_user, make_post, browser_session, api_headers, kind, path, post_status
):
    """A post's revisions hold text never published: anyone but the author gets 404."""
    author, other = make_user("author"), make_user("other")
    published_at = None if post_status == "draft" else post_time()
    post = make_post(author, status=post_status, published_at=published_at)
    update_post(db, post=post, data=PostUpdate(title="Edited"))
    path = path.format(post=post.id)
    statuses = {}
    for actor in (None, other, author):
        client.cookies.clear()
        headers = {}
        if actor and kind == "page":
            browser_session(client, actor)
        elif actor:
            headers = api_headers(actor)
        response = client.get(path, headers=headers, follow_redirects=False)
        statuses[actor.username if actor else "anonymous"] = response.status_code
    anonymous = 303 if kind == "page" else 401
    assert statuses == {"anonymous": anonymous, "other": 404, "author": 200}


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
