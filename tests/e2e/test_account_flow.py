"""Accounts in a real browser: register, log in and out, write, edit and delete a post,
upload a profile picture; plus the login redirect, form errors and author-only controls."""

import io
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, Locator, Page, expect

from tests.support.api import (
    PASSWORD,
    create_author_with_post,
    create_post,
    create_user,
    get_token,
    unique_username,
    upload_picture,
)
from tests.support.browser import ARTIFACTS_DIR

RED = (220, 40, 40)
BLUE = (30, 90, 200)
AVATAR_NAME = re.compile(r"/media/profile_pics/[0-9a-f]{32}\.jpg")

LONG_CONTENT = (
    "The first paragraph sets the scene: a long walk along the coast, with the wind "
    "coming in from the west and the tide far out.\n"
    "\n"
    "The second paragraph has characters that must survive a round trip unchanged: "
    'Fish & chips, <em>not markup</em>, "double" and \u2018single\u2019 quotes, '
    "and an em dash \u2014 here.\n"
    "\n"
    "  An indented third paragraph,\n"
    "spread over two lines.\n"
    "\n" + "A fourth paragraph that simply goes on. " * 40
).strip()


# ---------------------------------------------------------------- helpers


def make_png(path: Path | None = None) -> bytes:
    """A real 400x250 PNG: red left half, blue right half, a yellow disc in the middle."""
    with Image.new("RGB", (400, 250), RED) as picture:
        draw = ImageDraw.Draw(picture)
        draw.rectangle((200, 0, 399, 249), fill=BLUE)
        draw.ellipse((170, 95, 230, 155), fill=(250, 210, 40))
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
    data = buffer.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


def nav(page: Page) -> Locator:
    return page.get_by_role("navigation", name="Main")


def expect_flash(page: Page, message: str) -> None:
    expect(page.get_by_role("status")).to_have_text(message)


def expect_logged_in(page: Page) -> None:
    links = nav(page)
    expect(links.get_by_role("link", name="New post", exact=True)).to_be_visible()
    expect(links.get_by_role("link", name="Account", exact=True)).to_be_visible()
    expect(links.get_by_role("button", name="Log out", exact=True)).to_be_visible()
    expect(links.get_by_role("link", name="Log in", exact=True)).to_have_count(0)
    expect(links.get_by_role("link", name="Register", exact=True)).to_have_count(0)


def expect_logged_out(page: Page) -> None:
    links = nav(page)
    expect(links.get_by_role("link", name="Log in", exact=True)).to_be_visible()
    expect(links.get_by_role("link", name="Register", exact=True)).to_be_visible()
    expect(links.get_by_role("button", name="Log out", exact=True)).to_have_count(0)
    expect(links.get_by_role("link", name="New post", exact=True)).to_have_count(0)


def submit_login(page: Page, username: str, password: str = PASSWORD) -> None:
    """Fill in and send the log-in form the page is showing."""
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in", exact=True).click()


def post_card(page: Page, title: str) -> Locator:
    return page.locator("article.post-card").filter(
        has=page.get_by_role("link", name=title, exact=True)
    )


def expect_uploaded_avatar(avatar: Locator) -> None:
    """The avatar is an uploaded picture (not the default) and the browser has decoded it."""
    expect(avatar).to_be_visible()
    expect(avatar).to_have_js_property("complete", True)
    expect(avatar).to_have_js_property("naturalWidth", 300)
    path = urlsplit(avatar.evaluate("img => img.src")).path
    assert AVATAR_NAME.fullmatch(path), path


def expect_url(page: Page, base_url: str, path: str) -> None:
    expect(page).to_have_url(base_url + path)


# ---------------------------------------------------------------- the whole journey


def test_register_write_edit_picture_delete_log_out(
    page: Page, live_server: str, tmp_path: Path
) -> None:
    name = unique_username("writer")
    title = f"Notes from the coast {name}"
    content = "Day one.\n\nThe wind came in from the west."
    new_title = f"Coastal notes, revised {name}"
    new_content = "Day one, revised.\n\nThe wind came in from the west, then turned north."

    # Register: logged in at once, welcomed on the home page.
    page.goto("/")
    nav(page).get_by_role("link", name="Register", exact=True).click()
    expect_url(page, live_server, "/register")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Email").fill(f"{name}@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Confirm password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect_url(page, live_server, "/")
    expect_flash(
        page,
        f"Welcome to Inkwell, {name}! We have sent you a link to confirm {name}@example.com.",
    )
    expect_logged_in(page)

    # Log out, then back in through the nav.
    nav(page).get_by_role("button", name="Log out").click()
    expect_url(page, live_server, "/")
    expect_flash(page, "You have been logged out.")
    expect_logged_out(page)
    nav(page).get_by_role("link", name="Log in", exact=True).click()
    expect_url(page, live_server, "/login")
    submit_login(page, name)
    expect_url(page, live_server, "/")
    expect_flash(page, f"Welcome back, {name}!")
    expect_logged_in(page)

    # Write a post.
    nav(page).get_by_role("link", name="New post", exact=True).click()
    expect_url(page, live_server, "/posts/new")
    page.get_by_label("Title").fill(title)
    page.get_by_label("Content").fill(content)
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(live_server)}/posts/\d+/[a-z0-9-]+$"))
    post_path = urlsplit(page.url).path
    post_id = post_path.split("/")[2]
    expect_flash(page, "Your post has been published.")
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.locator(".post-content")).to_have_text(content)

    # It is on the home page, with the default avatar for now.
    nav(page).get_by_role("link", name="Posts", exact=True).click()
    expect_url(page, live_server, "/")
    card = post_card(page, title)
    expect(card).to_have_count(1)
    expect(card.get_by_role("link", name=name, exact=True)).to_be_visible()
    default_avatar = card.locator("img.avatar")
    expect(default_avatar).to_have_js_property("complete", True)
    assert urlsplit(default_avatar.evaluate("img => img.src")).path == (
        "/static/profile_pics/default.jpg"
    )

    # Edit it: the form starts from the saved text.
    card.get_by_role("link", name=title).click()
    expect_url(page, live_server, post_path)
    page.get_by_role("link", name="Edit", exact=True).click()
    expect_url(page, live_server, f"/posts/{post_id}/edit")
    expect(page.get_by_label("Title")).to_have_value(title)
    expect(page.get_by_label("Content")).to_have_value(content)
    page.get_by_label("Title").fill(new_title)
    page.get_by_label("Content").fill(new_content)
    page.get_by_role("button", name="Save changes").click()
    expect_url(page, live_server, post_path)
    expect_flash(page, "Your post has been updated.")
    expect(page.get_by_role("heading", level=1)).to_have_text(new_title)
    expect(page.locator(".post-content")).to_have_text(new_content)

    # Upload a profile picture from the account page.
    picture = tmp_path / "me.png"
    make_png(picture)
    nav(page).get_by_role("link", name="Account", exact=True).click()
    expect_url(page, live_server, "/account")
    page.get_by_label("Picture", exact=True).set_input_files(picture)
    page.get_by_role("button", name="Upload picture").click()
    expect_url(page, live_server, "/account")
    expect_flash(page, "Your picture has been updated.")
    expect_uploaded_avatar(page.locator("img.avatar").first)
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS_DIR / "account-after-upload.png", full_page=True)

    # The new avatar sits beside the post on the home page, and it is our picture.
    page.goto("/")
    card = post_card(page, new_title)
    expect(card).to_have_count(1)
    post_card_avatar = card.locator("img.avatar")
    expect_uploaded_avatar(post_card_avatar)
    avatar_url = post_card_avatar.evaluate("img => img.src")
    served = page.request.get(avatar_url)
    assert served.ok, served.status
    assert served.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(served.body())) as avatar:
        assert avatar.size == (300, 300)
        left = avatar.convert("RGB").getpixel((30, 150))
        right = avatar.convert("RGB").getpixel((270, 150))
    assert left[0] > 150 > left[2], left  # red half
    assert right[2] > 150 > right[0], right  # blue half
    expect(post_card(page, title)).to_have_count(0)

    # Delete it, through the confirmation page.
    card.get_by_role("link", name=new_title).click()
    expect_url(page, live_server, post_path)
    page.get_by_role("link", name="Delete", exact=True).click()
    expect_url(page, live_server, f"/posts/{post_id}/delete")
    expect(page.get_by_role("heading", name="Delete this post?")).to_be_visible()
    page.get_by_role("button", name="Delete post").click()
    expect_url(page, live_server, "/")
    expect_flash(page, "Your post has been deleted.")
    expect(post_card(page, new_title)).to_have_count(0)
    gone = page.request.get(post_path)
    assert gone.status == 404

    # Log out: the nav offers "Log in" again, and the account page needs a login.
    nav(page).get_by_role("button", name="Log out").click()
    expect_url(page, live_server, "/")
    expect_flash(page, "You have been logged out.")
    expect_logged_out(page)
    page.goto("/account")
    expect(page).to_have_url(re.compile(rf"^{re.escape(live_server)}/login\?"))


# ---------------------------------------------------------------- smaller journeys


def test_login_required_page_returns_there_after_login(page: Page, live_server: str) -> None:
    account = create_user(live_server)

    page.goto("/posts/new")
    expect(page).to_have_url(re.compile(rf"^{re.escape(live_server)}/login\?"))
    url = urlsplit(page.url)
    assert url.path == "/login"
    assert parse_qs(url.query) == {"next": ["/posts/new"]}
    expect(page.locator("input[type=hidden][name=next]")).to_have_value("/posts/new")

    submit_login(page, account.username)
    expect_url(page, live_server, "/posts/new")
    expect_flash(page, f"Welcome back, {account.username}!")
    expect(page.get_by_role("heading", name="New post")).to_be_visible()
    expect(page.get_by_label("Title")).to_be_editable()
    expect_logged_in(page)


def test_rejected_post_keeps_what_the_user_typed(page: Page, live_server: str) -> None:
    account = create_user(live_server)
    title = ("A title that rambles on, far past the limit; " * 4)[:149] + "!"
    assert len(title) == 150
    page.goto("/login?next=/posts/new")
    submit_login(page, account.username)
    expect_url(page, live_server, "/posts/new")

    page.get_by_label("Title").fill(title)
    page.get_by_label("Content").fill(LONG_CONTENT)
    with page.expect_response(lambda r: r.request.method == "POST") as submitted:
        page.get_by_role("button", name="Save", exact=True).click()
    assert submitted.value.status == 422
    expect_url(page, live_server, "/posts/new")

    title_field = page.get_by_label("Title")
    expect(title_field).to_have_attribute("aria-invalid", "true")
    expect(title_field).to_have_accessible_description(re.compile("100 characters"))
    described_by = title_field.get_attribute("aria-describedby")
    assert described_by, "the title field does not point at its error message"
    error = page.locator(f"#{described_by}")
    expect(error).to_be_visible()
    expect(error).to_contain_text("100 characters")
    # The error is in the title's own field, not somewhere else on the page.
    expect(page.locator(".field").filter(has=title_field).locator(".field-error")).to_have_text(
        error.inner_text()
    )
    expect(page.get_by_label("Content")).not_to_have_attribute("aria-invalid", "true")

    expect(title_field).to_have_value(title)
    expect(page.get_by_label("Content")).to_have_value(LONG_CONTENT)
    expect(page.get_by_role("status")).to_have_count(0)  # no "published" flash

    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS_DIR / "post-form-error.png", full_page=True)


def test_no_edit_or_delete_controls_on_someone_elses_post(page: Page, live_server: str) -> None:
    title = f"Someone else's post {unique_username('')}"
    post = create_author_with_post(live_server, title)
    reader = create_user(live_server, unique_username("reader"))
    page.goto("/login")
    submit_login(page, reader.username)
    expect_url(page, live_server, "/")

    page.goto(f"/posts/{post['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect_logged_in(page)
    article = page.locator("article.post")
    expect(article.get_by_role("link", name="Edit")).to_have_count(0)
    expect(article.get_by_role("link", name="Delete")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("delete", re.IGNORECASE))).to_have_count(0)

    # Typing the addresses does not help either.
    for path in (f"/posts/{post['id']}/edit", f"/posts/{post['id']}/delete"):
        response = page.goto(path)
        assert response is not None
        assert response.status == 403, path


# ---------------------------------------------------------------- light and dark


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_in_light_and_dark_mode(browser: Browser, live_server: str, scheme: str) -> None:
    """Screenshots for a person to look at, with the essentials asserted."""
    account = create_user(live_server, unique_username(f"{scheme}mode"))
    token = get_token(live_server, account.username)
    upload_picture(live_server, token, make_png())
    title = f"How the blog looks in {scheme} mode"
    post = create_post(live_server, token, title, LONG_CONTENT[:600])

    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, base_url=live_server, color_scheme=scheme
    )
    try:
        page = context.new_page()
        page.goto("/login")
        assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") == (
            scheme == "dark"
        )
        submit_login(page, account.username)
        expect_url(page, live_server, "/")
        expect_flash(page, f"Welcome back, {account.username}!")
        expect_uploaded_avatar(post_card(page, title).locator("img.avatar"))
        ARTIFACTS_DIR.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS_DIR / f"home-{scheme}.png", full_page=True)
        expect_logged_in(page)

        page.goto(f"/posts/{post['id']}/edit")
        expect(page.get_by_label("Title")).to_have_value(title)
        page.screenshot(path=ARTIFACTS_DIR / f"edit-form-{scheme}.png", full_page=True)
        page.get_by_role("button", name="Save changes").click()
        expect(page).to_have_url(post["url"])
        expect_flash(page, "Your post has been updated.")
        expect_uploaded_avatar(page.locator("article.post img.avatar"))
        expect(page.get_by_role("link", name="Edit", exact=True)).to_be_visible()
        page.screenshot(path=ARTIFACTS_DIR / f"post-{scheme}.png", full_page=True)
        expect_logged_in(page)
    finally:
        context.close()
