"""Who may register: anyone (open), only people an admin invited (invite), or nobody
(closed); invitations mailed through the outbox, single-use, expiring and withdrawable."""

from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from models import ADMIN_ROLE, AuditEntry, Invitation, User
from services import invitations, users
from tests.support.accounts import PASSWORD, form_token
from tests.support.smtp import link_in


@pytest.fixture
def registration_mode() -> str:
    return "invite"  # a test parametrized with another mode overrides this


@pytest.fixture
def settings(settings, registration_mode):
    return settings.model_copy(update={"registration_mode": registration_mode})


@pytest.fixture
def admin_client(app, make_user, browser_session):
    with TestClient(app) as client:
        browser_session(client, make_user("boss", role=ADMIN_ROLE))
        yield client


def invite(admin_client: TestClient, email: str):
    token = form_token(admin_client, "/admin/invitations")
    data = {"csrf_token": token, "email": email}
    return admin_client.post("/admin/invitations", data=data, follow_redirects=False)


def invitation_link(admin_client: TestClient, send, email: str) -> str:
    """Invite `email` and return the link of the mail that reached it."""
    assert invite(admin_client, email).status_code == 303
    (received,) = send()
    assert received.recipients == [email]
    assert received.subject == "boss invites you to write on Inkwell"
    link = link_in(received, "/register")
    assert link in received.body("html")
    return urlsplit(link).path + "?" + urlsplit(link).query


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["invitation"][0]


def register_form(client: TestClient, link: str, username: str, email: str):
    token = form_token(client, "/login")  # the link's page has no form once it is not live
    data = {
        "csrf_token": token,
        "username": username,
        "email": email,
        "password": PASSWORD,
        "confirm_password": PASSWORD,
        "invitation": token_of(link),
    }
    return client.post("/register", data=data, follow_redirects=False)


def accounts(db) -> list[str]:
    db.rollback()  # a fresh read: the request's writes must be visible
    return list(db.scalars(select(User.username).order_by(User.id)))


def test_an_invitation_mailed_makes_one_verified_account(client, db, admin_client, send):
    link = invitation_link(admin_client, send, "guest@example.com")

    form = client.get(link)
    assert form.status_code == 200
    assert 'value="guest@example.com"' in form.text
    assert f'name="invitation" value="{token_of(link)}"' in form.text

    response = register_form(client, link, "guest", "guest@example.com")
    assert response.status_code == 303
    assert client.get("/account").status_code == 200  # logged in
    guest = db.scalar(select(User).where(User.username == "guest"))
    assert guest.email_verified_at is not None
    assert send() == []  # no confirmation link: the invitation proved the address

    with TestClient(client.app) as other:
        used = other.get(link)
        assert invitations.INVITATION_NOT_LIVE in used.text
        assert 'name="password"' not in used.text
        again = register_form(other, link, "second", "second@example.com")
    assert again.status_code == 403
    assert accounts(db) == ["boss", "guest"]
    page = admin_client.get("/admin/invitations").text
    assert "accepted by guest" in page
    log = db.scalars(select(AuditEntry.action)).all()
    assert log == ["invite"]


def test_an_invitation_to_another_address_still_needs_that_address_confirmed(
    client, db, admin_client, send
):
    link = invitation_link(admin_client, send, "guest@example.com")
    body = {
        "username": "renamed",
        "email": "elsewhere@example.com",
        "password": PASSWORD,
        "invitation": token_of(link),
    }
    assert client.post("/api/users", json=body).status_code == 201
    (confirmation,) = send()
    assert confirmation.recipients == ["elsewhere@example.com"]
    assert "/verify-email/" in link_in(confirmation, "/verify-email/")
    assert db.scalar(select(User.email_verified_at).where(User.username == "renamed")) is None


def test_without_a_live_invitation_nobody_registers(client, db, admin_client, send, clock):
    assert invitations.BY_INVITATION in client.get("/register").text
    assert ">Register</a>" not in client.get("/").text
    body = {"username": "walkin", "email": "walkin@example.com", "password": PASSWORD}
    refused = client.post("/api/users", json=body)
    assert refused.status_code == 403
    assert refused.json() == {"detail": invitations.BY_INVITATION}
    forged = client.post("/api/users", json=body | {"invitation": "made-up"})
    assert forged.json() == {"detail": invitations.INVITATION_NOT_LIVE}

    link = invitation_link(admin_client, send, "late@example.com")
    clock.advance(days=7, seconds=1)
    assert invitations.INVITATION_NOT_LIVE in client.get(link).text
    late = client.post("/api/users", json=body | {"invitation": token_of(link)})
    assert late.status_code == 403
    assert "expired" in admin_client.get("/admin/invitations").text
    assert accounts(db) == ["boss"]


def test_a_withdrawn_invitation_opens_nothing(client, db, admin_client, send):
    link = invitation_link(admin_client, send, "guest@example.com")
    invitation_id = db.scalar(select(Invitation.id))
    token = form_token(admin_client, "/admin/invitations")
    withdrawn = admin_client.post(
        f"/admin/invitations/{invitation_id}/withdraw",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert withdrawn.status_code == 303
    assert register_form(client, link, "guest", "guest@example.com").status_code == 403
    assert accounts(db) == ["boss"]
    assert "withdrawn" in admin_client.get("/admin/invitations").text
    assert db.scalars(select(AuditEntry.action)).all() == ["invite", "withdraw invitation"]
    again = admin_client.post(
        f"/admin/invitations/{invitation_id}/withdraw",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert "was no longer pending; nothing changed" in again.text
    for missing in (999999, 2**31, 10**25):  # past the INTEGER column too
        response = admin_client.post(
            f"/admin/invitations/{missing}/withdraw",
            data={"csrf_token": token},
            follow_redirects=False,
        )
        assert response.status_code == 404
    assert db.scalars(select(AuditEntry.action)).all() == ["invite", "withdraw invitation"]


def test_a_refused_registration_leaves_the_invitation_for_another_try(
    client, db, admin_client, send, make_user
):
    make_user("taken")
    link = invitation_link(admin_client, send, "guest@example.com")
    clash = register_form(client, link, "taken", "guest@example.com")
    assert clash.status_code == 409
    assert f'name="invitation" value="{token_of(link)}"' in clash.text  # kept for the retry
    assert register_form(client, link, "guest", "guest@example.com").status_code == 303
    assert accounts(db) == ["boss", "taken", "guest"]


def test_a_name_taken_by_a_racing_registration_is_a_conflict_not_an_error(
    client, db, admin_client, send, make_user, monkeypatch
):
    # As if the other registration committed between the early check and this one's commit.
    monkeypatch.setattr(users, "_ensure_unique", lambda *args, **kwargs: None)
    make_user("taken")
    link = invitation_link(admin_client, send, "guest@example.com")
    assert register_form(client, link, "taken", "guest@example.com").status_code == 409
    assert "pending" in admin_client.get("/admin/invitations").text
    assert register_form(client, link, "guest", "guest@example.com").status_code == 303


def test_a_token_of_any_length_is_refused_as_not_live(client, db):
    data = {
        "csrf_token": form_token(client, "/login"),
        "username": "walkin",
        "email": "walkin@example.com",
        "password": PASSWORD,
        "confirm_password": PASSWORD,
        "invitation": "x" * 5000,
    }
    response = client.post("/register", data=data)
    assert response.status_code == 403
    assert invitations.INVITATION_NOT_LIVE in response.text
    assert accounts(db) == []


def test_two_registrations_with_one_invitation_make_one_account(app, db, admin_client, send):
    link = invitation_link(admin_client, send, "guest@example.com")
    first, second = (
        invitations.check_mode(db, mode="invite", token=token_of(link)) for _ in range(2)
    )
    db.commit()
    invitations.accept(
        db, invitation=first, user=User(username="one", email="a@example.com"), mode="invite"
    )
    with pytest.raises(invitations.RegistrationRefusedError):
        invitations.accept(
            db, invitation=second, user=User(username="two", email="b@example.com"), mode="invite"
        )
    db.rollback()


def test_an_address_with_an_account_is_not_invited(db, admin_client, make_user, send):
    make_user("member", email="member@example.com")
    response = invite(admin_client, "member@example.com")
    assert response.status_code == 409
    assert invitations.HAS_ACCOUNT in response.text
    assert 'value="member@example.com"' in response.text
    bad = invite(admin_client, "no address")
    assert bad.status_code == 422
    assert 'value="no address"' in bad.text
    assert send() == []
    db.rollback()
    assert db.scalar(select(func.count(Invitation.id))) == 0


@pytest.mark.parametrize("registration_mode", ["closed"])
def test_closed_registration_refuses_everyone(client, db):
    page = client.get("/register")
    assert invitations.CLOSED in page.text
    assert 'name="password"' not in page.text
    assert ">Register</a>" not in client.get("/").text
    assert "Create an account" not in client.get("/login").text
    body = {"username": "walkin", "email": "walkin@example.com", "password": PASSWORD}
    assert client.post("/api/users", json=body).json() == {"detail": invitations.CLOSED}
    form = {**body, "confirm_password": PASSWORD, "csrf_token": form_token(client, "/login")}
    assert client.post("/register", data=form).status_code == 403
    assert accounts(db) == []


@pytest.mark.parametrize("registration_mode", ["open"])
def test_open_registration_needs_no_invitation_but_honours_one(client, db, admin_client, send):
    assert ">Register</a>" in client.get("/").text
    body = {"username": "walkin", "email": "walkin@example.com", "password": PASSWORD}
    stale = body | {"invitation": "stale" * 100}
    assert client.post("/api/users", json=stale).status_code == 201
    send()
    link = invitation_link(admin_client, send, "guest@example.com")
    assert register_form(client, link, "guest", "guest@example.com").status_code == 303
    assert db.scalar(select(User.email_verified_at).where(User.username == "guest")) is not None
