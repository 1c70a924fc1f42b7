"""Admins and moderation: who may reach /admin, what a suspension does everywhere a reader
or the suspended account could look, the log of admin actions, and the admin commands."""

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

import cli
from config import utcnow
from models import ADMIN_ROLE, AuditEntry, Invitation, Post, User
from routers import admin as admin_pages
from services import accounts, sessions
from tests.support.accounts import PASSWORD, csrf_from, form_token

ACTION = re.compile(r"/(suspend|unsuspend|delete|unpublish)$")
ADMIN_PAGES = ["/admin", "/admin/posts", "/admin/log", "/admin/invitations"]
PATH_PARAMETER = re.compile(r"\{(\w+)_id:int\}")


@pytest.fixture
def admin(make_account):
    return make_account("boss", role=ADMIN_ROLE)


@pytest.fixture
def admin_client(app, admin, browser_session):
    with TestClient(app) as client:
        browser_session(client, admin)
        yield client


def act(client: TestClient, path: str, reason: str = "Spam, reported twice"):
    """An admin action the way the pages take it: the confirmation page, then its form."""
    token = form_token(client, path)
    return client.post(path, data={"csrf_token": token, "reason": reason}, follow_redirects=False)


def entries(db) -> list[tuple[str, str, str, str]]:
    db.rollback()  # a fresh read: the last one's snapshot must not hide the request's writes
    rows = db.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    return [(row.admin_name, row.action, row.target_label, row.reason) for row in rows]


def test_the_admin_section_is_not_found_for_anyone_but_admins(
    app, client, make_user, make_post, browser_session
):
    author = make_user("writer")
    post = make_post(author)
    paths = [*ADMIN_PAGES, f"/admin/users/{author.id}/suspend", f"/admin/posts/{post.id}/delete"]
    with TestClient(app) as member:
        browser_session(member, author)
        for visitor in (client, member):
            for path in paths:
                assert visitor.get(path).status_code == 404, path
        token = csrf_from(member.get("/account").text)
        response = member.post(
            f"/admin/users/{author.id}/suspend", data={"csrf_token": token, "reason": "x"}
        )
        assert response.status_code == 404
    assert author.suspended_at is None


def test_admins_see_accounts_posts_and_the_log(admin_client, admin, make_user, make_post):
    make_post(make_user("carol"), title="Carol writes")
    home = admin_client.get("/")
    assert '/admin">Admin</a>' in home.text
    accounts_page = admin_client.get("/admin", params={"q": "CAR"})
    assert "carol" in accounts_page.text and "carol@example.com" in accounts_page.text
    assert "boss@example.com" not in accounts_page.text  # filtered by the search
    assert "Carol writes" in admin_client.get("/admin/posts").text
    assert "No admin has acted yet." in admin_client.get("/admin/log").text


def test_the_link_to_the_admin_section_is_only_shown_to_admins(app, make_user, browser_session):
    with TestClient(app) as member:
        browser_session(member, make_user("plain"))
        assert '/admin">Admin</a>' not in member.get("/").text


def test_a_suspension_hides_the_posts_and_ends_every_session(
    app, client, db, admin_client, make_account, make_post, browser_session, api_headers
):
    author = make_account("spammer")
    post = make_post(author, title="Cheap pills everywhere", content="Buy sourdough pills.")
    headers = api_headers(author)
    page = f"/posts/{post.id}/{post.slug}"
    # Cached for anonymous readers before the suspension: the cache must not outlive it.
    for path in ("/", page, "/feed.xml"):
        assert "Cheap pills" in client.get(path).text
        client.get(path)
    with TestClient(app) as own:
        browser_session(own, author)
        response = act(admin_client, f"/admin/users/{author.id}/suspend")
        assert response.status_code == 303
        assert own.get("/account", follow_redirects=False).status_code == 303  # to the login
    assert client.get("/api/users/me", headers=headers).status_code == 401

    for path in (
        "/",
        f"/users/{author.id}/posts",
        "/feed.xml",
        "/sitemap.xml",
        "/search?q=sourdough",
    ):
        assert "Cheap pills" not in client.get(path).text, path
    assert client.get(page).status_code == 404
    assert client.get(f"/api/posts/{post.id}").status_code == 404
    assert all(item["id"] != post.id for item in client.get("/api/posts").json())

    db.expire_all()
    assert db.get(Post, post.id) is not None  # nothing is deleted
    assert entries(db) == [("boss", "suspend", "spammer", "Spam, reported twice")]
    assert "Spam, reported twice" in admin_client.get("/admin/log").text


def test_a_suspended_account_cannot_log_in_anywhere(app, client, db, admin, make_account):
    author = make_account("muted")
    with TestClient(app) as other:
        token = form_token(other, "/login")
    from services import moderation

    pending = sessions.create_session(db, user=author, kind="pending")
    moderation.suspend(db, admin=admin, user=author, reason="Abuse")

    token = form_token(client, "/login")
    form = {"username": "muted", "password": PASSWORD, "csrf_token": token}
    response = client.post("/login", data=form, follow_redirects=False)
    assert response.status_code == 403
    assert "This account is suspended." in response.text
    assert 'value="muted"' in response.text  # the form keeps what was typed
    api = client.post("/api/token", data={"username": "muted", "password": PASSWORD})
    assert api.status_code == 403
    assert api.json() == {"detail": "This account is suspended."}
    # A wrong password says nothing about the suspension.
    wrong = client.post("/api/token", data={"username": "muted", "password": "not it at all"})
    assert wrong.status_code == 401
    # The second step of a login begun before the suspension leads nowhere either.
    assert accounts.pending_login_user(db, token=pending) is None


def test_lifting_a_suspension_shows_the_posts_again(
    client, db, admin_client, make_account, make_post
):
    author = make_account("forgiven")
    post = make_post(author, title="Second chances")
    act(admin_client, f"/admin/users/{author.id}/suspend")
    assert "Second chances" not in client.get("/").text
    assert "Lift suspension" in admin_client.get("/admin").text
    assert (
        act(admin_client, f"/admin/users/{author.id}/unsuspend", "Appeal upheld").status_code == 303
    )
    assert "Second chances" in client.get("/").text
    assert client.get(f"/posts/{post.id}/{post.slug}").status_code == 200
    token = client.post("/api/token", data={"username": "forgiven", "password": PASSWORD})
    assert token.status_code == 200
    assert [entry[1] for entry in entries(db)] == ["suspend", "unsuspend"]


def test_an_action_needs_a_reason_and_keeps_what_was_typed(admin_client, db, make_user):
    author = make_user("reasonless")
    path = f"/admin/users/{author.id}/suspend"
    token = form_token(admin_client, path)
    blank = admin_client.post(path, data={"csrf_token": token, "reason": "   "})
    assert blank.status_code == 422
    assert "Say why" in blank.text
    long = admin_client.post(path, data={"csrf_token": token, "reason": "x" * 501})
    assert long.status_code == 422
    assert "x" * 501 in long.text
    no_csrf = admin_client.post(path, data={"reason": "Spam"})
    assert no_csrf.status_code == 403
    db.expire_all()
    assert db.get(User, author.id).suspended_at is None
    assert entries(db) == []


def test_an_admin_cannot_suspend_or_delete_themselves(admin_client, admin, db):
    for action in ("suspend", "delete"):
        response = act(admin_client, f"/admin/users/{admin.id}/{action}")
        assert response.status_code == 403, action
    db.expire_all()
    assert db.get(User, admin.id).suspended_at is None
    assert entries(db) == []


def test_an_id_past_the_column_names_nothing(admin_client):
    for path in ("/admin/posts/{}/delete", "/admin/users/{}/delete"):
        assert admin_client.get(path.format(10**25)).status_code == 404


def test_unpublishing_and_deleting_posts(client, db, admin_client, make_user, make_post):
    author = make_user("poster")
    kept = make_post(author, title="Off topic")
    gone = make_post(author, title="Plainly spam")
    kept_id, gone_id = kept.id, gone.id
    assert act(admin_client, f"/admin/posts/{kept.id}/unpublish").status_code == 303
    assert act(admin_client, f"/admin/posts/{gone.id}/delete", "Spam").status_code == 303
    db.expire_all()
    assert db.get(Post, kept_id).status == "draft"
    assert db.get(Post, gone_id) is None
    assert "Off topic" not in client.get("/").text
    assert entries(db) == [
        ("boss", "unpublish post", "Off topic", "Spam, reported twice"),
        ("boss", "delete post", "Plainly spam", "Spam"),
    ]
    assert admin_client.get(f"/admin/posts/{gone_id}/delete").status_code == 404


def test_deleting_an_account_keeps_its_log_entry(admin_client, db, make_user, make_post):
    author = make_user("departed")
    make_post(author)
    assert act(admin_client, f"/admin/users/{author.id}/delete", "Bot").status_code == 303
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(User).where(User.username == "departed")) == 0
    assert entries(db) == [("boss", "delete user", "departed", "Bot")]
    assert "departed" in admin_client.get("/admin/log").text


def test_admin_commands(db, settings, monkeypatch, make_user):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    from config import get_settings

    get_settings.cache_clear()
    runner = CliRunner()
    try:
        made = runner.invoke(
            cli.app,
            ["create-admin", "chief", "--email", "chief@example.com"],
            input=f"{PASSWORD}\n{PASSWORD}\n",
        )
        assert made.exit_code == 0, made.output
        again = runner.invoke(
            cli.app,
            ["create-admin", "CHIEF", "--email", "other@example.com", "--password", PASSWORD],
        )
        assert again.exit_code == 1
        make_user("helper")
        assert runner.invoke(cli.app, ["promote", "HELPER"]).exit_code == 0
        assert runner.invoke(cli.app, ["demote", "chief"]).exit_code == 0
        missing = runner.invoke(cli.app, ["promote", "nobody"])
        assert missing.exit_code == 1
        assert "No account is called 'nobody'." in missing.output
    finally:
        get_settings.cache_clear()
    db.expire_all()
    roles = dict(db.execute(select(User.username, User.role)).all())
    assert roles == {"chief": "author", "helper": "admin"}
    chief = db.scalar(select(User).where(User.username == "chief"))
    assert chief.email_verified_at is not None
    assert accounts.log_in(db, username="chief", password=PASSWORD, client_ip="127.0.0.1")


# Every admin route with what an admin gets; anyone else gets 404 and changes nothing.
ADMIN_ROUTES = [
    ("GET", "/admin", 200),
    ("GET", "/admin/posts", 200),
    ("GET", "/admin/log", 200),
    ("GET", "/admin/users/{user}/suspend", 200),
    ("POST", "/admin/users/{user}/suspend", 303),
    ("GET", "/admin/users/{user}/unsuspend", 200),
    ("POST", "/admin/users/{user}/unsuspend", 303),
    ("GET", "/admin/users/{user}/delete", 200),
    ("POST", "/admin/users/{user}/delete", 303),
    ("GET", "/admin/posts/{post}/unpublish", 200),
    ("POST", "/admin/posts/{post}/unpublish", 303),
    ("GET", "/admin/posts/{post}/delete", 200),
    ("POST", "/admin/posts/{post}/delete", 303),
    ("GET", "/admin/invitations", 200),
    ("POST", "/admin/invitations", 303),
    ("POST", "/admin/invitations/{invitation}/withdraw", 303),
]


def test_the_matrix_names_every_admin_route():
    served = {
        (method, PATH_PARAMETER.sub(lambda found: "{" + found[1] + "}", route.path))
        for route in admin_pages.router.routes
        for method in route.methods
    }
    named = {(method, ACTION.sub("/{action}", path)) for method, path, _ in ADMIN_ROUTES}
    assert served == named


def moderation_state(db) -> tuple:
    db.rollback()  # a fresh read: the last one's snapshot must not hide the request's writes
    users = db.execute(select(User.id, User.role, User.suspended_at).order_by(User.id)).all()
    posts = db.execute(select(Post.id, Post.status, Post.hidden).order_by(Post.id)).all()
    return tuple(users), tuple(posts), tuple(entries(db))


@pytest.mark.parametrize("actor", ["anonymous", "author", "suspended", "admin"])
@pytest.mark.parametrize(("method", "path", "admin_gets"), ADMIN_ROUTES, ids=lambda v: str(v))
def test_admin_route_matrix(
    app, db, admin, make_user, make_post, browser_session, method, path, admin_gets, actor
):
    target = make_user("target", suspended_at=utcnow() if "unsuspend" in path else None)
    post = make_post(target)
    acting = {
        "admin": admin,
        "author": make_user("someone"),
        "suspended": make_user("muted", suspended_at=utcnow()),
    }.get(actor)
    invitation = Invitation(
        token_hash="0" * 64,
        email="guest@example.com",
        invited_by_name="boss",
        expires_at=utcnow() + timedelta(days=1),
    )
    db.add(invitation)
    db.commit()
    url = path.format(user=target.id, post=post.id, invitation=invitation.id)
    with TestClient(app) as visitor:
        if acting is not None:
            browser_session(visitor, acting)
        # A valid token for this client, so only authorisation can refuse the request.
        token = form_token(visitor, "/" if actor in ("admin", "author") else "/login")
        before = moderation_state(db)
        form = {"csrf_token": token, "reason": "Matrix", "email": "newcomer@example.com"}
        data = form if method == "POST" else None
        response = visitor.request(method, url, data=data, follow_redirects=False)
    expected = admin_gets if actor == "admin" else 404
    assert response.status_code == expected, response.text
    if expected == 404 or method == "GET":
        assert moderation_state(db) == before
    else:
        assert moderation_state(db) != before
