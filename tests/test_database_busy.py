"""A saturated server (database writes queueing, pictures waiting to be decoded) answers
503 with Retry-After, never a 500."""

import pytest
from sqlalchemy import text

import database
from services import listings
from tests.support.accounts import form_token


@pytest.fixture
def writer_holding_the_lock(app, backend, monkeypatch):
    """Another writer of this process in the middle of its transaction, and a short queue."""
    if backend != "sqlite":
        pytest.skip("the in-process write queue serialises SQLite writers")
    monkeypatch.setattr(database, "WRITE_QUEUE_TIMEOUT_S", 0.01)
    session = app.state.database.session(write=True)
    session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the lock is now held
    yield
    session.rollback()
    session.close()


def test_api_write_gets_503_with_retry_after(client, make_user, api_headers, monkeypatch):
    headers = api_headers(make_user("patient"))
    database_ = client.app.state.database
    if database_.engine.dialect.name != "sqlite":
        pytest.skip("the in-process write queue serialises SQLite writers")
    monkeypatch.setattr(database, "WRITE_QUEUE_TIMEOUT_S", 0.01)
    other_writer = database_.session(write=True)
    other_writer.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the lock is now held
    response = client.post("/api/posts", json={"title": "T", "content": "C"}, headers=headers)
    other_writer.rollback()
    other_writer.close()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == {
        "detail": "The site is busy right now; please try again in a moment."
    }
    # Once the other writer is done, the same request goes through.
    retried = client.post("/api/posts", json={"title": "T", "content": "C"}, headers=headers)
    assert retried.status_code == 201


def test_form_write_gets_the_busy_page(client, writer_holding_the_lock):
    token = form_token(client, "/login")
    data = {"username": "someone", "password": "whatever", "csrf_token": token}
    response = client.post("/login", data=data)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "busy" in response.text
    assert "content-security-policy" in response.headers


def test_picture_upload_while_decoders_are_busy_gets_503(
    client, make_user, api_headers, monkeypatch
):
    from services import media
    from tests.support.images import png_bytes

    monkeypatch.setattr(media, "DECODE_WAIT_SECONDS", 0.01)
    headers = api_headers(make_user("painter"))
    held = [media._decode_slots.acquire() for _ in range(media.MAX_CONCURRENT_DECODES)]
    try:
        response = client.put(
            "/api/users/me/picture",
            files={"picture": ("me.png", png_bytes(), "image/png")},
            headers=headers,
        )
    finally:
        for _ in held:
            media._decode_slots.release()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


def test_a_database_gone_mid_request_gets_503_not_500(client, backend, make_post, monkeypatch):
    """A PostgreSQL restart cuts the connections in use: the request in flight answers 503
    with Retry-After (the balancer may retry a GET elsewhere), and the next one reconnects."""
    if backend != "postgresql":
        pytest.skip("SQLite has no server to lose")
    make_post(title="Still here")
    engine = client.app.state.database.engine
    list_entries = listings.list_entries

    def cut_off(db, **kwargs):
        own_pid = db.execute(text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": own_pid})
        return list_entries(db, **kwargs)

    monkeypatch.setattr(listings, "list_entries", cut_off)
    response = client.get("/api/posts")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    monkeypatch.setattr(listings, "list_entries", list_entries)
    assert [post["title"] for post in client.get("/api/posts").json()] == ["Still here"]
