"""Where the browser tests find Chromium and keep their files."""

from playwright.sync_api import Page, expect

from tests.support.accounts import PASSWORD
from tests.support.server import ROOT

E2E_DIR = ROOT / "tests" / "e2e"
ARTIFACTS_DIR = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Log in through the form and wait until the site shows it."""
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
