"""Password reset by mail: one answer whatever the address, a single-use link valid for an
hour that ends every session, throttled requests, and links only where the rules allow."""

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from config import utcnow
from models import OutboxMessage, User
from services.passwords import verify_password
from tests.support.accounts import PASSWORD, csrf_from, form_token, login
from tests.support.smtp import link_in, token_in

NEW_PASSWORD = "a brand new passphrase"


def reset_token(client, send, email: str) -> str:
    assert client.post("/api/password-reset", json={"email": email}).status_code == 202
    (received,) = send()
    assert received.recipients == [email]
    return token_in(received, "/password-reset/")


def confirm(client, token: str, password: str = NEW_PASSWORD):
    return client.post(
        "/api/password-reset/confirm", json={"token": token, "new_password": password}
    )


def stored_hash(db, user_id: int) -> str:
    db.commit()
    return db.scalar(select(User.password_hash).where(User.id == user_id))


def test_the_api_resets_the_password_once_and_ends_every_session(
    client, make_account, api_headers, send, db
):
    user = make_account("alice", email="alice@example.com")
    headers = api_headers(user)
    token = reset_token(client, send, "alice@example.com")
    assert confirm(client, token).status_code == 204
    assert verify_password(NEW_PASSWORD, stored_hash(db, user.id))[0]
    assert client.get("/api/users/me", headers=headers).status_code == 401
    assert (
        client.post("/api/token", data={"username": "alice", "password": PASSWORD}).status_code
        == 401
    )
    login = client.post("/api/token", data={"username": "alice", "password": NEW_PASSWORD})
    assert login.status_code == 200
    used = confirm(client, token, "yet another passphrase")
    assert used.status_code == 400
    assert verify_password(NEW_PASSWORD, stored_hash(db, user.id))[0]


def test_the_same_answer_whether_or_not_an_account_has_the_address(
    client, make_account, send, db, count_statements
):
    make_account("alice", email="alice@example.com")
    known_counter = count_statements()
    known = client.post("/api/password-reset", json={"email": "alice@example.com"})
    known_statements = known_counter.count
    unknown_counter = count_statements()
    unknown = client.post("/api/password-reset", json={"email": "nobody@example.com"})
    assert (known.status_code, known.content) == (unknown.status_code, unknown.content)
    assert known.status_code == 202
    # The same statements either way but three: retiring older links, storing the new one
    # and its message.
    assert known_statements - (unknown_counter.count - known_statements) - known_statements == 3
    assert [m.recipients for m in send()] == [["alice@example.com"]]
    page_known = client.post(
        "/password-reset",
        data={"email": "alice@example.com", "csrf_token": form_token(client, "/password-reset")},
        follow_redirects=False,
    )
    page_unknown = client.post(
        "/password-reset",
        data={"email": "nobody@example.com", "csrf_token": form_token(client, "/password-reset")},
        follow_redirects=False,
    )
    assert page_known.status_code == page_unknown.status_code == 303
    assert page_known.headers["location"] == page_unknown.headers["location"]


def test_a_link_expires_after_an_hour(client, make_account, send, clock):
    make_account("alice", email="alice@example.com")
    token = reset_token(client, send, "alice@example.com")
    clock.advance(minutes=60, seconds=1)
    assert confirm(client, token).status_code == 400
    page = client.get(f"/password-reset/{token}")
    assert page.status_code == 400
    assert "This link no longer works" in page.text
    assert 'href="http://testserver/password-reset"' in page.text


def test_a_newer_link_replaces_the_older(client, make_account, send):
    make_account("alice", email="alice@example.com")
    first = reset_token(client, send, "alice@example.com")
    second = reset_token(client, send, "alice@example.com")
    assert confirm(client, first).status_code == 400
    assert confirm(client, second).status_code == 204


@pytest.mark.parametrize("token", ["nonsense", "x" * 200, "%00", "é" * 10])
def test_unknown_tokens_get_a_clear_page(client, token):
    page = client.get(f"/password-reset/{token}")
    assert page.status_code == 400
    assert "This link no longer works" in page.text
    assert confirm(client, token).status_code == 400


def test_the_form_journey_logs_in_and_ends_other_sessions(
    client, make_account, browser_session, send, db
):
    user = make_account("alice", email="alice@example.com")
    elsewhere = TestClient(client.app)
    browser_session(elsewhere, user)
    assert elsewhere.get("/account").status_code == 200
    page = client.get("/login")
    assert 'href="http://testserver/password-reset"' in page.text
    request = client.post(
        "/password-reset",
        data={"email": "alice@example.com", "csrf_token": form_token(client, "/password-reset")},
    )
    assert "If an account has that address" in request.text
    (received,) = send()
    link = link_in(received, "/password-reset/")
    form = client.get(link)
    assert form.status_code == 200 and "alice" in form.text
    token = csrf_from(form.text)
    mismatch = client.post(
        link,
        data={"new_password": NEW_PASSWORD, "confirm_password": "other", "csrf_token": token},
    )
    assert mismatch.status_code == 422 and "The passwords do not match" in mismatch.text
    common = client.post(
        link,
        data={
            "new_password": "password123",
            "confirm_password": "password123",
            "csrf_token": token,
        },
    )
    assert common.status_code == 422 and "too common" in common.text
    done = client.post(
        link,
        data={"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert client.get("/account").status_code == 200  # logged in here
    assert elsewhere.get("/account", follow_redirects=False).status_code == 303  # not there
    again = client.get(link)
    assert again.status_code == 400 and "This link no longer works" in again.text
    login(TestClient(client.app), "alice", NEW_PASSWORD)


def test_requests_are_throttled_per_address_asked_about(client, make_account, send):
    make_account("alice", email="alice@example.com")
    statuses = [
        client.post("/api/password-reset", json={"email": "alice@example.com"}).status_code
        for _ in range(5)
    ]
    assert statuses == [202, 202, 202, 429, 429]
    assert len(send()) == 3
    # An address no account has is throttled the same, so a 429 tells nothing either.
    unknown = [
        client.post("/api/password-reset", json={"email": "nobody@example.com"}).status_code
        for _ in range(4)
    ]
    assert unknown == [202, 202, 202, 429]
    page = client.post(
        "/password-reset",
        data={"email": "alice@example.com", "csrf_token": form_token(client, "/password-reset")},
    )
    assert page.status_code == 429 and "Try again in" in page.text


def test_requests_are_throttled_per_client_address(client, send):
    statuses = [
        client.post("/api/password-reset", json={"email": f"n{n}@example.com"}).status_code
        for n in range(21)
    ]
    assert statuses[:20] == [202] * 20 and statuses[20] == 429
    assert (
        int(
            client.post("/api/password-reset", json={"email": "x@example.com"}).headers[
                "retry-after"
            ]
        )
        > 0
    )


def test_a_pending_address_gets_no_link_and_a_reset_verifies_the_address(
    client, make_account, send, db
):
    user = make_account("alice", email="alice@example.com", pending_email="new@example.com")
    assert client.post("/api/password-reset", json={"email": "new@example.com"}).status_code == 202
    assert send() == []
    assert user.email_verified_at is None
    token = reset_token(client, send, "alice@example.com")
    assert confirm(client, token).status_code == 204
    db.commit()
    db.expire_all()
    assert db.get(User, user.id).email_verified_at is not None


def test_a_link_to_an_address_the_account_no_longer_has_opens_nothing(
    client, make_account, send, db
):
    user = make_account("alice", email="alice@example.com")
    token = reset_token(client, send, "alice@example.com")
    db.get(User, user.id).email = "moved@example.com"
    db.commit()
    assert client.get(f"/password-reset/{token}").status_code == 400
    assert confirm(client, token).status_code == 400


def test_a_reset_link_is_not_kept_past_its_hour(client, make_account, clock, db):
    """The outbox stops trying when the link it carries expires."""
    make_account("alice", email="alice@example.com")
    assert (
        client.post("/api/password-reset", json={"email": "alice@example.com"}).status_code == 202
    )
    db.commit()
    message = db.scalar(select(OutboxMessage).order_by(OutboxMessage.id.desc()))
    assert message.give_up_at - message.created_at == timedelta(hours=1)


def test_a_suspended_account_resets_its_password_but_is_not_logged_in(
    client, db, make_account, send
):
    user = make_account("muted", email="muted@example.com")
    token = reset_token(client, send, "muted@example.com")
    db.get(User, user.id).suspended_at = utcnow()
    db.commit()
    link = f"/password-reset/{token}"
    fields = {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    done = client.post(
        link, data={**fields, "csrf_token": form_token(client, link)}, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"] == "http://testserver/login"
    page = client.get("/login")
    assert "Your password has been changed. This account is suspended." in page.text
    assert client.get("/account", follow_redirects=False).status_code == 303  # not logged in
    assert verify_password(NEW_PASSWORD, stored_hash(db, user.id))[0]
