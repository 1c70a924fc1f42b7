"""Accessibility: axe-core finds no serious or critical violations on the main pages, in light
and dark mode. Also writes the README screenshots when INKWELL_SCREENSHOTS=1.

axe-core is pinned in tests/e2e/package-lock.json; `make test` installs it with `npm ci`.
"""

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support.api import (
    PASSWORD,
    Account,
    create_post,
    create_user,
    edit_post,
    get_token,
    upload_image,
    upload_picture,
)
from tests.support.browser import E2E_DIR
from tests.support.server import ROOT

AXE_JS = E2E_DIR / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING_IMPACTS = frozenset({"serious", "critical"})
SCHEMES = ["light", "dark"]
SEARCH_WORD = "sourdough"

SCREENSHOTS_DIR = ROOT / "docs" / "screenshots"
SCREENSHOT_VIEWPORT = {"width": 1200, "height": 800}
SCREENSHOT_MAX_BYTES = 250_000

# ---------------------------------------------------------------- content

FEATURED_TITLE = "Weeknight sourdough"
FEATURED_CONTENT = """\
A loaf of sourdough takes a day, but very little of that day needs you: put the long, \
hands-off steps overnight and it fits around work. You need a bowl, a jar and a lidded \
pot; this [guide to baker's percentages](https://www.kingarthurbaking.com/pro/reference/\
bakers-percentage) explains the numbers.

## The schedule

- **7:30 pm**: mix flour, water, salt and 20% active starter
- **10:30 pm**: shape after three sets of folds, then into the fridge
- **7:00 am**: bake straight from the fridge, lid on for 20 minutes

## Working it out

A few lines of Python do the sums when one step changes:

```python
from datetime import datetime, timedelta

clock = datetime(2025, 3, 4, 19, 30)
for step, hours in [("bulk", 3), ("fridge", 8.5), ("bake", 0.75)]:
    clock += timedelta(hours=hours)
    print(f"{step:>6} done at {clock:%a %H:%M}")
```

The night in the fridge is the forgiving part: anywhere between eight and fourteen hours works.
"""

OTHER_POSTS = [
    # (author, title, content), oldest first; the featured post is published last.
    (
        "tomas",
        "Notes from a rainy walk along the coast path",
        "Twelve kilometres from the harbour to the lighthouse and back, most of it in a fine, "
        "sideways drizzle that never quite turned into rain. Worth it for the seals alone, and "
        "for the café at the far end, which was open, warm and selling soup.\n\n"
        "## What I would pack next time\n\n"
        "1. A proper waterproof, not the *showerproof* one\n"
        "2. A flask of tea\n"
        "3. The [tide tables](https://www.tidetimes.org.uk/) for the causeway\n",
    ),
    (
        "margaret",
        "A year of keeping a sourdough starter alive",
        "Fed twice a day at first, then once, then, honestly, whenever I remembered. It "
        "survived a fortnight in the fridge, a very hot August and one feed with the wrong "
        "flour, and it still doubles in six hours. Here is what turned out to matter.\n\n"
        "## What mattered\n\n"
        "- Rye flour in every feed\n"
        "- A jar with straight sides, so the rise is easy to see\n"
        "- Discarding more than felt right\n",
    ),
    (
        "tomas",
        "A ten-minute tour of SQLite full-text search",
        "SQLite ships with FTS5, a full-text index that is good enough for a small site's "
        "search box. You need a virtual table, a trigger or two to keep it in step with the "
        "posts, and a query that ranks title matches above matches in the body.\n\n"
        "## The table\n\n"
        "```sql\n"
        "CREATE VIRTUAL TABLE posts_fts USING fts5(title, content, tokenize='porter');\n"
        "SELECT rowid FROM posts_fts WHERE posts_fts MATCH 'bread' ORDER BY rank;\n"
        "```\n\n"
        "Ranking with `bm25()` weights title matches above body matches.\n",
    ),
]


def landscape_png() -> bytes:
    """A small illustrated landscape (sky, sun, hills) for an author's profile picture."""
    size = 600
    with Image.new("RGB", (size, size)) as picture:
        draw = ImageDraw.Draw(picture)
        top, bottom = (126, 178, 221), (252, 214, 170)
        for y in range(size):
            t = y / (size - 1)
            colour = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
            draw.line((0, y, size, y), fill=colour)
        draw.ellipse((330, 120, 470, 260), fill=(255, 196, 87))
        far_hills = [(0, 390), (140, 300), (300, 380), (440, 290), (600, 360), (600, 600)]
        draw.polygon([*far_hills, (0, 600)], fill=(94, 140, 97))
        near_hills = [(0, 470), (180, 400), (380, 480), (600, 420), (600, 600), (0, 600)]
        draw.polygon(near_hills, fill=(53, 94, 69))
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Site:
    """What the module's data fixture created: two authors and four posts."""

    writer: Account  # has an uploaded picture and wrote the featured post
    other: Account  # keeps the default picture
    featured_post_id: int
    revised_post_id: int  # edited once: two revisions to compare

    def url_params(self) -> dict[str, int]:
        return {
            "post_id": self.featured_post_id,
            "author_id": self.writer.id,
            "revised_id": self.revised_post_id,
        }


@pytest.fixture(scope="module")
def site(live_server: str) -> Site:
    # live_server is a fresh database per module (and per xdist worker), so fixed names are safe.
    accounts = {name: create_user(live_server, name) for name in ("margaret", "tomas")}
    tokens = {name: get_token(live_server, name) for name in accounts}
    upload_picture(live_server, tokens["margaret"], landscape_png())
    image = upload_image(live_server, tokens["margaret"], landscape_png())
    for author, title, content in OTHER_POSTS:
        create_post(live_server, tokens[author], title, content)
    shown = image["markdown"].replace("![]", "![Hills at dawn]", 1)
    content = f"{shown}\n\n{FEATURED_CONTENT}"
    featured = create_post(live_server, tokens["margaret"], FEATURED_TITLE, content)
    revised = create_post(live_server, tokens["margaret"], "Field notes", "Rain at dawn.\n\nFog.")
    edit_post(live_server, tokens["margaret"], revised["id"], content="Rain at noon.\n\nFog.")
    return Site(accounts["margaret"], accounts["tomas"], featured["id"], revised["id"])


# ---------------------------------------------------------------- helpers


@pytest.fixture
def themed_context(browser: Browser, live_server: str, scheme: str) -> Iterator[BrowserContext]:
    # axe is injected as an inline script, which the site's CSP rightly refuses; the test
    # context alone bypasses the policy.
    context = browser.new_context(
        viewport={"width": 1280, "height": 800},
        base_url=live_server,
        color_scheme=scheme,
        bypass_csp=True,
    )
    try:
        yield context
    finally:
        context.close()


def log_in(page: Page, account: Account) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(account.username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("button", name="Log out", exact=True)).to_be_visible()


def expect_scheme(page: Page, scheme: str) -> None:
    assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") == (scheme == "dark")


def expect_images_loaded(page: Page) -> None:
    for image in page.locator("img").all():
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") > 0, image.get_attribute("src")


def axe_violations(page: Page) -> list[dict]:
    """Run axe-core on the whole document; its violations (every impact)."""
    assert AXE_JS.is_file(), f"{AXE_JS} is missing: run `make test` or `npm ci --prefix tests/e2e`"
    page.add_script_tag(path=AXE_JS)
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return results["violations"]


def describe(violations: list[dict]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"{violation['id']} [{violation['impact']}]: {violation['help']}")
        lines.append(f"    {violation['helpUrl']}")
        for node in violation["nodes"]:
            # A target is a list of selectors: one per frame or shadow root on the way down.
            target = " >> ".join(
                " ".join(part) if isinstance(part, list) else part for part in node["target"]
            )
            summary = " ".join(node.get("failureSummary", "").split())
            lines.append(f"    - {target} [{node.get('impact')}] {summary}")
    return "\n".join(lines)


# ---------------------------------------------------------------- axe


@dataclass(frozen=True)
class PageCase:
    name: str
    path: str  # formatted with Site.url_params()
    shows: str  # a selector for the content that must be on the page before axe looks
    logged_in: bool = False  # as the writer of the featured post


PAGES = [
    PageCase("home", "/", "article.post-card img.avatar"),
    PageCase("post", "/posts/{post_id}", ".post-content pre code"),
    PageCase("post-as-author", "/posts/{post_id}", ".post-actions .button-danger", True),
    PageCase("author", "/users/{author_id}/posts", ".author-header img.avatar"),
    PageCase("search", f"/search?q={SEARCH_WORD}", "article.post-card mark"),
    PageCase("login", "/login", "form input[type=password]"),
    PageCase("new-post", "/posts/new", "form textarea", True),
    PageCase("history", "/posts/{revised_id}/history", "table.history input[type=radio]", True),
    PageCase(
        "history-diff", "/posts/{revised_id}/history/diff?from=1&to=2", ".diff-text ins", True
    ),
    PageCase("media-library", "/account/media", ".media-item img", True),
]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("case", PAGES, ids=lambda case: case.name)
def test_no_serious_accessibility_violations(
    themed_context: BrowserContext, site: Site, case: PageCase, scheme: str
) -> None:
    page = themed_context.new_page()
    if case.logged_in:
        log_in(page, site.writer)
    response = page.goto(case.path.format(**site.url_params()))
    assert response is not None
    assert response.ok, response.status
    expect_scheme(page, scheme)
    expect(page.locator("main h1")).to_be_visible()
    expect(page.locator(case.shows).first).to_be_visible()
    expect_images_loaded(page)

    violations = axe_violations(page)

    blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
    assert not blocking, (
        f"axe-core: serious or critical violations on {case.path} ({scheme} mode):\n"
        + describe(violations)
    )


# ---------------------------------------------------------------- README screenshots


@pytest.mark.skipif(
    os.environ.get("INKWELL_SCREENSHOTS") != "1",
    reason="set INKWELL_SCREENSHOTS=1 to refresh the README screenshots in docs/screenshots",
)
@pytest.mark.parametrize(
    ("name", "scheme", "path"),
    [("home-light", "light", "/"), ("post-dark", "dark", "/posts/{post_id}")],
)
def test_readme_screenshot(
    browser: Browser, live_server: str, site: Site, name: str, scheme: str, path: str
) -> None:
    context = browser.new_context(
        viewport=SCREENSHOT_VIEWPORT, base_url=live_server, color_scheme=scheme
    )
    try:
        page = context.new_page()
        page.goto(path.format(**site.url_params()))
        expect_scheme(page, scheme)
        expect(page.locator("main h1")).to_be_visible()
        expect_images_loaded(page)
        SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
        target = SCREENSHOTS_DIR / f"{name}.png"
        page.screenshot(path=target, full_page=False)
    finally:
        context.close()
    with Image.open(target) as image:
        assert image.size == (SCREENSHOT_VIEWPORT["width"], SCREENSHOT_VIEWPORT["height"])
    size = target.stat().st_size
    assert size <= SCREENSHOT_MAX_BYTES, f"{target} is {size} bytes"
