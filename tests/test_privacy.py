"""Personal responses stay personal: the page cache stores only what a route marked public
and made without a user, a CSRF token or a flash; personal responses say `private,
no-store`; a request with two Host headers is refused."""

import pytest

from tests.support.accounts import form_token, login
from web.cookies import ANON_CSRF_COOKIE, FLASH_COOKIE, SESSION_COOKIE


def cached_keys(app) -> list[str]:
    return list(app.state.page_cache._entries)


@pytest.mark.parametrize("cookie", [SESSION_COOKIE, ANON_CSRF_COOKIE, FLASH_COOKIE])
def test_a_spaced_cookie_name_is_still_personal(app, client, make_post, cookie):
    """Starlette strips spaces around cookie names; the cache must read cookies the same way,
    or `name =value` would be personal to the app and anonymous to the cache."""
    make_post()
    for path in ("/login", "/register", "/"):
        for _ in range(3):
            client.get(path, headers={"Cookie": f"{cookie} =attacker-seed"})
    assert cached_keys(app) == []
    # A new visitor gets a form bound to a seed of their own, with its cookie.
    client.cookies.clear()
    fresh = client.get("/login")
    assert ANON_CSRF_COOKIE in fresh.cookies


def test_forms_are_never_cached_even_without_cookies(app, client):
    for path in ("/login", "/register"):
        client.cookies.clear()
        first = client.get(path)
        client.cookies.clear()
        second = client.get(path)
        assert ANON_CSRF_COOKIE in first.cookies and ANON_CSRF_COOKIE in second.cookies
        assert first.text != second.text  # each carries its own token
    assert cached_keys(app) == []


def test_only_public_anonymous_pages_are_stored(app, client, make_post):
    post = make_post()
    client.get("/")
    client.get(f"/posts/{post.id}/{post.slug}")
    client.get("/api/posts")
    assert sorted(key.split("testserver", 1)[1] for key in cached_keys(app)) == sorted(
        ["/?", f"/posts/{post.id}/{post.slug}?", "/api/posts?"]
    )


def test_logged_in_pages_are_private_and_not_stored(app, client, make_account, make_post):
    make_post()
    make_account("reader")
    login(client, "reader")
    for path in ("/", "/account", "/posts/new"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "private, no-store", path
        assert "Cookie" in response.headers["vary"]
    assert cached_keys(app) == []


def test_api_responses_for_a_token_are_private(client, make_user, api_headers):
    me = client.get("/api/users/me", headers=api_headers(make_user("owner")))
    assert me.status_code == 200
    assert me.headers["cache-control"] == "private, no-store"


def test_public_pages_are_not_marked_private(client, make_post):
    make_post()
    response = client.get("/")
    assert "cache-control" not in response.headers
    assert "Cookie" in response.headers["vary"]


def test_a_form_re_rendered_with_errors_is_private(client):
    token = form_token(client, "/login")
    response = client.post("/login", data={"username": "x", "password": "y", "csrf_token": token})
    assert response.status_code == 400
    assert response.headers["cache-control"] == "private, no-store"


def test_two_host_headers_are_refused(app, client, make_post):
    make_post()
    response = client.get(
        "/",
        headers=[("Host", "testserver"), ("Host", "evil.example")],  # type: ignore[arg-type]
    )
    assert response.status_code == 400
    assert cached_keys(app) == []
