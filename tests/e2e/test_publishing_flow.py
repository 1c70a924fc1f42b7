"""A browser journey through publishing: a draft, its review link opened by someone else,
a schedule, and the moment it goes live, on a server whose clock the test moves."""

import re
from datetime import timedelta

import feedparser
import httpx
from playwright.sync_api import Browser, Page, expect

from tests.support.accounts import PASSWORD
from tests.support.api import create_user

LOCAL_INPUT = "%Y-%m-%dT%H:%M"


def log_in(page: Page, username: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_draft_review_schedule_and_go_live(browser: Browser, timed_server) -> None:
    base_url, clock = timed_server
    author = create_user(base_url)
    writer = browser.new_context(base_url=base_url).new_page()
    reviewer = browser.new_context(base_url=base_url).new_page()
    log_in(writer, author.username)

    # A draft, tagged.
    writer.goto("/posts/new")
    writer.get_by_label("Title").fill("Balloon season")
    writer.get_by_label("Content").fill("The first flights of the year.")
    writer.get_by_label("Tags").fill("Ballooning, Spring")
    writer.get_by_label("Save as a draft").check()
    writer.get_by_role("button", name="Save", exact=True).click()
    expect(writer.get_by_role("status")).to_contain_text("Your draft has been saved.")
    expect(writer.locator(".preview-banner")).to_contain_text("this is a draft")

    # Shared for review: someone without an account reads it through the link.
    writer.get_by_role("link", name="Edit", exact=True).click()
    writer.get_by_role("button", name="Create a review link").click()
    flash = writer.get_by_role("status").inner_text()
    review_url = re.search(r"https?://\S+/review/\S+", flash).group(0)
    reviewer.goto(review_url)
    expect(reviewer.get_by_role("heading", level=1)).to_have_text("Balloon season")
    expect(reviewer.locator(".preview-banner")).to_be_visible()
    reviewer.goto("/")
    expect(reviewer.get_by_text("Balloon season")).to_have_count(0)

    # Scheduled for tomorrow at nine, in the author's time zone (UTC by default).
    go_live = (clock.moment + timedelta(days=1)).replace(hour=9, minute=0)
    writer.get_by_label("Schedule for").check()
    writer.get_by_label(re.compile("Date and time to go live")).fill(go_live.strftime(LOCAL_INPUT))
    writer.get_by_role("button", name="Save changes").click()
    expect(writer.get_by_role("status")).to_contain_text("Your post is scheduled.")

    reviewer.reload()
    expect(reviewer.get_by_text("Balloon season")).to_have_count(0)
    clock.set(go_live - timedelta(seconds=1))
    reviewer.reload()
    expect(reviewer.get_by_text("Balloon season")).to_have_count(0)

    # Its moment comes: on the home page and in the tag's feed, with nothing else done.
    clock.set(go_live)
    reviewer.reload()
    expect(reviewer.get_by_role("link", name="Balloon season")).to_be_visible()
    feed = feedparser.parse(httpx.get(f"{base_url}/tags/ballooning/feed.xml").text)
    assert [entry.title for entry in feed.entries] == ["Balloon season"]
    reviewer.get_by_role("link", name="Ballooning").first.click()
    expect(reviewer.get_by_role("heading", level=1)).to_contain_text("Ballooning")
