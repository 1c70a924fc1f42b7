"""Security headers, allowed hosts, secrets, request ids, error bodies and body limits."""

import logging

import pytest
from fastapi.testclient import TestClient

from config import DEVELOPMENT_SECRET_KEY, Settings, deployment_problems
from main import create_app

PAGES = ["/", "/login", "/posts/999", "/api/posts", "/api/posts/999", "/feed.xml", "/search?q=x"]


@pytest.mark.parametrize("path", PAGES)
def test_every_response_carries_security_headers(client, path):
    response = client.get(path)
    csp = response.headers["content-security-policy"]
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "strict-transport-security" not in response.headers  # plain http here
    assert len(response.headers["x-request-id"]) >= 16


def test_hsts_only_over_https(settings):
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        assert "max-age=" in client.get("/").headers["strict-transport-security"]


def test_pages_have_no_inline_script_or_style(client, make_post):
    post = make_post(content="# Title\n\n*text*")
    for path in ("/", f"/posts/{post.id}", "/login", "/register", "/search?q=text"):
        html = client.get(path).text
        assert "style=" not in html
        scripts = html.split("<script")[1:]
        assert all(s.startswith(' type="application/ld+json">') for s in scripts), path


def test_media_is_never_served_as_html(client, settings):
    settings.avatar_dir.mkdir(parents=True, exist_ok=True)
    (settings.avatar_dir / "note.html").write_text("<script>alert(1)</script>")
    response = client.get("/media/profile_pics/note.html")
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == "attachment"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]


def test_bad_host_header_gets_400(client):
    response = client.get("/", headers={"Host": "evil.example"})
    assert response.status_code == 400


def test_allowed_hosts_come_from_settings(settings):
    settings = Settings.model_validate(
        settings.model_dump() | {"allowed_hosts": "blog.example,x.io"}
    )
    assert settings.allowed_hosts == ["blog.example", "x.io"]
    with TestClient(create_app(settings), base_url="http://blog.example") as client:
        assert client.get("/").status_code == 200
        assert client.get("/", headers={"Host": "testserver"}).status_code == 400


@pytest.mark.parametrize("key", ["", DEVELOPMENT_SECRET_KEY, "short"])
def test_refuses_to_start_outside_debug_with_a_weak_secret(database_url, tmp_path, key):
    settings = Settings(database_url=database_url, media_dir=tmp_path, debug=False, secret_key=key)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(settings)


def test_starts_outside_debug_with_a_real_secret(settings):
    settings = settings.model_copy(update={"debug": False, "secret_key": "k" * 40})
    with TestClient(create_app(settings)) as client:
        assert client.get("/").status_code == 200


def test_deployment_self_check():
    production = Settings(
        database_url="postgresql+psycopg://inkwell@db/inkwell",
        secret_key="a" * 48,
        debug=False,
        secure_cookies=True,
        allowed_hosts=["blog.example"],
        smtp_host="smtp.blog.example",
        mail_from="blog@blog.example",
        public_url="https://blog.example",
    )
    assert deployment_problems(production) == []
    development = Settings()
    problems = deployment_problems(development)
    assert any("SECRET_KEY" in p for p in problems)
    assert any("DEBUG" in p for p in problems)
    assert any("SECURE_COOKIES" in p for p in problems)
    assert any("ALLOWED_HOSTS" in p for p in problems)
    assert deployment_problems(production.model_copy(update={"allowed_hosts": ["*"]})) == [
        "ALLOWED_HOSTS accepts any host"
    ]


@pytest.fixture
def crashing_client(app):
    """A client for an app with one route that fails, to see what a crash looks like."""

    @app.get("/api/boom")
    def api_boom() -> None:
        raise ValueError("secret internal detail")

    @app.get("/boom")
    def page_boom() -> None:
        raise ValueError("secret internal detail")

    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_unhandled_api_error_is_generic_json_with_request_id(crashing_client, caplog):
    with caplog.at_level(logging.ERROR, logger="inkwell"):
        response = crashing_client.get("/api/boom", headers={"X-Request-ID": "trace-me-123"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error"}
    assert response.headers["x-request-id"] == "trace-me-123"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "secret internal detail" not in response.text
    assert "trace-me-123" in caplog.text
    assert "Traceback" in caplog.text or caplog.records[-1].exc_info


def test_unhandled_page_error_is_the_site_error_page(crashing_client):
    response = crashing_client.get("/boom")
    assert response.status_code == 500
    assert "Something went wrong on our side" in response.text
    assert "Traceback" not in response.text and "secret internal detail" not in response.text
    assert response.headers["x-request-id"] in response.text
    assert "unsafe-inline" not in response.headers["content-security-policy"]


def test_insane_request_id_is_replaced(client):
    response = client.get("/", headers={"X-Request-ID": "<script>" + "x" * 100})
    assert "<" not in response.headers["x-request-id"]


def _streamed(size: int):
    chunk = b"x" * 65536
    for _ in range(size // len(chunk) + 1):
        yield chunk


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/users", "application/json"),
        ("/api/token", "application/x-www-form-urlencoded"),
        ("/login", "application/x-www-form-urlencoded"),
        ("/register", "application/x-www-form-urlencoded"),
    ],
)
def test_oversize_bodies_are_refused_while_streaming(client, path, content_type):
    """No Content-Length: only counting the bytes as they arrive can stop these."""
    response = client.post(
        path, content=_streamed(2 * 1024 * 1024), headers={"Content-Type": content_type}
    )
    assert response.status_code == 413


def test_declared_oversize_body_is_refused_up_front(client):
    response = client.post(
        "/api/users", content=b"{}", headers={"Content-Length": str(50 * 1024 * 1024)}
    )
    assert response.status_code == 413


# ---------------------------------------------------------------- hostile signatures


def _signed(settings: Settings, purpose: str, data: object) -> str:
    """A value signed with the app's own key, the way web.security signs it."""
    from types import SimpleNamespace

    from web.security import dumps_signed

    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(settings=settings)))
    return dumps_signed(request, purpose, data)  # type: ignore[arg-type]


HOSTILE_COOKIE_VALUES = [
    "abc.\u00e9",
    "\u00e9\u00e9\u00e9.\u00e9",
    "\u00ff" * 64,
    "x" * 6000 + "." + "y" * 6000,
    "!!!not base64!!!.abc",
    "=",
    "==.==",
    ".",
    "..",
    '"\\000\\001.\\377"',  # an escaped NUL and friends, unquoted by the cookie parser
    "\x01\x7f.\x1f",
    "e30.",  # base64 of {} with no signature
]


def _filled(path: str, values: dict[str, object]) -> str:
    import re

    return re.sub(r"{(\w+)(:\w+)?}", lambda m: str(values[m.group(1)]), path)


def _path_values(post) -> dict[str, object]:
    """Path parameters naming existing rows (a review token and link id that name none)."""
    return {
        "post_id": post.id,
        "user_id": post.user_id,
        "slug": post.slug,
        "link_id": 1,
        "number": 1,
        "media_id": 1,
        "invitation_id": 1,
        "token": "no-such-review-token",
        "path": "css/style.css",
        "action": "delete",  # an admin action (routers.admin)
    }


def _page_paths(app, post) -> list[str]:
    """Every GET route of the app, with its path parameters filled from existing rows."""
    from web.urls import _leaf_routes

    return [
        _filled(route.path, _path_values(post))
        for route in _leaf_routes(app.router.routes)
        if "GET" in (getattr(route, "methods", None) or ())
    ]


@pytest.mark.parametrize("cookie", ["inkwell_flash", "inkwell_csrf", "inkwell_session"])
def test_hostile_cookies_never_cause_a_server_error(app, settings, make_post, cookie):
    post = make_post()
    values = [
        *HOSTILE_COOKIE_VALUES,
        # Correctly signed, but not what the site ever writes there.
        _signed(settings, "flash", [1, None, {"category": 5}]),
        _signed(settings, "flash", {"message": "a dict, not a list"}),
    ]
    paths = _page_paths(app, post)
    assert len(paths) > 15
    with TestClient(app, raise_server_exceptions=False) as client:
        for value in values:
            header = f"{cookie}={value}".encode()
            for path in paths:
                response = client.get(path, headers={"Cookie": header})
                where = (cookie, value[:40], path)
                assert response.status_code < 500, where
                assert response.headers.get("x-content-type-options") == "nosniff", where
                assert "frame-ancestors 'none'" in response.headers.get(
                    "content-security-policy", ""
                ), where


def _form_posts(app, post) -> list[str]:
    """Every form route of the site (the POST routes outside the API)."""
    from web.urls import _leaf_routes

    return [
        _filled(route.path, _path_values(post))
        for route in _leaf_routes(app.router.routes)
        if "POST" in (getattr(route, "methods", None) or ()) and not route.path.startswith("/api")
    ]


@pytest.mark.parametrize(
    "token",
    ["\u00e9" * 43, "abc\u2603", "\u00e9", "x" * 42 + "\u00e9"],
    ids=["accents", "snowman", "one-accent", "last-char"],
)
def test_non_ascii_csrf_token_is_refused_not_a_server_error(
    app, make_post, browser_session, db, token
):
    from models import Post

    post = make_post(title="Untouched")
    paths = _form_posts(app, post)
    assert {"/login", "/register", "/account/delete", f"/posts/{post.id}/edit"} <= set(paths)
    with TestClient(app, raise_server_exceptions=False) as client:
        browser_session(client, post.author)
        for path in paths:
            data = {
                "csrf_token": token,
                "username": "someone",
                "password": "correct horse battery staple",
                "title": "Changed",
                "content": "Changed",
            }
            files = None
            if path == "/account/picture":  # multipart, as its form sends it
                data, files = {"csrf_token": token}, {"picture": ("me.png", b"x", "image/png")}
            response = client.post(path, data=data, files=files, follow_redirects=False)
            assert response.status_code == 403, (path, response.status_code)
            assert response.headers.get("x-content-type-options") == "nosniff", path
    db.expire_all()
    assert db.get(Post, post.id).title == "Untouched"
