"""Two-factor sign-in: set-up from the account page, the code step of a login bound to its
first step, codes accepted once, recovery codes, throttling, the API token, turning it off;
and the two steps of one login on two worker processes."""

import httpx
import pytest
from sqlalchemy import select

from models import AuthSession, RecoveryCode, User
from services import accounts, two_factor
from services.tokens import digest
from tests.support.accounts import PASSWORD, csrf_from, form_token, login
from tests.support.two_factor import (
    SECRET,
    code_at,
    enable_two_factor,
    recovery_codes_from,
    secret_from,
)
from web.cookies import PENDING_LOGIN_COOKIE, SESSION_COOKIE


def reload(db, user: User) -> User:
    db.commit()
    db.expire_all()
    return db.get(User, user.id)


def sessions_of(db, user: User, kind: str = "browser") -> int:
    db.commit()
    rows = db.scalars(select(AuthSession).where(AuthSession.user_id == user.id)).all()
    return sum(1 for row in rows if row.kind == kind)


def first_step(client, username: str, next_path: str = "") -> httpx.Response:
    token = form_token(client, "/login")
    data = {"username": username, "password": PASSWORD, "csrf_token": token, "next": next_path}
    return client.post("/login", data=data, follow_redirects=False)


def second_step(client, code: str, next_path: str = "") -> httpx.Response:
    page = client.get("/login/code", follow_redirects=False)
    token = csrf_from(page.text) if page.status_code == 200 else form_token(client, "/login")
    data = {"code": code, "csrf_token": token, "next": next_path}
    return client.post("/login/code", data=data, follow_redirects=False)


# ---------------------------------------------------------------- set-up


def test_set_up_shows_a_qr_code_and_the_key_and_turns_on_only_with_a_code(
    client, db, clock, make_account
):
    user = make_account("guarded")
    login(client, "guarded")
    assert "<strong>Off.</strong>" in client.get("/account").text
    token = form_token(client, "/account/two-factor")
    started = client.post("/account/two-factor/setup", data={"csrf_token": token})
    assert started.status_code == 200 and started.url.path == "/account/two-factor"
    secret = secret_from(started.text)
    # The key waits on the server; the QR code is drawn there too, as inline SVG.
    user = reload(db, user)
    assert user.totp_pending_secret == secret and user.totp_secret is None
    assert '<svg width="' in started.text and 'class="qr-code"' in started.text
    uri = two_factor.provisioning_uri(secret, username="guarded", issuer="Inkwell")
    assert uri.startswith("otpauth://totp/Inkwell:guarded?secret=" + secret)
    assert str(two_factor.qr_code_svg(uri, title="QR code for Inkwell")) in started.text

    # A code from any other key does not turn it on.
    wrong = client.post(
        "/account/two-factor/confirm",
        data={"code": code_at(SECRET, clock()), "csrf_token": token},
    )
    assert wrong.status_code == 400 and two_factor.WRONG_CODE in wrong.text
    assert reload(db, user).totp_secret is None

    confirmed = client.post(
        "/account/two-factor/confirm", data={"code": code_at(secret, clock()), "csrf_token": token}
    )
    assert confirmed.status_code == 200
    codes = recovery_codes_from(confirmed.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    user = reload(db, user)
    assert user.totp_secret == secret and user.totp_pending_secret is None
    stored = set(db.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)))
    assert stored == {digest(code.replace("-", "")) for code in codes}
    assert not {code.replace("-", "") for code in codes} & stored  # hashes, not the codes

    # Shown once: neither page shows a code again, and the account page says it is on.
    for path in ("/account", "/account/two-factor"):
        page = client.get(path).text
        assert not any(code in page for code in codes), path
        assert "<strong>On.</strong>" in page
    assert "10 unused recovery codes" in client.get("/account/two-factor").text


def test_turning_it_on_ends_the_other_sessions_and_keeps_this_one(
    client, db, clock, make_account, browser_session, api_headers
):
    user = make_account("careful")
    api_headers(user)
    elsewhere = browser_session(client, user)  # another browser
    client.cookies.clear()
    login(client, "careful")
    assert sessions_of(db, user) == 2 and sessions_of(db, user, "api") == 1
    token = form_token(client, "/account/two-factor")
    page = client.post("/account/two-factor/setup", data={"csrf_token": token})
    code = code_at(secret_from(page.text), clock())
    client.post("/account/two-factor/confirm", data={"code": code, "csrf_token": token})
    assert sessions_of(db, user) == 1 and sessions_of(db, user, "api") == 0
    assert elsewhere != client.cookies[SESSION_COOKIE]
    assert client.get("/account", follow_redirects=False).status_code == 200


def test_confirming_needs_a_set_up_in_progress(client, make_account):
    make_account("hasty")
    login(client, "hasty")
    token = form_token(client, "/account/two-factor")
    response = client.post(
        "/account/two-factor/confirm", data={"code": "123456", "csrf_token": token}
    )
    assert response.status_code == 409


# ---------------------------------------------------------------- logging in


def test_the_password_alone_makes_no_session_only_a_pending_login(client, db, clock, make_account):
    user = make_account("twostep")
    enable_two_factor(db, user)
    response = first_step(client, "twostep", "/drafts")
    assert response.status_code == 303
    assert response.headers["location"] == "http://testserver/login/code?next=%2Fdrafts"
    assert SESSION_COOKIE not in response.cookies and PENDING_LOGIN_COOKIE in response.cookies
    assert sessions_of(db, user) == 0 and sessions_of(db, user, "pending") == 1
    assert client.get("/account", follow_redirects=False).status_code == 303

    clock.advance(seconds=30)  # the set-up used this moment's code
    done = second_step(client, code_at(SECRET, clock()), "/drafts")
    assert done.status_code == 303 and done.headers["location"] == "/drafts"
    assert sessions_of(db, user) == 1 and sessions_of(db, user, "pending") == 0
    assert "twostep" in client.get("/account").text


def test_the_code_step_needs_the_first_step(client, db, clock, make_account, browser_session):
    user = make_account("bound")
    enable_two_factor(db, user)
    clock.advance(seconds=30)
    code = code_at(SECRET, clock())
    # No pending login at all, a made-up one, and a live session instead of one.
    assert second_step(client, code).headers["location"].startswith("http://testserver/login")
    client.cookies.set(PENDING_LOGIN_COOKIE, "made-up")
    assert second_step(client, code).headers["location"].startswith("http://testserver/login")
    client.cookies.delete(PENDING_LOGIN_COOKIE)
    browser_session(client, user)
    assert client.get("/login/code", follow_redirects=False).status_code == 303
    assert sessions_of(db, user) == 1
    # The right code still works afterwards: nothing above used it up.
    client.cookies.clear()
    first_step(client, "bound")
    assert second_step(client, code).status_code == 303


def test_a_pending_login_lasts_five_minutes(client, db, clock, make_account):
    user = make_account("slow")
    enable_two_factor(db, user)
    first_step(client, "slow")
    clock.advance(minutes=5, seconds=1)
    response = second_step(client, code_at(SECRET, clock()))
    assert response.status_code == 303
    assert response.headers["location"].startswith("http://testserver/login")
    assert sessions_of(db, user) == 0


def test_a_code_works_once_and_only_near_its_moment(client, db, clock, make_account):
    user = make_account("replay")
    enable_two_factor(db, user)
    clock.advance(seconds=30)
    code = code_at(SECRET, clock())
    first_step(client, "replay")
    assert second_step(client, code).status_code == 303

    # The same code again, within its window: refused (so is the set-up's, one step older).
    client.cookies.clear()
    first_step(client, "replay")
    again = second_step(client, code)
    assert again.status_code == 400 and two_factor.WRONG_CODE in again.text
    assert second_step(client, code_at(SECRET, clock(), -1)).status_code == 400
    # One step ahead (a phone's fast clock) is fine; two steps away is not.
    assert second_step(client, code_at(SECRET, clock(), 2)).status_code == 400
    assert second_step(client, code_at(SECRET, clock(), 1)).status_code == 303
    user = reload(db, user)
    assert user.totp_last_step == two_factor._totp(SECRET).timecode(clock()) + 1


def test_a_recovery_code_logs_in_once(client, db, clock, make_account):
    user = make_account("lostphone")
    codes = enable_two_factor(db, user)
    first_step(client, "lostphone")
    done = second_step(client, codes[3].lower().replace("-", " "))  # as people type it
    assert done.status_code == 303
    assert "You used a recovery code: 9 left." in client.get("/").text
    client.cookies.clear()
    first_step(client, "lostphone")
    assert second_step(client, codes[3]).status_code == 400
    assert second_step(client, codes[4]).status_code == 303


def test_wrong_codes_are_throttled_and_the_password_does_not_reset_the_count(
    client, db, clock, make_account
):
    user = make_account("guessed")
    enable_two_factor(db, user)
    first_step(client, "guessed")
    statuses = [second_step(client, f"{n:06d}").status_code for n in range(7)]
    assert statuses == [400] * 5 + [429, 429]
    # Logging in again with the right password buys no more guesses.
    client.cookies.clear()
    assert first_step(client, "guessed").status_code == 303
    right = code_at(SECRET, clock(), 1)
    throttled = second_step(client, right)
    assert throttled.status_code == 429 and "Too many failed attempts" in throttled.text
    clock.advance(minutes=15)
    first_step(client, "guessed")
    assert second_step(client, code_at(SECRET, clock())).status_code == 303


def test_logging_in_without_two_factor_is_unchanged(client, db, make_account):
    user = make_account("plain")
    response = first_step(client, "plain", "/drafts")
    assert response.status_code == 303 and response.headers["location"] == "/drafts"
    assert sessions_of(db, user) == 1 and sessions_of(db, user, "pending") == 0


def test_finish_login_asks_for_the_code_whatever_proved_who_the_user_is(db, make_account):
    """The one way to log a browser in (the password, or any other proof) honours 2FA."""
    user = make_account("proved")
    assert isinstance(accounts.finish_login(db, user=user), accounts.LoggedIn)
    enable_two_factor(db, user)
    assert isinstance(accounts.finish_login(db, user=user), accounts.CodeNeeded)
    assert sessions_of(db, user) == 0


# ---------------------------------------------------------------- API tokens


def token_request(client, username: str, **extra: str) -> httpx.Response:
    return client.post("/api/token", data={"username": username, "password": PASSWORD, **extra})


def test_an_api_token_needs_the_code_too(client, db, clock, make_account):
    from routers.api.common import OTP_NEEDED, OTP_WRONG

    user = make_account("scripted")
    codes = enable_two_factor(db, user)
    clock.advance(seconds=30)
    missing = token_request(client, "scripted")
    assert missing.status_code == 401 and missing.json() == {"detail": OTP_NEEDED}
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = token_request(client, "scripted", otp="000000")
    assert wrong.status_code == 401 and wrong.json() == {"detail": OTP_WRONG}
    code = code_at(SECRET, clock())
    issued = token_request(client, "scripted", otp=code)
    assert issued.status_code == 200
    headers = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    assert client.get("/api/users/me", headers=headers).json()["username"] == "scripted"
    assert token_request(client, "scripted", otp=code).status_code == 401  # used
    assert token_request(client, "scripted", otp=codes[0]).status_code == 200
    assert token_request(client, "scripted", otp=codes[0]).status_code == 401
    # Without two-factor sign-in an otp is not needed, and one sent is ignored.
    make_account("plainapi")
    assert token_request(client, "plainapi").status_code == 200
    assert token_request(client, "plainapi", otp="whatever").status_code == 200


def test_api_codes_are_throttled_like_passwords(client, db, make_account):
    user = make_account("hammered")
    enable_two_factor(db, user)
    statuses = [token_request(client, "hammered", otp=f"{n:06d}").status_code for n in range(6)]
    assert statuses == [401] * 5 + [429]
    assert int(token_request(client, "hammered", otp="1").headers["retry-after"]) >= 1


# ---------------------------------------------------------------- turning it off, new codes


def disable(client, password: str, code: str) -> httpx.Response:
    token = form_token(client, "/account/two-factor")
    data = {"password": password, "code": code, "csrf_token": token}
    return client.post("/account/two-factor/disable", data=data, follow_redirects=False)


def test_turning_it_off_needs_the_password_and_a_code(
    client, db, clock, make_account, browser_session
):
    user = make_account("relaxed")
    codes = enable_two_factor(db, user)
    browser_session(client, user)  # another browser
    client.cookies.clear()
    first_step(client, "relaxed")
    clock.advance(seconds=30)
    second_step(client, code_at(SECRET, clock()))
    clock.advance(seconds=30)
    code = code_at(SECRET, clock())

    wrong_password = disable(client, "not my password", code)
    assert wrong_password.status_code == 400 and "not your current password" in wrong_password.text
    no_code = disable(client, PASSWORD, "")
    assert no_code.status_code == 400 and two_factor.CODE_NEEDED in no_code.text
    assert reload(db, user).two_factor_enabled

    done = disable(client, PASSWORD, codes[0])
    assert done.status_code == 303
    user = reload(db, user)
    assert user.totp_secret is None and user.totp_last_step is None
    assert db.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)).all() == []
    assert sessions_of(db, user) == 1  # this one; the other browser is logged out
    assert "<strong>Off.</strong>" in client.get("/account").text
    client.cookies.clear()
    assert first_step(client, "relaxed").headers["location"] == "/"


def test_new_recovery_codes_replace_the_old_ones(client, db, clock, make_account):
    user = make_account("renewed")
    old = enable_two_factor(db, user)
    clock.advance(seconds=30)
    first_step(client, "renewed")
    second_step(client, old[0])
    token = form_token(client, "/account/two-factor")
    page = client.post(
        "/account/two-factor/recovery-codes",
        data={"current_code": code_at(SECRET, clock()), "csrf_token": token},
    )
    new = recovery_codes_from(page.text)
    assert len(new) == 10 and not set(new) & set(old)
    assert "10 unused recovery codes" in client.get("/account/two-factor").text
    client.cookies.clear()
    first_step(client, "renewed")
    assert second_step(client, old[1]).status_code == 400
    assert second_step(client, new[1]).status_code == 303


# ---------------------------------------------------------------- across worker processes


@pytest.mark.server
def test_the_two_steps_of_a_login_on_two_workers(empty_database_url, tmp_path):
    """Worker 1 checks the password, worker 2 the code (the pending login, the throttle and
    the last code used are all in the database); replays and guesses are refused on either."""
    from tests.support.clock import ClockFile
    from tests.support.load import register
    from tests.support.server import migrate
    from tests.support.server_group import fresh_client, separate_workers

    migrate(empty_database_url)
    clock = ClockFile(tmp_path / "clock")
    with (
        separate_workers(empty_database_url, tmp_path / "media", 2, clock.path) as workers,
        fresh_client(workers[0].base_url) as first,
        fresh_client(workers[1].base_url) as second,
    ):
        register(workers[0].base_url, "roamer")
        login(first, "roamer")
        page = first.post(
            "/account/two-factor/setup",
            data={"csrf_token": form_token(first, "/account")},
            follow_redirects=True,
        )
        secret = secret_from(page.text)
        code = code_at(secret, clock.moment)
        second.cookies.update(first.cookies)
        confirmed = second.post(
            "/account/two-factor/confirm", data={"code": code, "csrf_token": csrf_from(page.text)}
        )
        assert len(recovery_codes_from(confirmed.text)) == 10

        def both_steps(code: str, password_on: httpx.Client, code_on: httpx.Client) -> int:
            password_on.cookies.clear()
            assert first_step(password_on, "roamer").status_code == 303
            code_on.cookies.clear()
            code_on.cookies.update(password_on.cookies)
            return second_step(code_on, code).status_code

        # The set-up's code is spent on both workers; the next step's works across them.
        assert both_steps(code, first, second) == 400
        clock.advance(seconds=30)
        code = code_at(secret, clock.moment)
        assert both_steps(code, first, second) == 303
        assert "roamer" in second.get("/account").text
        assert both_steps(code, second, first) == 400
        # Guesses alternate between the workers, counted together: with the replay above,
        # five failures since the last success are let through, the sixth refused on either.
        pairs = [(first, second), (second, first)]
        statuses = [both_steps(f"{n:06d}", *pairs[n % 2]) for n in range(6)]
        assert statuses == [400] * 4 + [429] * 2
