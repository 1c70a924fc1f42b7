"""A forgotten password in a real browser: ask for a link, follow it from the mail the SMTP
server caught, choose a new password, and log in with it."""

from playwright.sync_api import Page, expect

from tests.support.api import create_user
from tests.support.smtp import MailCatcher, link_in

NEW_PASSWORD = "a brand new passphrase"


def reset_mail(caught_mail: MailCatcher, address: str):
    """The reset message for `address`, once the server's sender has delivered it."""
    for count in range(1, 10):
        caught_mail.wait_for(count)
        resets = [m for m in caught_mail.to(address) if "Reset" in m.subject]
        if resets:
            return resets[0]
    raise AssertionError(f"no reset mail for {address}")


def test_a_forgotten_password_is_reset_from_the_mail(
    mailing_page: Page, mailing_server: str, caught_mail: MailCatcher
):
    page = mailing_page
    account = create_user(mailing_server)
    page.goto("/login")
    page.get_by_role("link", name="Reset it by email").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Reset your password")
    page.get_by_label("Email").fill(account.email)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("status")).to_contain_text("If an account has that address")

    link = link_in(reset_mail(caught_mail, account.email), "/password-reset/")
    assert link.startswith(mailing_server)
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a new password")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password has been changed")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()

    # Logged out, the old password no longer opens the account and the new one does.
    page.get_by_role("button", name="Log out").click()
    for password, works in ((account.password, False), (NEW_PASSWORD, True)):
        page.goto("/login")
        page.get_by_label("Username").fill(account.username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        logout = page.get_by_role("button", name="Log out")
        expect(logout).to_be_visible() if works else expect(logout).to_have_count(0)

    # The link was used up.
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("This link no longer works")
