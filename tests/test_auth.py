"""Accounts in the browser: register, log in and out, sessions, throttling, CSRF, next."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from config import utcnow
from main import create_app
from models import AuthSession, LoginFailure, User
from services.tokens import digest as _digest
from tests.support.accounts import PASSWORD, form_token, login
from web.cookies import SESSION_COOKIE
from web.security import safe_next


def register(client, username="newbie", email=None, password=PASSWORD, confirm=None):
    token = form_token(client, "/register")
    return client.post(
        "/register",
        data={
            "username": username,
            "email": email or f"{username}@example.com",
            "password": password,
            "confirm_password": password if confirm is None else confirm,
            "csrf_token": token,
        },
        follow_redirects=False,
    )


def nav_user(client) -> bool:
    """Whether the site shows this client as logged in."""
    return "Log out</button>" in client.get("/").text


def test_register_logs_in_and_stores_only_hashes(client, db):
    response = register(client, "newbie")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.cookies[SESSION_COOKIE]
    assert nav_user(client)
    assert "Welcome to Inkwell, newbie!" in client.get("/").text or nav_user(client)
    user = db.scalar(select(User).where(User.username == "newbie"))
    assert user.password_hash.startswith("$argon2")
    stored = db.scalars(select(AuthSession.token_hash)).all()
    assert stored == [_digest(cookie)]
    assert cookie not in stored


def test_session_cookie_flags(client):
    response = register(client, "flags")
    header = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE)
    )
    assert "HttpOnly" in header
    assert "SameSite=lax" in header or "samesite=lax" in header.lower()
    assert "Secure" not in header


def test_session_cookie_is_secure_when_configured(settings):
    settings = settings.model_copy(update={"secure_cookies": True})
    from fastapi.testclient import TestClient

    with TestClient(create_app(settings), base_url="https://testserver") as client:
        response = register(client, "secure")
        header = next(
            h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE)
        )
        assert "Secure" in header


def test_flash_message_shows_once(client):
    register(client, "flashy")
    assert "Welcome to Inkwell, flashy!" in client.get("/").text
    assert "Welcome to Inkwell, flashy!" not in client.get("/").text


@pytest.mark.parametrize(
    ("fields", "field_error"),
    [
        ({"password": "short"}, "at least 8 characters"),
        ({"password": "password123"}, "too common"),
        ({"confirm": "something else entirely"}, "do not match"),
        ({"email": "not-an-email"}, "email"),
        ({"username": "no spaces allowed"}, "pattern"),
    ],
)
def test_register_errors_keep_what_was_typed(client, db, fields, field_error):
    fields = dict(fields)  # the parameter is shared by both backends' runs
    username = fields.pop("username", "keepme")
    response = register(client, username, **fields)
    assert response.status_code == 422
    assert field_error in response.text.lower()
    assert f'value="{username}"' in response.text
    assert db.scalar(select(func.count()).select_from(User)) == 0


def test_register_duplicate_username_is_a_form_error(client, make_user):
    make_user("taken")
    response = register(client, "taken", email="fresh@example.com")
    assert response.status_code == 409
    assert "That username or email address cannot be used" in response.text
    assert 'value="fresh@example.com"' in response.text


def test_long_password_is_not_truncated(client, make_account):
    long_password = "a long passphrase " * 20
    make_account("longpw", password=long_password)
    login(client, "longpw", long_password)
    assert nav_user(client)
    client.cookies.clear()
    token = form_token(client, "/login")
    response = client.post(
        "/login",
        data={"username": "longpw", "password": long_password[:-1], "csrf_token": token},
    )
    assert response.status_code == 400


def test_login_failure_says_the_same_for_unknown_user_and_wrong_password(client, make_account):
    make_account("realuser")
    bodies = []
    for username, password in [("realuser", "wrong password!"), ("ghost", PASSWORD)]:
        token = form_token(client, "/login")
        response = client.post(
            "/login", data={"username": username, "password": password, "csrf_token": token}
        )
        assert response.status_code == 400
        assert "Invalid username or password" in response.text
        bodies.append(response.text.replace(username, "NAME"))
    assert bodies[0] == bodies[1]


def test_unknown_user_still_costs_a_hash(client, monkeypatch):
    from services import passwords

    calls = []
    real_verify = passwords.password_hasher.verify_and_update
    monkeypatch.setattr(
        passwords.password_hasher,
        "verify_and_update",
        lambda *a, **k: calls.append(1) or real_verify(*a, **k),
    )
    token = form_token(client, "/login")
    client.post("/login", data={"username": "nobody", "password": PASSWORD, "csrf_token": token})
    assert calls == [1]


def test_user_without_password_cannot_log_in(client, make_user):
    make_user("legacy")  # created before passwords existed
    token = form_token(client, "/login")
    response = client.post(
        "/login", data={"username": "legacy", "password": "", "csrf_token": token}
    )
    assert response.status_code == 400
    assert not nav_user(client)


def _fail_login(client, username):
    token = form_token(client, "/login")
    return client.post(
        "/login", data={"username": username, "password": "not the password", "csrf_token": token}
    )


def test_repeated_failures_are_refused_then_allowed_again(client, db, make_account):
    target = make_account("target")
    statuses = [_fail_login(client, "target").status_code for _ in range(6)]
    assert statuses[:5] == [400] * 5
    assert statuses[5] == 429
    # Even the right password is refused while throttled.
    token = form_token(client, "/login")
    refused = client.post(
        "/login", data={"username": "target", "password": PASSWORD, "csrf_token": token}
    )
    assert refused.status_code == 429
    assert "Too many failed attempts" in refused.text
    assert not nav_user(client)
    # The state is in the database: age it past the window and the user may log in.
    db.execute(update(LoginFailure).values(failed_at=utcnow() - timedelta(hours=1)))
    db.commit()
    login(client, "target")
    assert nav_user(client)
    remaining = db.scalar(
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.key == f"user:{target.id}")
    )
    assert remaining == 0


def test_throttle_state_is_shared_between_app_instances(settings, make_account):
    """Two app instances (as two worker processes would be) see the same failure count."""
    from fastapi.testclient import TestClient

    make_account("shared")
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        for _ in range(5):
            assert _fail_login(first, "shared").status_code == 400
        assert _fail_login(second, "shared").status_code == 429


def test_failures_from_one_address_across_accounts_are_throttled(client, make_account):
    for n in range(20):
        assert _fail_login(client, f"spray{n}").status_code == 400
    make_account("innocent")
    token = form_token(client, "/login")
    response = client.post(
        "/login", data={"username": "innocent", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 429


def test_api_token_endpoint_is_throttled_too(client, make_account):
    make_account("apiuser")
    for _ in range(5):
        bad = client.post("/api/token", data={"username": "apiuser", "password": "nope nope"})
        assert bad.status_code == 401
    response = client.post("/api/token", data={"username": "apiuser", "password": PASSWORD})
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0


def test_login_issues_a_fresh_token(client, make_account, db):
    make_account("fresh")
    login(client, "fresh")
    first = client.cookies[SESSION_COOKIE]
    login(client, "fresh")
    second = client.cookies[SESSION_COOKIE]
    assert first != second
    assert db.scalars(select(AuthSession.token_hash)).all() == [_digest(second)]


def test_logout_deletes_the_session_and_a_replayed_cookie_is_anonymous(client, make_account):
    make_account("leaver")
    login(client, "leaver")
    old_cookie = client.cookies[SESSION_COOKIE]
    token = form_token(client, "/")
    response = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert not nav_user(client)
    client.cookies.set(SESSION_COOKIE, old_cookie)
    assert not nav_user(client)
    assert client.get("/account", follow_redirects=False).status_code == 303


def test_password_change_ends_other_sessions_but_keeps_this_one(client, settings, make_account):
    from fastapi.testclient import TestClient

    make_account("changer")
    with TestClient(create_app(settings)) as other_browser:
        login(other_browser, "changer")
        assert nav_user(other_browser)
        login(client, "changer")
        token = form_token(client, "/account")
        response = client.post(
            "/account/password",
            data={
                "current_password": PASSWORD,
                "new_password": "a brand new passphrase",
                "confirm_password": "a brand new passphrase",
                "csrf_token": token,
            },
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert nav_user(client)
        assert not nav_user(other_browser)
    client.cookies.clear()
    login(client, "changer", "a brand new passphrase")


def test_password_change_needs_the_current_password(client, make_account):
    make_account("careful")
    login(client, "careful")
    token = form_token(client, "/account")
    response = client.post(
        "/account/password",
        data={
            "current_password": "wrong wrong wrong",
            "new_password": "a brand new passphrase",
            "confirm_password": "a brand new passphrase",
            "csrf_token": token,
        },
    )
    assert response.status_code == 422
    assert "not your current password" in response.text


def test_logout_everywhere(client, settings, make_account, db):
    from fastapi.testclient import TestClient

    make_account("everywhere")
    with TestClient(create_app(settings)) as other_browser:
        login(other_browser, "everywhere")
        login(client, "everywhere")
        token = form_token(client, "/account")
        client.post("/account/logout-everywhere", data={"csrf_token": token})
        assert not nav_user(client)
        assert not nav_user(other_browser)
    assert db.scalar(select(func.count()).select_from(AuthSession)) == 0


def test_expired_session_is_anonymous(client, make_account, db):
    make_account("expiring")
    login(client, "expiring")
    db.execute(update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert not nav_user(client)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/posts/new", "/posts/new"),
        ("/account?tab=1", "/account?tab=1"),
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
        ("\\\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/%0d%0aSet-Cookie:x", "/%0d%0aSet-Cookie:x"),
        ("/\nLocation: https://evil", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_safe_next(target, expected):
    assert safe_next(target) == expected


@pytest.mark.parametrize("evil", ["//evil.example", "https://evil.example", "/\\evil.example"])
def test_login_never_redirects_off_site(client, make_account, evil):
    make_account("traveller")
    token = form_token(client, f"/login?next={evil}")
    response = client.post(
        "/login",
        data={"username": "traveller", "password": PASSWORD, "next": evil, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_anonymous_is_sent_to_login_and_brought_back(client, make_account):
    make_account("returner")
    response = client.get("/posts/new", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].endswith("/login?next=%2Fposts%2Fnew")
    page = client.get(response.headers["location"])
    assert 'name="next" value="/posts/new"' in page.text
    from tests.support.accounts import csrf_from

    back = client.post(
        "/login",
        data={
            "username": "returner",
            "password": PASSWORD,
            "next": "/posts/new",
            "csrf_token": csrf_from(page.text),
        },
        follow_redirects=False,
    )
    assert back.headers["location"] == "/posts/new"


CSRF_FORMS = [
    ("/register", {"username": "x", "email": "x@example.com", "password": PASSWORD}),
    ("/login", {"username": "x", "password": PASSWORD}),
    ("/logout", {}),
    ("/account", {"username": "x", "email": "x@example.com"}),
    ("/account/password", {"current_password": PASSWORD, "new_password": "another passphrase"}),
    ("/account/logout-everywhere", {}),
    ("/account/delete", {"password": PASSWORD}),
    ("/posts/new", {"title": "t", "content": "c"}),
    ("/posts/{post}/edit", {"title": "t", "content": "c"}),
    ("/posts/{post}/delete", {}),
    ("/account/picture", {}),
]


@pytest.mark.parametrize(("path", "data"), CSRF_FORMS)
@pytest.mark.parametrize("token", ["missing", "wrong", "from another session"])
def test_forms_refuse_missing_or_wrong_csrf_token(
    client, settings, make_account, make_post, db, path, data, token
):
    from fastapi.testclient import TestClient

    author = make_account("csrfuser")
    post = make_post(author, title="Untouched")
    login(client, "csrfuser")
    if token == "wrong":
        data = {**data, "csrf_token": "x" * 43}
    elif token == "from another session":
        with TestClient(create_app(settings)) as other:
            login(other, "csrfuser")
            data = {**data, "csrf_token": form_token(other, "/account")}
    response = client.post(path.format(post=post.id), data=data, follow_redirects=False)
    assert response.status_code == 403
    db.expire_all()
    assert db.get(User, author.id).username == "csrfuser"
    assert db.get(type(post), post.id).title == "Untouched"
    assert nav_user(client)


def test_a_hash_made_with_older_settings_is_remade_on_login(client, db, make_user):
    from pwdlib.hashers.argon2 import Argon2Hasher

    older = Argon2Hasher(memory_cost=19_456, time_cost=2, parallelism=1).hash(PASSWORD)
    user = make_user("veteran", password_hash=older)
    assert "m=19456,t=2,p=1" in older

    def stored() -> str:
        db.rollback()  # a fresh snapshot: each request commits on its own connection
        return db.scalar(select(User.password_hash).where(User.id == user.id))

    wrong = client.post("/api/token", data={"username": "veteran", "password": "not it at all"})
    assert wrong.status_code == 401
    assert stored() == older  # a failed attempt changes nothing
    first = client.post("/api/token", data={"username": "veteran", "password": PASSWORD})
    assert first.status_code == 200
    remade = stored()
    assert "m=7168,t=5,p=1" in remade
    again = client.post("/api/token", data={"username": "veteran", "password": PASSWORD})
    assert again.status_code == 200
    assert stored() == remade  # already current: left alone


# ---------------------------------------------------------------- names whatever their case


def api_login(app, username, password=PASSWORD, address="192.0.2.1"):
    """POST /api/token from `address` (each address is throttled on its own)."""
    from fastapi.testclient import TestClient

    client = TestClient(app, client=(address, 50000))
    return client.post("/api/token", data={"username": username, "password": password})


def test_usernames_are_unique_whatever_their_case(client, make_user, browser_session):
    make_user("frank")
    body = {"username": "FRANK", "email": "twin@example.com", "password": PASSWORD}
    assert client.post("/api/users", json=body).status_code == 409
    assert register(client, "Frank", email="twin@example.com").status_code == 409
    other = make_user("other")
    browser_session(client, other)
    token = form_token(client, "/account")
    renamed = client.post(
        "/account",
        data={"username": "fRANK", "email": other.email, "csrf_token": token},
    )
    assert renamed.status_code == 409
    assert "That username or email address cannot be used" in renamed.text


def test_login_finds_the_account_whatever_the_case(client, app, make_account):
    frank = make_account("frank")
    for spelling in ("FRANK", "Frank", " frank "):
        response = api_login(app, spelling)
        assert response.status_code == 200, spelling
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        assert client.get("/api/users/me", headers=headers).json()["id"] == frank.id


def test_a_case_twin_cannot_reset_the_account_throttle(client, app, clock, make_account):
    """The finding: with `frank` and `FRANK` both registered, logging in as FRANK cleared the
    failures counted for `frank`, so 40 guesses interleaved with such logins were never
    slowed down. Every guess here comes from a new address, so only the account's own count
    can stop them."""
    make_account("frank")
    twin = {"username": "FRANK", "email": "twin@example.com", "password": "the twin's passphrase"}
    # Refused now (409); the rest of the test shows that the throttle holds either way.
    client.post("/api/users", json=twin)
    guesses, twin_logins = [], []
    for n in range(40):
        guesses.append(api_login(app, "frank", f"guess number {n}", f"203.0.113.{n}").status_code)
        twin_logins.append(
            api_login(app, "FRANK", "the twin's passphrase", f"198.51.100.{n}").status_code
        )
    # "FRANK" is frank's account now, so the twin's logins are wrong passwords for it too:
    # the five free failures are used up by the third guess, and nothing gets through.
    assert guesses[:3] == [401] * 3
    assert guesses[3:] == [429] * 37
    assert twin_logins[:2] == [401] * 2
    assert twin_logins[2:] == [429] * 38
    # Nor does the right password get in while the account must wait …
    assert api_login(app, "frank", PASSWORD, "192.0.2.77").status_code == 429
    # … until the window has passed.
    clock.advance(minutes=16)
    assert api_login(app, "frank", PASSWORD, "192.0.2.78").status_code == 200


def test_failures_count_against_the_account_whatever_the_spelling(app, clock, make_account):
    make_account("frank")
    spellings = ["frank", "FRANK", "Frank", " frank", "fRaNk"]
    statuses = [
        api_login(app, name, "not the password", f"203.0.113.{n}").status_code
        for n, name in enumerate(spellings)
    ]
    assert statuses == [401] * 5
    assert api_login(app, "FrAnK", PASSWORD, "203.0.113.99").status_code == 429


def test_guesses_at_a_name_no_one_has_are_throttled_too(app, clock):
    statuses = [
        api_login(app, "Ghost", "not the password", f"203.0.113.{n}").status_code for n in range(6)
    ]
    assert statuses == [401] * 5 + [429]


def test_ipv6_clients_are_throttled_by_their_64(app, clock):
    """One subscriber holds a whole /64: a new address for every guess must not help."""
    statuses = [
        api_login(app, f"spray{n}", "not the password", f"2001:db8:1:2::{n + 1:x}").status_code
        for n in range(20)
    ]
    assert statuses == [401] * 20
    assert api_login(app, "spray99", "x" * 8, "2001:db8:1:2:ffff:ffff:ffff:1").status_code == 429
    # Another /64, and IPv4 addresses, each still count on their own.
    assert api_login(app, "spray99", "x" * 8, "2001:db8:1:3::1").status_code == 401
    for n in range(20):
        api_login(app, f"spray{n}", "not the password", "192.0.2.10")
    assert api_login(app, "spray99", "x" * 8, "192.0.2.10").status_code == 429
    assert api_login(app, "spray99", "x" * 8, "192.0.2.11").status_code == 401


@pytest.mark.parametrize(
    ("address", "group"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:aa:bb:1:2:3:4", "2001:db8:aa:bb::/64"),
        ("2001:DB8:aa:bb::1", "2001:db8:aa:bb::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("testclient", "testclient"),
    ],
)
def test_address_groups(address, group):
    from services.throttling import address_group

    assert address_group(address) == group


# ---------------------------------------------------------------- the list of leaked passwords

REFUSED = [
    "Password123!",
    "Summer2024!",
    "password123",
    "iloveyou2024",
    "letmein!!",
    "Football#1",
    "\uff30\uff41\uff53\uff53\uff57\uff4f\uff52\uff44\uff11\uff12\uff13",  # full-width
    "qwertyuiop",
]
ALLOWED = [PASSWORD, "zebra crossing at dawn", "xk7#pLq!9mzT", "monkey83749287!@#"]


@pytest.mark.parametrize("password", REFUSED)
def test_leaked_passwords_and_their_decorated_forms_are_refused(client, db, password):
    body = {"username": "careless", "email": "careless@example.com", "password": password}
    response = client.post("/api/users", json=body)
    assert response.status_code == 422
    assert "too common" in response.json()["detail"][0]["msg"]
    form = register(client, "careless", password=password)
    assert form.status_code == 422
    assert "too common" in form.text
    assert db.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize("password", ALLOWED)
def test_uncommon_passwords_are_allowed(password):
    from schemas import UserCreate

    UserCreate(username="careful", email="careful@example.com", password=password)


def test_the_leaked_password_list_is_large_sorted_and_small_in_memory():
    from itertools import pairwise

    from schemas import COMMON_PASSWORDS_FILE, breached_passwords, is_common_password

    table = breached_passwords()
    assert len(table) >= 100_000
    assert all(a < b for a, b in pairwise(table))
    assert table.itemsize * len(table) < 2 * 1024 * 1024  # the worker's budget is 150 MB
    # The hand-made variants are part of it.
    local = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").split()
    assert local and all(is_common_password(word) for word in local)
