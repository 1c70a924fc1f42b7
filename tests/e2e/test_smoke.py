"""Smoke tests: the home page, a post page and the 404 page in a real browser."""

import uuid

from playwright.sync_api import Page, expect

from tests.support.api import create_author_with_post
from tests.support.browser import ARTIFACTS_DIR


def test_home_lists_post_and_links_to_it(page: Page, live_server: str) -> None:
    title = f"Browser smoke {uuid.uuid4().hex[:8]}"
    create_author_with_post(live_server, title)

    page.goto("/")
    card = page.locator("article.post-card", has_text=title)
    expect(card.get_by_role("link", name=title)).to_be_visible()
    avatar = card.locator("img.avatar")
    expect(avatar).to_be_visible()
    assert avatar.evaluate("img => img.complete && img.naturalWidth") > 0

    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS_DIR / "home.png", full_page=True)

    card.get_by_role("link", name=title).click()
    expect(page.locator("h1")).to_have_text(title)


def test_unknown_post_shows_html_404_in_layout(page: Page) -> None:
    response = page.goto("/posts/999999")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("heading", name="We couldn\u2019t find that page")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
