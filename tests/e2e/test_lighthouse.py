"""Lighthouse scores 100 in accessibility, best practices and SEO on the home, post and author
pages, as a phone and as a desktop.

Lighthouse and chrome-launcher are pinned in tests/e2e/package-lock.json (`make test` installs
them with `npm ci`); tests/e2e/lighthouse_scores.mjs runs the six audits in one Node process.
"""

import io
import json
import os
import shutil
import subprocess

import pytest
from PIL import Image

from tests.support.api import create_post, create_user, get_token, upload_picture
from tests.support.browser import CHROMIUM, E2E_DIR

pytestmark = pytest.mark.browser

SCRIPT = E2E_DIR / "lighthouse_scores.mjs"
LIGHTHOUSE = E2E_DIR / "node_modules" / "lighthouse" / "package.json"
CATEGORIES = ("accessibility", "best-practices", "seo")
FORM_FACTORS = ("mobile", "desktop")
# Six audits take about 45 s on an idle machine; leave room for a busy one.
TIMEOUT_S = 300

FEATURED_CONTENT = """\
Bread needs time more than it needs you. This [guide to hydration](https://example.com/water) \
explains the numbers, and `water = flour * 0.75` is the one to remember.

## The schedule

| Time | Step | Minutes |
|:-----|:----:|--------:|
| 7:30 pm | Mix flour, water, salt and starter | 10 |
| 10:30 pm | Shape, then into the fridge | 15 |
| 7:00 am | Bake with the lid on | 45 |

```python
for step, hours in [("bulk", 3), ("fridge", 8.5)]:
    print(f"{step:>6}: {hours} h")
```

> Anywhere between *eight* and **fourteen** hours in the fridge works.
"""


def portrait_png() -> bytes:
    buffer = io.BytesIO()
    with Image.new("RGB", (256, 256), (214, 158, 46)) as picture:
        picture.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pages(live_server: str) -> list[str]:
    """The URLs audited: a home page with posts, a post with rich content, its author's page."""
    writer = create_user(live_server, "lighthouse_writer")
    other = create_user(live_server, "lighthouse_other")
    writer_token = get_token(live_server, writer.username)
    upload_picture(live_server, writer_token, portrait_png())
    other_token = get_token(live_server, other.username)
    for number in range(3):
        create_post(
            live_server,
            other_token,
            f"Notes from the allotment, week {number + 1}",
            "Beans up, slugs down. The [seed catalogue](https://example.com/seeds) is out.",
        )
    featured = create_post(live_server, writer_token, "Weeknight sourdough", FEATURED_CONTENT)
    return [
        f"{live_server}/",
        f"{live_server}/posts/{featured['id']}",
        f"{live_server}/users/{writer.id}/posts",
    ]


def test_lighthouse_scores_100_on_the_main_pages(pages: list[str]) -> None:
    node = shutil.which("node")
    assert node, "node is missing: apt-get install nodejs npm"
    assert LIGHTHOUSE.is_file(), (
        "Lighthouse is missing: run `make test` or `npm ci --prefix tests/e2e`"
    )
    result = subprocess.run(
        [node, str(SCRIPT), *pages],
        env={**os.environ, "CHROME_PATH": CHROMIUM},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    audited = {(run["url"], run["formFactor"]) for run in report["results"]}
    assert audited == {(url, factor) for url in pages for factor in FORM_FACTORS}
    problems = []
    for run in report["results"]:
        where = f"{run['url']} ({run['formFactor']})"
        if run["runtimeError"]:
            problems.append(f"{where}: {run['runtimeError']}")
        for category in CATEGORIES:
            if run["scores"].get(category) != 1:
                problems.append(f"{where}: {category} {run['scores'].get(category)}")
        problems += [
            f"    {audit['category']}/{audit['id']} {audit['score']}: {audit['title']}"
            for audit in run["failing"]
        ]
    assert not problems, f"Lighthouse {report['lighthouse']}:\n" + "\n".join(problems)
