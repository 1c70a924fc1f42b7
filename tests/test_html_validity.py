"""Every kind of page is valid HTML: the Nu Html Checker (vnu.jar, pinned in
tests/e2e/package-lock.json; `make test` installs it with `npm ci`) reports no error and no
warning on any of them.

The pages are rendered through the app with realistic content (Markdown tables, code, links
and images; flash messages; forms with errors) and checked in one run, since starting Java
takes most of the time.
"""

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

import httpx
import pytest

from config import utcnow
from models import ADMIN_ROLE, User
from services import account_links, mail
from tests.support.accounts import PASSWORD, form_token, login
from tests.support.archives import zip_of
from tests.support.images import png_bytes
from tests.support.server import ROOT
from tests.support.two_factor import code_at, secret_from

VNU_JAR = ROOT / "tests" / "e2e" / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
VNU_TIMEOUT_SECONDS = 300

FEATURED_CONTENT = """\
A loaf of sourdough takes a day, but very little of that day needs you. This \
[guide to baker's percentages](https://example.com/bakers-percentage "Baker's percentages") \
explains the numbers, and `flour * 0.75` gives the water.

![A crusty loaf on a board](https://example.com/images/loaf.jpg "The first good loaf")

## The schedule

| Time | Step | Minutes |
|:-----|:----:|--------:|
| 7:30 pm | Mix flour, water, salt & starter | 10 |
| 10:30 pm | Shape, then into the fridge | 15 |
| 7:00 am | Bake <with> the lid on | 45 |

| Plain | Table |
|-------|-------|
| no | alignment |

### Working it out

```python
from datetime import datetime, timedelta

clock = datetime(2025, 3, 4, 19, 30)
for step, hours in [("bulk", 3), ("fridge", 8.5)]:
    clock += timedelta(hours=hours)
    print(f"{step:>6} done at {clock:%a %H:%M} <ok>")
```

3. Feed the starter
4. Wait for it to double
5. ~~Panic~~ Bake

> The night in the fridge is the forgiving part: anywhere between *eight* and **fourteen**
> hours works.

---

Questions? <mailto:baker@example.com> or https://example.com/contact.
"""

# A microsecond part, which the datetime attribute must not print with six digits.
FEATURED_DATE = datetime(2025, 3, 4, 19, 30, 15, 123456, tzinfo=UTC)


class Pages:
    """The HTML of each page checked, by a name for the failure message."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.html: dict[str, str] = {}

    def keep(self, name: str, response: httpx.Response, status: int = 200) -> httpx.Response:
        assert response.status_code == status, (name, response.status_code, response.text[:500])
        assert response.headers["content-type"].startswith("text/html"), name
        assert name not in self.html, name
        self.html[name] = response.text
        return response

    def get(self, name: str, path: str, status: int = 200, **params: object) -> httpx.Response:
        return self.keep(name, self.client.get(path, params=params or None), status)

    def post(
        self,
        name: str,
        path: str,
        data: dict[str, str],
        status: int = 200,
        *,
        form_path: str | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> httpx.Response:
        """Submit a form to `path`, with the CSRF token of the page at `form_path` (the same
        page unless given)."""
        token = form_token(self.client, form_path or path)
        response = self.client.post(path, data={**data, "csrf_token": token}, files=files)
        return self.keep(name, response, status)


# A page with one known error: if vnu.jar reports nothing about it, it checked nothing.
CANARY_NAME = "canary"
CANARY_HTML = (
    '<!doctype html><html lang="en"><title>Canary</title>'
    '<p><time datetime="2025-03-04T19:30:15.123456+00:00">March 4, 2025</time></p></html>'
)


def run_vnu(directory: Path, pages: dict[str, str]) -> list[dict]:
    """Every message vnu.jar gives about the pages, each with the name of its page."""
    java = shutil.which("java")
    assert java, "java is missing: apt-get install default-jre-headless"
    assert VNU_JAR.is_file(), (
        f"{VNU_JAR} is missing: run `make test` or `npm ci --prefix tests/e2e`"
    )
    names = {}
    for number, (name, html) in enumerate({CANARY_NAME: CANARY_HTML, **pages}.items()):
        path = directory / f"{number:02d}-{name}.html"
        path.write_text(html, encoding="utf-8")
        names[path.name] = name
    result = subprocess.run(
        # Paths, not file: URLs, which vnu.jar fetches and then silently skips.
        [java, "-jar", str(VNU_JAR), "--format", "json", "--stdout", *names],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=VNU_TIMEOUT_SECONDS,
        check=False,
    )
    try:
        messages = json.loads(result.stdout)["messages"]
    except (json.JSONDecodeError, KeyError):
        pytest.fail(f"vnu.jar gave no report (exit {result.returncode}):\n{result.stderr}")
    for message in messages:
        # vnu.jar names each file as a URL, file:/tmp/.../00-name.html
        message["page"] = names.get(message.get("url", "").rpartition("/")[2], "?")
    canary = [message for message in messages if message["page"] == CANARY_NAME]
    assert any("fraction of a second" in message["message"] for message in canary), (
        "vnu.jar missed the canary page's error:\n" + describe(messages)
    )
    return [message for message in messages if message["page"] != CANARY_NAME]


def describe(messages: list[dict]) -> str:
    lines = []
    for message in messages:
        kind = message.get("subType") or message["type"]
        where = f"{message['page']}:{message.get('lastLine', '?')}"
        lines.append(f"{where}: {kind}: {message['message']}")
        if message.get("extract"):
            lines.append(f"    {' '.join(message['extract'].split())}")
    return "\n".join(lines)


def check_two_factor_pages(pages: Pages) -> None:
    """Set-up (with its QR code), its errors, the recovery codes, and the settings when on."""
    form = {"form_path": "/account/two-factor"}
    pages.get("two-factor-off", "/account/two-factor")
    setup = pages.post("two-factor-setup", "/account/two-factor/setup", {}, **form)
    confirm = "/account/two-factor/confirm"
    pages.post("two-factor-setup-error", confirm, {"code": "000000"}, status=400, **form)
    code = code_at(secret_from(setup.text), utcnow())
    pages.post("two-factor-recovery-codes", confirm, {"code": code}, **form)
    pages.get("two-factor-on", "/account/two-factor")
    pages.get("account-two-factor-on", "/account")
    disable = "/account/two-factor/disable"
    wrong = {"password": "wrong", "code": ""}
    pages.post("two-factor-disable-error", disable, wrong, status=400, **form)


# The markup does not depend on the database, so one backend is enough.
@pytest.mark.parametrize("backend", ["sqlite"])
def check_admin_pages(pages: "Pages", db, admin: User, target: User) -> None:
    admin.role = ADMIN_ROLE
    db.commit()
    pages.get("admin-accounts", "/admin")
    pages.get("admin-accounts-search", "/admin", q="quiet")
    pages.get("admin-posts", "/admin/posts")
    pages.get("admin-log-empty", "/admin/log")
    suspend = f"/admin/users/{target.id}/suspend"
    pages.get("admin-confirm", suspend)
    pages.post("admin-confirm-error", suspend, {"reason": ""}, 422)
    pages.post("admin-done-with-flash", suspend, {"reason": "Spam <links>"})
    pages.get("admin-log", "/admin/log")
    pages.get("admin-invitations-empty", "/admin/invitations")
    pages.post("admin-invite-error", "/admin/invitations", {"email": "not an address"}, 422)
    pages.post("admin-invite-done", "/admin/invitations", {"email": "guest@example.com"})
    settings = pages.client.app.state.settings
    pages.client.app.state.settings = settings.model_copy(update={"registration_mode": "invite"})
    try:
        pages.get("admin-invitations-invite-mode", "/admin/invitations")
    finally:
        pages.client.app.state.settings = settings


def test_every_page_type_is_valid_html(client, db, make_account, make_user, make_post, tmp_path):
    pages = Pages(client)

    # ---- an empty site
    pages.get("home-empty", "/")

    # ---- content: one writer with more than a page of posts, others, a silent reader
    writer = make_account("writer")
    quiet = make_user("quiet_reader")
    featured = make_post(
        writer,
        title='Weeknight "sourdough" & a <fridge>',
        content=FEATURED_CONTENT,
        date_posted=FEATURED_DATE,
        updated_at=FEATURED_DATE + timedelta(days=2, microseconds=654321),
    )
    for number in range(12):
        make_post(
            writer,
            content=f"Notes, part {number}. Body text with a [link](https://example.com/{number}).",
            date_posted=FEATURED_DATE - timedelta(days=number + 1, microseconds=number),
        )
    for number in range(5):
        make_post(title=f"Another voice {number}", content="A short body about bread.")

    # ---- what anyone can see
    pages.get("home", "/")
    pages.get("home-page-2", "/", page=2)
    pages.get("post-edited", f"/posts/{featured.id}")
    pages.get("author", f"/users/{writer.id}/posts")
    pages.get("author-page-2", f"/users/{writer.id}/posts", page=2)
    pages.get("author-empty", f"/users/{quiet.id}/posts")
    pages.get("search-form", "/search")
    pages.get("search-hits", "/search", q="sourdough fridge")
    pages.get("search-hits-page-2", "/search", q="body", page=2)
    pages.get("search-no-hits", "/search", q='"nothing" <matches> & this')
    pages.get("error-404", "/no/such/page", status=404)
    pages.get("error-404-post", "/posts/999999", status=404)
    pages.get("error-bad-page", "/", status=400, page=0)
    pages.get("register", "/register")
    pages.post(
        "register-errors",
        "/register",
        {"username": "a b", "email": "nope", "password": "short", "confirm_password": "x"},
        status=422,
    )
    settings = client.app.state.settings
    client.app.state.settings = settings.model_copy(update={"registration_mode": "closed"})
    try:
        pages.get("register-closed", "/register")
        pages.get("login-registration-closed", "/login")
    finally:
        client.app.state.settings = settings
    pages.get("login", "/login")
    pages.post("login-error", "/login", {"username": "writer", "password": "wrong"}, status=400)
    pages.get("password-reset", "/password-reset")
    pages.post("password-reset-errors", "/password-reset", {"email": "nope"}, status=422)
    pages.get("link-no-longer-works", "/password-reset/nonsense", status=400)
    writer.pending_email = "writer-new@example.com"
    tokens = {
        purpose: account_links.issue(
            db, user=writer, purpose=purpose, email=email, ttl=timedelta(hours=1)
        )
        for purpose, email in (("reset", writer.email), ("verify", writer.pending_email))
    }
    db.commit()
    reset = f"/password-reset/{tokens['reset']}"
    pages.get("password-reset-link", reset)
    pages.post("password-reset-link-errors", reset, {"new_password": "x"}, status=422)
    pages.get("verify-email-link", f"/verify-email/{tokens['verify']}")
    site = mail.Site("Inkwell", "http://testserver/", "http://testserver/account", str, str, str)
    for template in ("password_reset", "verify_email", "email_changed", "invitation"):
        context = {
            "username": "writer",
            "inviter": "boss",
            "link": "http://testserver/x",
            "new_email": "a@b.example",
        }
        pages.html[f"mail-{template}"] = mail.render(template, site=site, changing=True, **context)[
            1
        ]

    # ---- the writer, logged in (the flash of each redirect shows on the next page)
    login(client, "writer")
    pages.get("home-logged-in-with-flash", "/")
    pages.get("post-as-author", f"/posts/{featured.id}")
    pages.get("post-new", "/posts/new")
    pages.post("post-new-errors", "/posts/new", {"title": "", "content": ""}, status=422)
    pages.post(
        "post-new-preview",
        "/posts/new",
        {"title": "A preview", "content": FEATURED_CONTENT, "action": "preview"},
    )
    pages.post(
        "post-published-with-flash",
        "/posts/new",
        {"title": "Fresh from the form", "content": FEATURED_CONTENT, "action": "publish"},
    )
    edit = f"/posts/{featured.id}/edit"
    pages.get("post-edit", edit)
    pages.post("post-edit-errors", edit, {"title": " ", "content": "", "version": "1"}, 422)
    pages.post(
        "post-edit-conflict",
        edit,
        {"title": "Mine", "content": "My rewrite.", "version": "1000"},
        status=409,
    )
    pages.get("post-delete", f"/posts/{featured.id}/delete")
    revised = {
        "title": "Weeknight <b>bread</b>",
        "content": FEATURED_CONTENT + "\n\nOne more.",
        "tags": "bread",
        "version": "1",
    }
    pages.post("post-updated-with-flash", edit, revised)
    history = f"/posts/{featured.id}/history"
    pages.get("history", history)
    pages.get("history-diff", f"{history}/diff", **{"from": 1, "to": 2})
    pages.get("history-diff-unchanged", f"{history}/diff", **{"from": 2, "to": 2})
    pages.get("history-restore", f"{history}/1/restore")
    pages.get("account-email-pending", "/account")
    pages.post("account-errors", "/account", {"username": "", "email": "nope"}, status=422)
    pages.post(
        "account-password-errors",
        "/account/password",
        {"current_password": "wrong", "new_password": "x", "confirm_password": "y"},
        status=422,
        form_path="/account",
    )
    picture = {"form_path": "/account"}
    bad_file = {"picture": ("notes.png", b"not a picture", "image/png")}
    pages.post("account-picture-error", "/account/picture", {}, 422, files=bad_file, **picture)
    good_file = {"picture": ("me.png", png_bytes((64, 64), (11, 92, 173)), "image/png")}
    pages.post(
        "account-picture-uploaded-with-flash", "/account/picture", {}, files=good_file, **picture
    )
    pages.get("author-with-picture", f"/users/{writer.id}/posts")
    pages.get("media-library-empty", "/account/media")
    image = {"file": ("sea.png", png_bytes((900, 600), (20, 120, 200)), "image/png")}
    pages.post("media-uploaded-with-flash", "/account/media", {}, files=image)
    bad_image = {"file": ("notes.png", b"not a picture", "image/png")}
    pages.post("media-upload-error", "/account/media", {}, 422, files=bad_image)
    inserted = pages.post(
        "post-new-image-inserted",
        "/posts/new",
        {"title": "With a picture", "content": "The sea.", "action": "insert_image"},
        files={"image": ("sea.png", png_bytes((900, 600), (20, 120, 200)), "image/png")},
    )
    content = inserted.text.split('name="content"', 1)[1].split(">", 1)[1].split("</textarea>")[0]
    pages.post(
        "post-new-image-error",
        "/posts/new",
        {"title": "T", "content": "x", "action": "insert_image"},
        422,
        files={"image": ("x.png", b"nope", "image/png")},
    )
    with_image = pages.post(
        "post-with-image",
        "/posts/new",
        {"title": "A picture", "content": unescape(content), "action": "save"},
    )
    assert "srcset=" in with_image.text
    pages.get("media-library-in-use", "/account/media")
    media_id = re.search(r"/account/media/(\d+)/delete", pages.html["media-library-in-use"])[1]
    pages.post(
        "media-delete-confirm",
        f"/account/media/{media_id}/delete",
        {},
        409,
        form_path="/account/media",
    )
    pages.get("account-export", "/account/export")
    pages.get("account-import", "/account/import")
    archive = zip_of({"brought-in.md": "---\ntitle: Brought in\n---\nx", "notes.txt": "x"})
    pages.post(
        "account-import-report",
        "/account/import",
        {},
        files={"file": ("export.zip", archive, "application/zip")},
    )
    garbage = {"file": ("export.zip", b"not an archive", "application/zip")}
    pages.post("account-import-error", "/account/import", {}, 422, files=garbage)
    check_admin_pages(pages, db, writer, quiet)
    pages.get("account-delete", "/account/delete")
    pages.post("account-delete-error", "/account/delete", {"password": PASSWORD + "x"}, status=422)
    check_two_factor_pages(pages)
    pages.post("logged-out-with-flash", "/logout", {}, form_path="/account")
    # With two-factor sign-in on, the password leads to the code step.
    pages.post("login-code", "/login", {"username": "writer", "password": PASSWORD})
    pages.post("login-code-error", "/login/code", {"code": "000000"}, status=400)

    messages = run_vnu(tmp_path, pages.html)

    if messages:
        summary = f"vnu.jar: {len(messages)} messages over {len(pages.html)} pages"
        pytest.fail(f"{summary}:\n{describe(messages)}", pytrace=False)
