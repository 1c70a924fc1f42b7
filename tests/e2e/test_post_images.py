"""A browser journey with post images: upload one into a post through the form (with the
script, and without JavaScript at all), publish, and see it responsive on the post page, with
media stored on disk and in the database."""

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_publishing_flow import log_in
from tests.support.api import create_user
from tests.support.images import png_bytes
from tests.support.server import migrate, running_server


@pytest.fixture(params=["local", "database"])
def media_server(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    database_url = f"sqlite:///{tmp_path / 'images.db'}"
    migrate(database_url)
    with running_server(database_url, tmp_path / "media", MEDIA_STORAGE=request.param) as url:
        yield url


def picture_file(tmp_path, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(png_bytes((2000, 1200), (30, 110, 190)))
    return str(path)


def check_responsive_image(page: Page, base_url: str) -> None:
    """The post shows the image with srcset, sizes, its size and lazy loading, and every URL
    of the srcset loads as an image."""
    image = page.locator(".post-content img")
    expect(image).to_have_count(1)
    expect(image).to_have_attribute("loading", "lazy")
    expect(image).to_have_attribute("width", "1600")
    expect(image).to_have_attribute("height", "960")
    expect(image).to_have_attribute("sizes", re.compile(r"40rem"))
    srcset = image.get_attribute("srcset") or ""
    assert [entry.rsplit(" ", 1)[1] for entry in srcset.split(", ")] == ["480w", "960w", "1600w"]
    # The browser picked and loaded one of them.
    page.wait_for_function("document.querySelector('.post-content img').complete")
    assert page.evaluate("document.querySelector('.post-content img').naturalWidth") > 0
    for entry in srcset.split(", "):
        response = httpx.get(base_url + entry.split(" ")[0])
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("image/")
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_image_uploaded_by_the_script_lands_at_the_cursor(
    browser: Browser, media_server: str, tmp_path
) -> None:
    author = create_user(media_server)
    page = browser.new_context(base_url=media_server).new_page()
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    log_in(page, author.username)
    page.goto("/posts/new")
    page.get_by_label("Title").fill("Harbour at dusk")
    content = page.get_by_label("Content")
    content.fill("Before the picture.\nAfter the picture.")
    # The cursor after the first line.
    content.evaluate("area => area.setSelectionRange(19, 19)")
    # With the script, the button is hidden: choosing the file is enough.
    expect(page.get_by_role("button", name="Insert image")).to_be_hidden()
    page.get_by_label("Image for the post").set_input_files(picture_file(tmp_path, "dusk.png"))
    expect(page.locator("[data-upload-status]")).to_have_text("Image inserted.")
    text = content.input_value()
    snippet = r"!\[\]\(/media/images/[0-9a-f]{32}-1600x960\.jpg\)"
    assert re.fullmatch(rf"Before the picture\.\n\n{snippet}\n\nAfter the picture\.", text), text
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Your post has been published.")
    check_responsive_image(page, media_server)
    assert errors == []

    # The library lists it, with the post that shows it.
    page.goto("/account/media")
    expect(page.locator(".media-item")).to_have_count(1)
    expect(page.locator(".media-item").get_by_role("link", name="Harbour at dusk")).to_be_visible()


def test_image_inserted_without_javascript(browser: Browser, media_server: str, tmp_path) -> None:
    author = create_user(media_server)
    page = browser.new_context(base_url=media_server, java_script_enabled=False).new_page()
    log_in(page, author.username)
    page.goto("/posts/new")
    page.get_by_label("Title").fill("Lighthouse")
    page.get_by_label("Content").fill("A walk to the point.")
    page.get_by_label("Tags").fill("Coast")
    page.get_by_label("Image for the post").set_input_files(picture_file(tmp_path, "point.png"))
    page.get_by_role("button", name="Insert image").click()
    # The same form again, everything typed kept and the image's Markdown added.
    expect(page.get_by_label("Title")).to_have_value("Lighthouse")
    expect(page.get_by_label("Tags")).to_have_value("Coast")
    expect(page.get_by_label("Content")).to_have_value(
        re.compile(r"A walk to the point\.\n\n!\[\]\(/media/images/[0-9a-f]{32}-1600x960\.jpg\)")
    )
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Your post has been published.")
    check_responsive_image(page, media_server)
