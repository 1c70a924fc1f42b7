"""Email verification: new accounts and new addresses get a single-use link; a new address
takes effect only once confirmed, and the old one is told; links are sent again on request,
a few an hour."""

from sqlalchemy import select

from models import User
from tests.support.accounts import PASSWORD, csrf_from, form_token
from tests.support.smtp import link_in


def stored(db, user_id: int) -> User:
    db.commit()
    db.expire_all()
    return db.get(User, user_id)


def follow(client, link: str):
    """Open the link and press its one button."""
    page = client.get(link)
    assert page.status_code == 200, page.text
    return client.post(link, data={"csrf_token": csrf_from(page.text)}, follow_redirects=False)


def register_page(client) -> None:
    data = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
    data |= {"confirm_password": PASSWORD, "csrf_token": form_token(client, "/register")}
    assert client.post("/register", data=data, follow_redirects=False).status_code == 303


def test_a_new_account_verifies_its_address(client, send, db):
    register_page(client)
    assert "alice@example.com is not verified yet" in client.get("/account").text
    (received,) = send()
    assert received.recipients == ["alice@example.com"]
    link = link_in(received, "/verify-email/")
    user = db.scalar(select(User))
    # Opening the link changes nothing by itself (mail scanners open links).
    assert "Confirm alice@example.com" in client.get(link).text
    assert stored(db, user.id).email_verified_at is None
    assert follow(client, link).status_code == 303
    assert stored(db, user.id).email_verified_at is not None
    assert "alice@example.com is verified" in client.get("/account").text
    again = client.get(link)
    assert again.status_code == 400 and "This link no longer works" in again.text


def test_a_new_address_waits_for_its_link_and_the_old_one_is_told(
    client, make_account, api_headers, send, db
):
    user = make_account("alice", email="alice@example.com")
    headers = api_headers(user)
    body = {"email": "new@example.com", "current_password": PASSWORD}
    changed = client.patch("/api/users/me", json=body, headers=headers)
    assert changed.status_code == 200
    assert changed.json()["email"] == "alice@example.com"
    assert changed.json()["pending_email"] == "new@example.com"
    assert changed.json()["email_verified"] is False
    (received,) = send()
    assert received.recipients == ["new@example.com"]
    assert stored(db, user.id).email == "alice@example.com"
    assert follow(client, link_in(received, "/verify-email/")).status_code == 303
    account = stored(db, user.id)
    assert (account.email, account.pending_email) == ("new@example.com", None)
    assert account.email_verified_at is not None
    (notice,) = send()
    assert notice.recipients == ["alice@example.com"]
    assert "new@example.com" in notice.body()
    me = client.get("/api/users/me", headers=headers).json()
    assert (me["email"], me["pending_email"], me["email_verified"]) == (
        "new@example.com",
        None,
        True,
    )


def test_a_replaced_pending_address_link_opens_nothing(client, make_account, api_headers, send):
    user = make_account("alice", email="alice@example.com")
    headers = api_headers(user)
    for address in ("first@example.com", "second@example.com"):
        body = {"email": address, "current_password": PASSWORD}
        assert client.patch("/api/users/me", json=body, headers=headers).status_code == 200
    first, second = send()
    assert client.get(link_in(first, "/verify-email/")).status_code == 400
    assert follow(client, link_in(second, "/verify-email/")).status_code == 303


def test_an_address_taken_meanwhile_is_not_taken_over(
    client, make_account, make_user, api_headers, send, db
):
    user = make_account("alice", email="alice@example.com")
    body = {"email": "shared@example.com", "current_password": PASSWORD}
    assert client.patch("/api/users/me", json=body, headers=api_headers(user)).status_code == 200
    (received,) = send()
    make_user("bob", email="shared@example.com")
    response = follow(client, link_in(received, "/verify-email/"))
    assert response.status_code == 303
    assert stored(db, user.id).email == "alice@example.com"


def test_the_account_page_sends_the_link_again_a_few_times_an_hour(
    client, make_account, browser_session, send, clock
):
    browser_session(client, make_account("alice", email="alice@example.com"))
    page = client.get("/account").text
    assert "Send the confirmation link again" in page
    messages = []
    for _ in range(4):
        token = form_token(client, "/account")
        response = client.post("/account/verification", data={"csrf_token": token})
        messages.append(response.text)
    assert sum("We have sent a new link to alice@example.com" in m for m in messages) == 3
    assert "Try again in" in messages[3]
    links = [link_in(received, "/verify-email/") for received in send()]
    assert len(links) == 3
    # Only the newest link works.
    assert client.get(links[0]).status_code == 400
    assert follow(client, links[2]).status_code == 303
    assert "Send the confirmation link again" not in client.get("/account").text


def test_the_account_form_keeps_a_new_address_pending(
    client, make_account, browser_session, send, db
):
    user = make_account("mover", email="mover@example.com")
    browser_session(client, user)
    data = {"username": "mover", "email": "new@example.com", "password": PASSWORD}
    data["csrf_token"] = form_token(client, "/account")
    done = client.post("/account", data=data)
    assert "We have sent a link to new@example.com" in done.text
    assert "Waiting for confirmation" in done.text
    assert stored(db, user.id).email == "mover@example.com"
    # Giving the current address again cancels the change.
    data["email"], data["csrf_token"] = "mover@example.com", form_token(client, "/account")
    client.post("/account", data=data)
    assert stored(db, user.id).pending_email is None
    first = send()[0]
    assert client.get(link_in(first, "/verify-email/")).status_code == 400
