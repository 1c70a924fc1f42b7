"""Browser journeys through revision history: two tabs editing one post at once (merged, or
a conflict with nothing lost), and editing, comparing and restoring an old revision."""

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.api import Account, create_post, create_user, get_token
from tests.support.browser import log_in

PARAGRAPHS = ["The river was high in March.", "We walked the towpath.", "Tea at the lock."]


@pytest.fixture
def author(live_server: str) -> Account:
    return create_user(live_server)


@pytest.fixture
def two_tabs(browser: Browser, live_server: str, author: Account) -> Iterator[tuple[Page, Page]]:
    """Two browser windows of the same author, each with its own session."""
    contexts = [browser.new_context(base_url=live_server) for _ in range(2)]
    pages = [context.new_page() for context in contexts]
    for page in pages:
        log_in(page, author.username)
    try:
        yield pages[0], pages[1]
    finally:
        for context in contexts:
            context.close()


def new_post(live_server: str, author: Account) -> int:
    token = get_token(live_server, author.username)
    return create_post(live_server, token, "Towpath walk", "\n\n".join(PARAGRAPHS))["id"]


def stored_content(live_server: str, post_id: int) -> str:
    return httpx.get(f"{live_server}/api/posts/{post_id}", timeout=10).json()["content"]


def edit_in_both(tabs: tuple[Page, Page], live_server: str, author: Account) -> int:
    """A new post, its edit form open in both tabs; returns its id."""
    post_id = new_post(live_server, author)
    for page in tabs:
        page.goto(f"/posts/{post_id}/edit")
    return post_id


def rewrite(page: Page, old: str, new: str) -> None:
    """Change one paragraph in the open edit form's text, as a person typing would."""
    content = page.get_by_label("Content")
    content.fill(content.input_value().replace(old, new))


def test_edits_of_different_paragraphs_in_two_tabs_both_survive(
    two_tabs: tuple[Page, Page], live_server: str, author: Account
) -> None:
    first, second = two_tabs
    post_id = edit_in_both(two_tabs, live_server, author)
    rewrite(first, PARAGRAPHS[0], "The river was low in May.")
    rewrite(second, PARAGRAPHS[2], "Cake at the lock.")
    first.get_by_role("button", name="Save changes").click()
    expect(first.get_by_role("status")).to_contain_text("Your post has been updated.")
    second.get_by_role("button", name="Save changes").click()
    expect(second.get_by_role("status")).to_contain_text("both have been kept")
    post = second.locator(".post-content")
    expect(post).to_contain_text("The river was low in May.")
    expect(post).to_contain_text("Cake at the lock.")
    assert stored_content(live_server, post_id) == "\n\n".join(
        ["The river was low in May.", PARAGRAPHS[1], "Cake at the lock."]
    )


def test_overlapping_edits_in_two_tabs_show_the_conflict_and_lose_nothing(
    two_tabs: tuple[Page, Page], live_server: str, author: Account
) -> None:
    first, second = two_tabs
    post_id = edit_in_both(two_tabs, live_server, author)
    rewrite(first, PARAGRAPHS[1], "We cycled the towpath.")
    rewrite(second, PARAGRAPHS[1], "We ran along the towpath.")
    first.get_by_role("button", name="Save changes").click()
    expect(first.get_by_role("status")).to_contain_text("Your post has been updated.")
    second.get_by_role("button", name="Save changes").click()
    expect(second.get_by_role("alert")).to_contain_text("changed elsewhere")
    expect(second.get_by_label("Content")).to_have_value(re.compile("We ran along the towpath."))
    saved = second.get_by_role("region", name="The saved version")
    expect(saved).to_contain_text("We cycled the towpath.")
    assert "We cycled the towpath." in stored_content(live_server, post_id)
    # Saving again from the conflict form is a deliberate choice, and goes through.
    second.get_by_role("button", name="Save changes").click()
    expect(second.get_by_role("status")).to_contain_text("Your post has been updated.")
    assert "We ran along the towpath." in stored_content(live_server, post_id)


def test_edit_twice_compare_and_restore(page: Page, live_server: str, author: Account) -> None:
    log_in(page, author.username)
    post_id = new_post(live_server, author)
    for old, new in ((PARAGRAPHS[0], "The river was low."), (PARAGRAPHS[2], "Soup at the lock.")):
        page.goto(f"/posts/{post_id}/edit")
        rewrite(page, old, new)
        page.get_by_role("button", name="Save changes").click()
        expect(page.get_by_role("status")).to_contain_text("Your post has been updated.")

    # From the author's view of the post to its history: three revisions, newest first.
    page.get_by_role("link", name="History", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("History of")
    rows = page.locator("table.history tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first.get_by_role("rowheader")).to_contain_text("3")

    # Compare the first revision with the latest: radios and a button, no script needed.
    page.get_by_label("Compare from revision 1").check()
    page.get_by_label("Compare to revision 3").check()
    page.get_by_role("button", name="Compare the chosen revisions").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Changes from revision 1 to revision 3"
    )
    diff = page.locator(".diff-text")
    expect(diff.locator("del").first).to_contain_text("high in March")
    expect(diff.locator("ins").first).to_contain_text("low")
    expect(diff.locator("ins").last).to_contain_text("Soup")

    # Restore the first revision: asked first, then saved as a new revision.
    page.goto(f"/posts/{post_id}/history")
    page.get_by_role("link", name="Restore revision 1").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Restore revision 1?")
    page.get_by_role("button", name="Restore revision 1").click()
    expect(page.get_by_role("status")).to_contain_text("restored as revision 4")
    expect(rows).to_have_count(4)
    assert stored_content(live_server, post_id) == "\n\n".join(PARAGRAPHS)
