"""Two-factor sign-in in a real browser, on a server whose clock the test moves: turn it on
from the account page (the key read off the page, the code computed for the server's
time), log out, log in with a code, then log in with a recovery code."""

from datetime import timedelta

import pyotp
from playwright.sync_api import Browser, Locator, Page, expect

from tests.support.accounts import PASSWORD
from tests.support.api import create_user


def flash(page: Page) -> Locator:
    return page.get_by_role("status")


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out", exact=True).click()
    expect(page.get_by_role("link", name="Log in", exact=True)).to_be_visible()


def enter_password(page: Page, username: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()


def enter_code(page: Page, code: str) -> None:
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    # The password alone made no session: the page still offers to log in.
    expect(page.get_by_role("button", name="Log out", exact=True)).to_have_count(0)
    page.get_by_label("Code", exact=True).fill(code)
    page.get_by_role("button", name="Log in", exact=True).click()


def test_turn_on_two_factor_then_log_in_with_a_code_and_a_recovery_code(
    browser: Browser, timed_server
) -> None:
    base_url, clock = timed_server
    account = create_user(base_url)
    page = browser.new_context(base_url=base_url).new_page()
    enter_password(page, account.username)
    expect(flash(page)).to_contain_text(f"Welcome back, {account.username}!")

    # Set-up: the QR code and the key, then a code from the key as an app would make it.
    page.goto("/account")
    expect(page.locator(".two-factor-status")).to_contain_text("Off.")
    page.get_by_role("link", name="Set up two-factor sign-in").click()
    page.get_by_role("button", name="Set up two-factor sign-in").click()
    qr_code = page.locator("svg.qr-code")
    expect(qr_code).to_be_visible()
    assert qr_code.bounding_box()["width"] >= 100
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    authenticator = pyotp.TOTP(secret)
    page.get_by_label("Code", exact=True).fill(authenticator.at(clock.moment))
    page.get_by_role("button", name="Turn on two-factor sign-in").click()

    # The recovery codes, once.
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    codes = page.locator(".recovery-codes code").all_inner_texts()
    assert len(codes) == 10 and len(set(codes)) == 10
    page.get_by_role("link", name="I have saved them").click()
    expect(page.locator(".two-factor-status")).to_contain_text("On.")
    assert not any(code in page.content() for code in codes)
    log_out(page)

    # A code: the set-up's own is spent, the next time step's opens the account.
    clock.advance(seconds=30)
    enter_password(page, account.username)
    enter_code(page, authenticator.at(clock.moment - timedelta(seconds=30)))
    expect(page.get_by_text("That code is not right, or it has been used already")).to_be_visible()
    page.get_by_label("Code", exact=True).fill(authenticator.at(clock.moment))
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(flash(page)).to_contain_text(f"Welcome back, {account.username}!")
    expect(page.get_by_role("button", name="Log out", exact=True)).to_be_visible()
    log_out(page)

    # A recovery code, typed in lower case.
    enter_password(page, account.username)
    enter_code(page, codes[0].lower())
    expect(flash(page)).to_contain_text("You used a recovery code: 9 left.")
    page.goto("/account/two-factor")
    expect(page.get_by_text("You have 9 unused recovery codes.")).to_be_visible()
