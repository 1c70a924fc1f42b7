"""Cross-site scripting: a corpus of hostile strings in every user-controlled field, then every
page, feed, API response and error page that shows them, parsed and checked.

Pages are parsed with `html.parser.HTMLParser` (not substring matching) and must contain no
script other than JSON-LD (which must parse as JSON and hold no `</script` or `<!--`), no
`on*` attribute, no javascript:/data:/vbscript: URL, no `style` attribute and none of the
elements that can carry script or restyle the page. Where a hostile value is displayed it
must come out as the same text (escaped in the markup), so the checks also prove that the
page shows what the user typed rather than something the browser parsed out of it. Feeds are
parsed with ElementTree and their HTML content gets the same checks.

Hostile usernames cannot get through the forms (which the test also checks), but legacy rows
might hold anything, so users are inserted directly into the database.

Run with `-rP` to see the summary line each backend prints.
"""

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from routers.feeds import xml_text
from schemas import USERNAME_PATTERN, plain_line
from services.markdown import excerpt
from services.search import MARK_END, MARK_START
from tests.support.accounts import PASSWORD, csrf_from, form_token
from tests.support.images import png_bytes
from tests.support.xss_tools import (
    ATOM,
    NEXT_TARGETS,
    PAYLOADS,
    REFLECTED_ONLY,
    Audit,
    Node,
    attr_of,
    dangerous_url,
    inspect_html,
    json_ld,
    markdown_document,
)

# ---------------------------------------------------------------- seeding


@dataclass(frozen=True)
class Seeded:
    """One payload planted in a user (username, email) and their post (title, content)."""

    payload: str
    user: object
    user_id: int
    username: str
    email: str
    post_id: int
    title: str
    content: str
    excerpt: str


def seed_corpus(client: TestClient, make_user, api_headers) -> list[Seeded]:
    """A user per payload (straight into the database), each with a post sent through the API."""
    seeded: list[Seeded] = []
    taken: set[str] = set()
    for number, payload in enumerate(PAYLOADS):
        # Usernames are unique whatever their case.
        fresh = payload[:50].lower() not in taken
        username = payload[:50] if fresh else f"{payload[:44]}~{number:03d}"
        taken.add(username.lower())
        email = f"u{number}.{payload}"[:120]
        user = make_user(username, email=email)
        content = markdown_document(payload, number)
        response = client.post(
            "/api/posts", json={"title": payload, "content": content}, headers=api_headers(user)
        )
        assert response.status_code == 201, (payload, response.text)
        body = response.json()
        assert body["title"] == plain_line(payload), (body["title"], payload)
        seeded.append(
            Seeded(
                payload=payload,
                user=user,
                user_id=user.id,
                username=username,
                email=email,
                post_id=body["id"],
                title=body["title"],
                content=body["content"],
                excerpt=excerpt(body["content"]),
            )
        )
    return seeded


def stored_fields(item: Seeded, *, content: bool = True) -> list[tuple[str, str]]:
    shown = [("username", item.payload), ("post title", item.payload)]
    return [*shown, ("post content", item.payload)] if content else shown


def is_local_path(location: str) -> bool:
    """What a browser would treat as a path on this site (tabs/newlines dropped, \\ as /)."""
    normalised = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    parts = urlsplit(normalised)
    return normalised.startswith("/") and not normalised.startswith("//") and not parts.netloc


# ---------------------------------------------------------------- checks, page by page


# A post's canonical address: /posts/{id}/{slug}.
POST_URL = re.compile(r"/posts/(\d+)/[^/]+$")


def check_listing_cards(audit: Audit, where: str, root: Node, by_post: dict[int, Seeded]) -> None:
    """Every post card must show its hostile title, author and excerpt as text."""
    for card in root.find_all("article", "post-card"):
        links = [a for a in card.find_all("a") if POST_URL.search(a.attrs.get("href", ""))]
        found = POST_URL.search(links[0].attrs.get("href", "")) if links else None
        item = by_post.get(int(found.group(1))) if found else None
        if item is None:
            continue
        audit.shows(where, "card title", links[0].text(), item.title, exact=True)
        authors = card.find_all("a", "author")
        audit.shows(
            where, "card author", authors[0].text() if authors else None, item.username, exact=True
        )
        excerpts = card.find_all("p", "excerpt")
        if item.excerpt:
            audit.shows(
                where,
                "card excerpt",
                excerpts[0].text() if excerpts else None,
                item.excerpt,
                exact=True,
            )
        avatars = card.find_all("img", "avatar")
        audit.shows(
            where, "avatar alt", avatars[0].attrs.get("alt") if avatars else None, item.username
        )
        audit._count(stored_fields(item))


def check_listings(audit: Audit, client: TestClient, seeded: list[Seeded]) -> None:
    by_post = {item.post_id: item for item in seeded}
    seen: set[int] = set()
    url: str | None = "/"
    while url:
        response = client.get(url)
        root = audit.page(f"GET {url}", response)
        check_listing_cards(audit, f"GET {url}", root, by_post)
        for card in root.find_all("article", "post-card"):
            for a in card.find_all("a"):
                if match := POST_URL.search(a.attrs.get("href", "")):
                    seen.add(int(match.group(1)))
        following = [
            a.attrs.get("href") for a in root.find_all("a") if a.attrs.get("rel") == "next"
        ]
        url = following[0] if following else None
    audit.expect("listings", seen == set(by_post), "the listing pages do not show every post")
    root = audit.page("GET /posts", client.get("/posts"))
    check_listing_cards(audit, "GET /posts", root, by_post)


def check_post_page(audit: Audit, client: TestClient, item: Seeded) -> None:
    where = f"GET /posts/{item.post_id} [{item.payload!r}]"
    root = audit.page(where, client.get(f"/posts/{item.post_id}"), shown=stored_fields(item))
    titles = root.find_all("title")
    audit.shows(where, "<title>", titles[0].text() if titles else None, item.title)
    headings = root.find_all("h1", "post-title")
    audit.shows(where, "heading", headings[0].text() if headings else None, item.title, exact=True)
    authors = root.find_all("a", "author")
    audit.shows(where, "byline", authors[0].text() if authors else None, item.username, exact=True)
    for meta in root.find_all("meta", property="og:title"):
        audit.shows(where, "og:title", meta.attrs.get("content"), item.title)
    for meta in root.find_all("meta", name="description"):
        audit.shows(where, "meta description", meta.attrs.get("content"), item.excerpt)
    body = root.find_all("div", "post-content")
    text = body[0].text() if body else ""
    audit.expect(where, bool(body), "no post content")
    if "<" in item.payload:
        # Text containing "<" means the markup had "&lt;": the tag was shown, not parsed.
        audit.expect(where, "<" in text, "the post content shows no escaped markup")
    if "{{7*7}}" in item.payload:
        audit.expect(where, "{{7*7}}" in text, "{{7*7}} is not shown literally")
    data = json_ld(root, "BlogPosting")
    if data is not None:
        audit.expect(where, data.get("headline") == item.title, "JSON-LD headline differs")
        audit.expect(where, data.get("description") == item.excerpt, "JSON-LD description")
        author = data.get("author") or {}
        audit.expect(where, author.get("name") == item.username, "JSON-LD author differs")


def check_author_page(audit: Audit, client: TestClient, item: Seeded) -> None:
    where = f"GET /users/{item.user_id}/posts [{item.payload!r}]"
    response = client.get(f"/users/{item.user_id}/posts")
    root = audit.page(where, response, shown=[("username", item.payload)])
    titles = root.find_all("title")
    audit.shows(where, "<title>", titles[0].text() if titles else None, item.username)
    headings = root.find_all("h1", "page-title")
    audit.shows(
        where, "heading", headings[0].text() if headings else None, item.username, exact=True
    )
    feeds = [
        n for n in root.find_all("link", rel="alternate") if "/users/" in n.attrs.get("href", "")
    ]
    audit.shows(
        where, "feed link title", feeds[0].attrs.get("title") if feeds else None, item.username
    )
    data = json_ld(root, "Person")
    if data is not None:
        audit.expect(where, data.get("name") == item.username, "JSON-LD name differs")
    check_listing_cards(audit, where, root, {item.post_id: item})


def check_author_feed(audit: Audit, client: TestClient, item: Seeded) -> None:
    where = f"GET /users/{item.user_id}/feed.xml [{item.payload!r}]"
    root = audit.feed(where, client.get(f"/users/{item.user_id}/feed.xml"), stored_fields(item))
    if root is None:
        return
    audit.shows(where, "feed title", root.findtext(f"{ATOM}title"), xml_text(item.username))
    audit.shows(
        where,
        "feed author",
        root.findtext(f"{ATOM}author/{ATOM}name"),
        xml_text(item.username),
        exact=True,
    )
    entries = root.findall(f"{ATOM}entry")
    audit.expect(where, len(entries) == 1, f"{len(entries)} entries")
    for entry in entries:
        audit.expect(where, entry.findtext(f"{ATOM}title") == xml_text(item.title), "entry title")
        name = entry.findtext(f"{ATOM}author/{ATOM}name")
        audit.expect(where, name == xml_text(item.username), "entry author name")


def check_site_feed_and_sitemap(audit: Audit, client: TestClient, seeded: list[Seeded]) -> None:
    by_url = {f"http://testserver/posts/{item.post_id}": item for item in seeded}
    response = client.get("/feed.xml")
    root = audit.feed("GET /feed.xml", response)
    if root is not None:
        for entry in root.findall(f"{ATOM}entry"):
            item = by_url.get(entry.findtext(f"{ATOM}id") or "")
            audit.expect("GET /feed.xml", item is not None, "an entry for an unknown post")
            if item is not None:
                title = entry.findtext(f"{ATOM}title")
                audit.expect("GET /feed.xml", title == xml_text(item.title), f"title {title!r}")
                audit._count(stored_fields(item))
    response = client.get("/sitemap.xml")
    audit._response("GET /sitemap.xml", response, 200)
    try:
        sitemap = ElementTree.fromstring(response.content)
    except ElementTree.ParseError as exc:
        audit.flag("GET /sitemap.xml", f"not well-formed XML: {exc}", executable=True)
    else:
        locs = [loc.text or "" for loc in sitemap.iter() if loc.tag.endswith("loc")]
        audit.expect("GET /sitemap.xml", all(u.startswith("http://testserver/") for u in locs), "")
        listed = {int(m.group(1)) for loc in locs if (m := POST_URL.search(loc))}
        seeded_ids = {item.post_id for item in seeded}
        audit.expect("GET /sitemap.xml", seeded_ids <= listed, "posts missing")


def check_search(audit: Audit, client: TestClient, query: str, titles: set[str]) -> None:
    where = f"GET /search?q={query!r}"
    root = audit.page(
        where, client.get("/search", params={"q": query}), shown=[("search query", query)]
    )
    audit.shows(where, "search box", attr_of(root, "search-q", "value"), query, exact=True)
    for card in root.find_all("article", "post-card"):
        heading = card.find_all("h2", "post-title")
        shown = heading[0].text() if heading else ""
        # The highlighted title must read exactly as the stored title.
        audit.expect(where, shown in titles, f"search hit title {shown!r} is not a stored title")
        audit.checks += 3  # the hit's title, author and snippet


def check_search_hit(audit: Audit, client: TestClient, item: Seeded, number: int) -> None:
    """Search for a word only this post has: its hostile title and content come back as a
    hit, and the highlighting may mark that word and nothing else."""
    word = f"xssmark{number}"
    where = f"GET /search?q={word} [{item.payload!r}]"
    root = audit.page(where, client.get("/search", params={"q": word}), shown=stored_fields(item))
    cards = root.find_all("article", "post-card")
    audit.expect(where, len(cards) == 1, f"{len(cards)} hits")
    for card in cards:
        heading = card.find_all("h2", "post-title")
        title = heading[0].text() if heading else None
        audit.expect(where, title == item.title, f"hit title reads {title!r}")
        authors = card.find_all("a", "author")
        audit.shows(
            where, "hit author", authors[0].text() if authors else None, item.username, exact=True
        )
        marked = [mark.text() for mark in card.find_all("mark")]
        stray = [text for text in marked if text.lower() != word]
        audit.expect(where, not stray, f"<mark> around {stray!r}, not only the search word")


def check_api(audit: Audit, client: TestClient, seeded: list[Seeded]) -> None:
    listing = audit.json("GET /api/posts", client.get("/api/posts", params={"per_page": 100}))
    by_id = {post["id"]: post for post in listing or []}
    for item in seeded:
        post = by_id.get(item.post_id)
        audit.expect("GET /api/posts", post is not None, f"post {item.post_id} missing")
        if post:
            audit.expect("GET /api/posts", post["title"] == item.title, "title differs")
            audit._count(stored_fields(item))
        where = f"GET /api/posts/{item.post_id}"
        post = audit.json(
            where, client.get(f"/api/posts/{item.post_id}"), shown=stored_fields(item)
        )
        if post:
            audit.expect(where, post["title"] == item.title, "title differs")
            audit.expect(where, post["content"] == item.content, "content differs")
            audit.expect(where, post["author"]["username"] == item.username, "username differs")
        where = f"GET /api/users/{item.user_id}"
        user = audit.json(where, client.get(f"/api/users/{item.user_id}"))
        if user:
            audit.expect(where, user["username"] == item.username, "username differs")
            audit.expect(where, "email" not in user, "public user shows the email")


def check_reflected(audit: Audit, client: TestClient, payload: str) -> None:
    """Pages an anonymous visitor can make show `payload`: log-in, sign-up, errors."""
    quoted = quote(payload, safe="")
    where = f"GET /login?next={payload!r}"
    root = audit.page(
        where, client.get("/login", params={"next": payload}), shown=[("next", payload)]
    )
    next_inputs = root.find_all("input", name="next")
    audit.shows(
        where,
        "hidden next",
        next_inputs[0].attrs.get("value") if next_inputs else None,
        payload,
        exact=True,
    )

    where = f"GET /posts/new?x={payload!r} (log-in redirect)"
    response = client.get("/posts/new", params={"x": payload})
    audit.page(where, response, shown=[("query parameter", payload)])
    audit.expect(where, response.url.path == "/login", f"ended at {response.url}")

    for path, status in (
        (f"/posts/{quoted}", 404),
        (f"/?page={quoted}", 400),
        (f"/users/999999/posts?x={quoted}", 404),
    ):
        field_name = "URL path" if "?" not in path else "query parameter"
        audit.page(f"GET {path}", client.get(path), status=status, shown=[(field_name, payload)])
    for path in (f"/api/posts/{quoted}", f"/api/posts?page={quoted}", f"/api/users/{quoted}"):
        audit.json(
            f"GET {path}", client.get(path), status=(404, 422), shown=[("URL path", payload)]
        )


def check_register(audit: Audit, client: TestClient, token: str, payload: str) -> None:
    where = f"POST /register username={payload!r}"
    data = {
        "csrf_token": token,
        "username": payload,
        "email": payload,
        "password": PASSWORD,
        "confirm_password": PASSWORD,
    }
    response = client.post("/register", data=data, follow_redirects=False)
    root = audit.page(
        where, response, status=422, shown=[("username", payload), ("email", payload)]
    )
    audit.shows(
        where, "username box", attr_of(root, "field-username", "value"), payload, exact=True
    )
    audit.shows(where, "email box", attr_of(root, "field-email", "value"), payload, exact=True)
    audit.expect(where, root.by_id("error-username") is not None, "no username error")
    response = client.post(
        "/api/users", json={"username": payload, "email": "x@example.com", "password": PASSWORD}
    )
    audit.json(f"POST /api/users username={payload!r}", response, status=422)


def check_as_author(
    audit: Audit, member: TestClient, item: Seeded, browser_session, *, real_picture: bool
) -> None:
    """The pages only the author sees, and the forms they can send back with hostile values."""
    browser_session(member, item.user)
    where = f"GET /account [{item.payload!r}]"
    response = member.get("/account")
    root = audit.page(where, response, shown=[("username", item.payload), ("email", item.payload)])
    audit.shows(
        where, "username box", attr_of(root, "field-username", "value"), item.username, exact=True
    )
    audit.shows(where, "email box", attr_of(root, "field-email", "value"), item.email, exact=True)
    token = csrf_from(response.text)

    where = f"POST /account username={item.payload!r}"
    response = member.post(
        "/account",
        data={"csrf_token": token, "username": item.payload, "email": item.payload},
        follow_redirects=False,
    )
    root = audit.page(where, response, status=422, shown=[("username", item.payload)])
    audit.shows(
        where, "username box", attr_of(root, "field-username", "value"), item.payload, exact=True
    )
    audit.shows(where, "email box", attr_of(root, "field-email", "value"), item.payload, exact=True)

    where = f"POST /account/picture filename={item.payload!r}"
    upload = png_bytes((32, 32), (30, 90, 160)) if real_picture else b"<script>alert(1)</script>"
    response = member.post(
        "/account/picture",
        data={"csrf_token": token},
        files={"picture": (item.payload, upload, "image/png")},
        follow_redirects=False,
    )
    if real_picture:
        audit._response(where, response, 303)
        root = audit.page(where + " then GET /account", member.get("/account"))
        sources = [img.attrs.get("src", "") for img in root.find_all("img", "avatar")]
        audit.expect(where, any("/media/profile_pics/" in s for s in sources), str(sources))
        audit.expect(where, not any(item.payload in s for s in sources), "filename in src")
        audit._count([("upload filename", item.payload)])
    else:
        audit.page(where, response, status=422, shown=[("upload filename", item.payload)])

    check_two_factor_pages(audit, member, item, token, wrong_code=real_picture)

    where = f"GET /posts/{item.post_id}/edit [{item.payload!r}]"
    response = member.get(f"/posts/{item.post_id}/edit")
    root = audit.page(where, response, shown=stored_fields(item))
    audit.shows(where, "title box", attr_of(root, "field-title", "value"), item.title, exact=True)
    textarea = root.by_id("field-content")
    audit.shows(
        where, "content box", textarea.text() if textarea else None, item.content, exact=True
    )
    token = csrf_from(response.text)

    def submit_edit(**fields: str) -> httpx.Response:
        data = {"csrf_token": token, "title": item.payload, "content": item.content, **fields}
        return member.post(f"/posts/{item.post_id}/edit", data=data, follow_redirects=False)

    where = f"POST /posts/{item.post_id}/edit preview [{item.payload!r}]"
    response = submit_edit(action="preview")
    root = audit.page(where, response, shown=stored_fields(item))
    audit.shows(where, "title box", attr_of(root, "field-title", "value"), item.payload, exact=True)
    previews = root.find_all("div", "post-content")
    audit.expect(where, bool(previews), "no preview")

    where = f"POST /posts/{item.post_id}/edit too long [{item.payload!r}]"
    long_title = item.payload + "x" * 101
    response = submit_edit(title=long_title)
    root = audit.page(where, response, status=422, shown=stored_fields(item))
    audit.shows(where, "title box", attr_of(root, "field-title", "value"), long_title, exact=True)
    audit.expect(where, root.by_id("error-title") is not None, "no title error")

    where = f"GET /posts/{item.post_id}/delete [{item.payload!r}]"
    root = audit.page(
        where, member.get(f"/posts/{item.post_id}/delete"), shown=stored_fields(item, content=False)
    )
    titles = root.find_all("title")
    audit.shows(where, "<title>", titles[0].text() if titles else None, item.title)

    where = f"POST /posts/{item.post_id}/edit stale version [{item.payload!r}]"
    response = submit_edit(version="999999999")
    if response.status_code == 409:  # the form again, with the saved version beside it
        root = audit.page(where, response, status=409, shown=stored_fields(item))
        title_box = attr_of(root, "field-title", "value")
        audit.shows(where, "title box", title_box, item.payload, exact=True)
        headings = [h.text() for h in root.find_all("h3", "post-title")]
        audit.expect(where, item.title in headings, f"saved title shows as {headings!r}")
    else:  # no edit-conflict check: the same text was saved again
        audit._response(where, response, 303)

    where = f"GET /login?next={item.payload!r} (logged in)"
    response = member.get("/login", params={"next": item.payload}, follow_redirects=False)
    audit._response(where, response, 303)
    location = response.headers.get("location", "")
    audit.expect(where, is_local_path(location), f"redirects to {location!r}")
    audit.expect(where, not dangerous_url(location), f"redirects to {location!r}")
    audit._count([("next", item.payload)])


def visible_text(node: Node) -> str:
    """The text a sighted reader sees: without the words only screen readers are given."""
    return "".join(
        child
        if isinstance(child, str)
        else ("" if "visually-hidden" in child.attrs.get("class", "") else visible_text(child))
        for child in node.children
    )


def check_history(audit: Audit, member: TestClient, item: Seeded) -> None:
    """The author's history of the post and a comparison holding the hostile text."""
    response = member.get(f"/posts/{item.post_id}/edit")
    found = re.search(r'name="version" value="(\d+)"', response.text)
    added = f"{item.payload} added"
    data = {
        "csrf_token": csrf_from(response.text),
        "title": item.payload,
        "content": f"{item.content}\n\n{added}",
        "version": found.group(1) if found else "",
    }
    where = f"POST /posts/{item.post_id}/edit a second revision [{item.payload!r}]"
    saved = member.post(f"/posts/{item.post_id}/edit", data=data, follow_redirects=False)
    audit._response(where, saved, 303)

    where = f"GET /posts/{item.post_id}/history [{item.payload!r}]"
    root = audit.page(
        where,
        member.get(f"/posts/{item.post_id}/history"),
        shown=[("username", item.payload), ("post title", item.payload)],
    )
    headings = root.find_all("h1")
    audit.shows(where, "heading", headings[0].text() if headings else None, item.title)

    where = f"GET /posts/{item.post_id}/history/diff [{item.payload!r}]"
    response = member.get(f"/posts/{item.post_id}/history/diff", params={"from": 1, "to": 2})
    root = audit.page(where, response, shown=stored_fields(item))
    texts = root.find_all("div", "diff-text")
    shown = visible_text(texts[0]) if texts else None
    audit.shows(where, "compared text", shown, f"{item.content}\n\n{added}", exact=True)
    inserted = "".join(visible_text(node) for node in root.find_all("ins"))
    audit.shows(where, "added text", inserted, added)

    where = f"GET /posts/{item.post_id}/history/1/restore [{item.payload!r}]"
    response = member.get(f"/posts/{item.post_id}/history/1/restore")
    audit.page(where, response, shown=stored_fields(item))


def check_two_factor_pages(
    audit: Audit, member: TestClient, item: Seeded, token: str, *, wrong_code: bool
) -> None:
    """The set-up pages name the account (and draw it into the QR code); a code typed in
    is never shown back. Only a few wrong codes are sent: each one counts against the
    address, which the log-ins below share."""
    where = f"GET /account/two-factor [{item.payload!r}]"
    audit.page(where, member.get("/account/two-factor"), shown=[("username", item.payload)])
    where = f"POST /account/two-factor/setup [{item.payload!r}]"
    response = member.post("/account/two-factor/setup", data={"csrf_token": token})
    root = audit.page(where, response, shown=[("username", item.payload)])
    qr_codes = root.find_all("svg", "qr-code")
    audit.expect(where, len(qr_codes) == 1, f"{len(qr_codes)} QR codes")
    if wrong_code:
        where = f"POST /account/two-factor/confirm code={item.payload!r}"
        data = {"csrf_token": token, "code": item.payload}
        response = member.post("/account/two-factor/confirm", data=data)
        audit.page(where, response, status=400, shown=[("two-factor code", item.payload)])


def check_code_step(audit: Audit, app: FastAPI, db, username: str) -> None:
    """The code step of a login keeps a hostile `next` as text, in the page and the form."""
    from models import User
    from services import accounts
    from tests.support.two_factor import enable_two_factor
    from web.cookies import PENDING_LOGIN_COOKIE

    user = db.scalar(select(User).where(User.username == username))
    enable_two_factor(db, user)
    with TestClient(app) as visitor:
        visitor.cookies.set(PENDING_LOGIN_COOKIE, accounts.finish_login(db, user=user).token)
        for payload in (*PAYLOADS, *REFLECTED_ONLY, *NEXT_TARGETS):
            where = f"GET /login/code?next={payload!r}"
            response = visitor.get("/login/code", params={"next": payload})
            root = audit.page(where, response, shown=[("next", payload)])
            next_inputs = root.find_all("input", name="next")
            value = next_inputs[0].attrs.get("value") if next_inputs else None
            audit.shows(where, "hidden next", value, payload, exact=True)
        where = "POST /login/code (wrong code, hostile next)"
        data = {"csrf_token": csrf_from(response.text), "code": PAYLOADS[0], "next": PAYLOADS[1]}
        response = visitor.post("/login/code", data=data)
        audit.page(where, response, status=400, shown=[("next", PAYLOADS[1])])


def check_login_redirects(audit: Audit, app: FastAPI, username: str) -> None:
    """A real log-in with a hostile `next` must land on this site."""
    # Each log-in costs an argon2 verification; GET /login while logged in runs the same
    # check for the whole corpus.
    targets = (*NEXT_TARGETS, "javascript:alert(1)", "java\tscript:alert(1)")
    with TestClient(app) as visitor:
        for target in targets:
            visitor.cookies.clear()
            token = form_token(visitor, "/login")
            response = visitor.post(
                "/login",
                data={
                    "csrf_token": token,
                    "username": username,
                    "password": PASSWORD,
                    "next": target,
                },
                follow_redirects=False,
            )
            where = f"POST /login next={target!r}"
            audit._response(where, response, 303)
            location = response.headers.get("location", "")
            audit.expect(where, is_local_path(location), f"redirects to {location!r}")
            audit.expect(where, not dangerous_url(location), f"redirects to {location!r}")
            audit._count([("next", target)])


# ---------------------------------------------------------------- the tests


def test_corpus_is_well_formed():
    assert len(PAYLOADS) >= 30
    assert len(set(PAYLOADS)) == len(PAYLOADS)
    for payload in PAYLOADS:
        assert "\x00" not in payload, payload  # PostgreSQL cannot store NUL
        assert 0 < len(payload.strip()) <= 100, payload  # a valid title
        assert not re.fullmatch(USERNAME_PATTERN, payload), payload


BAD_MARKUP = {
    "script": "<p>x<script>alert(1)</script></p>",
    "script type module": '<script type="module">alert(1)</script>',
    "json-ld with src": '<script type="application/ld+json" src="//evil"></script>',
    "json-ld broken": '<script type="application/ld+json">{"a": "</script ><script>x"}</script>',
    "json-ld comment": '<script type="application/ld+json">{"a": "<!--"}</script>',
    "json-ld not json": '<script type="application/ld+json">alert(1)</script>',
    "handler": "<img src=x onerror=alert(1)>",
    "handler upper": "<IMG SRC=x OnError=alert(1)>",
    "handler slash": "<svg/onload=alert(1)>",
    "quote breakout": '<input value="" onmouseover="alert(1)">',
    "javascript href": '<a href="javascript:alert(1)">x</a>',
    "entity javascript": '<a href="&#106;avascript:alert(1)">x</a>',
    "tab javascript": '<a href="java&#9;script:alert(1)">x</a>',
    "leading space": '<a href=" \x01JAVASCRIPT:alert(1)">x</a>',
    "data src": '<img src="data:text/html,x">',
    "vbscript": '<a href="vbscript:x">x</a>',
    "form action": '<form action="javascript:alert(1)"></form>',
    "formaction": '<button formaction="javascript:alert(1)">x</button>',
    "xlink": '<a xlink:href="javascript:alert(1)">x</a>',
    "srcset": '<img srcset="ok.png 1x, javascript:alert(1) 2x">',
    "style attribute": '<p style="color:red">x</p>',
    "style element": "<style>*{}</style>",
    "iframe": "<iframe src=/x></iframe>",
    "object": "<object data=/x></object>",
    "embed": "<embed src=/x>",
    "svg": "<svg></svg>",
    "svg posing as a QR code": '<svg class="qr-code"><script>alert(1)</script></svg>',
    "QR code with a handler": '<svg class="qr-code" onload="alert(1)"><path d="M0 0"/></svg>',
    "QR code with a link": '<svg class="qr-code"><a href="/x"><path d="M0 0"/></a></svg>',
    "QR code with foreign content": '<svg class="qr-code"><foreignObject></foreignObject></svg>',
    "QR code with a style": '<svg class="qr-code"><path style="x" d="M0 0"/></svg>',
    "QR code inside an svg": '<svg><svg class="qr-code"></svg></svg>',
    "math": "<math></math>",
    "base": "<base href=/>",
    "meta refresh": '<meta http-equiv="refresh" content="0;url=/">',
    "srcdoc": '<iframe srcdoc="x"></iframe>',
    "markup in title": "<title>a<b>x</b></title>",
    "markup in textarea": "<textarea></textarea><textarea><img src=x></textarea>",
}


@pytest.mark.parametrize("case", BAD_MARKUP)
def test_inspector_flags_unsafe_markup(case):
    _, problems = inspect_html(BAD_MARKUP[case])
    assert problems, case


def test_inspector_accepts_the_sites_own_qr_code():
    from services.two_factor import qr_code_svg

    svg = qr_code_svg("otpauth://totp/Inkwell:<script>?secret=AAAA", title="QR <b>code</b>")
    root, problems = inspect_html(f"<figure>{svg}</figure><p>after</p>")
    assert problems == []
    assert root.find_all("p")[0].text() == "after"


def test_inspector_accepts_the_sites_own_kind_of_markup():
    markup = (
        "<!doctype html><html><head><title>&lt;script&gt; · Inkwell</title>"
        '<script type="application/ld+json">{"a": "\\u003c/script\\u003e"}</script>'
        '<link rel="stylesheet" href="/static/style.css"></head><body>'
        '<a href="https://example.com/javascript:x" rel="nofollow">javascript:alert(1)</a>'
        '<img src="/media/x.jpg" alt="&quot; onerror=&quot;x">'
        "<textarea>&lt;/textarea&gt;</textarea>"
        '<input value="&quot;&gt;&lt;script&gt;"><p>&lt;img src=x onerror=alert(1)&gt;</p>'
        "</body></html>"
    )
    root, problems = inspect_html(markup)
    assert problems == []
    assert root.find_all("p")[0].text() == "<img src=x onerror=alert(1)>"
    assert root.find_all("img")[0].attrs["alt"] == '" onerror="x'


def check_media(audit: Audit, member: TestClient, item: Seeded, number: int) -> None:
    """The media library, the post form's image upload and an image with a hostile alt text:
    upload file names, titles and alt texts stay text."""
    token = form_token(member, "/account/media")
    image = png_bytes((48, 32), (number % 256, 90, 160))
    where = f"POST /account/media filename={item.payload!r}"
    response = member.post(
        "/account/media",
        data={"csrf_token": token},
        files={"file": (item.payload, image, "image/png")},
        follow_redirects=False,
    )
    audit._response(where, response, 303)
    where = f"POST /posts/new insert_image title={item.payload!r}"
    response = member.post(
        "/posts/new",
        data={
            "csrf_token": token,
            "title": item.title,
            "content": item.content,
            "action": "insert_image",
        },
        files={"image": (item.payload, image, "image/png")},
    )
    root = audit.page(where, response, shown=[("title", item.title)])
    audit.shows(where, "title box", attr_of(root, "field-title", "value"), item.title, exact=True)
    textarea = root.by_id("field-content")
    content = textarea.text() if textarea else ""
    audit.expect(where, "![](/media/images/" in content, "no image inserted")
    snippet = content[content.rindex("![](") :].strip()
    hostile = snippet.replace("![]", f"![{item.payload}]", 1)
    where = f"POST /posts/new image alt={item.payload!r}"
    response = member.post(
        "/posts/new",
        data={"csrf_token": token, "title": item.title, "content": hostile, "action": "save"},
    )
    root = audit.page(where, response, shown=[("title", item.title)])
    sources = [img.attrs.get("src", "") for img in root.find_all("img")]
    # Line breaks, brackets and code fences in the alt text make it no image at all.
    if not re.search(r"[\n\[\]`]", item.payload):
        audit.expect(where, any("/media/images/" in s for s in sources), str(sources))
    where = f"GET /account/media [{item.payload!r}]"
    root = audit.page(where, member.get("/account/media"), shown=[("library post", item.title)])
    links = [a.text() for a in root.find_all("a") if "/posts/" in a.attrs.get("href", "")]
    audit.expect(where, item.title in links, f"post title not shown as text: {links}")
    delete_path = next(
        (
            f.attrs["action"]
            for f in root.find_all("form")
            if "/delete" in f.attrs.get("action", "")
        ),
        None,
    )
    if delete_path:
        where = f"POST {delete_path} [{item.payload!r}]"
        response = member.post(delete_path, data={"csrf_token": token})
        audit.page(where, response, status=(303, 409), shown=[("library post", item.title)])


def test_xss_corpus_in_every_field_and_page(
    app, client, db, backend, make_user, make_account, api_headers, browser_session
):
    audit = Audit(backend)
    seeded = seed_corpus(client, make_user, api_headers)
    titles = {item.title for item in seeded}

    # What anyone can see: listings, posts, author pages, feeds, the sitemap, the API.
    check_listings(audit, client, seeded)
    for item in seeded:
        check_post_page(audit, client, item)
        check_author_page(audit, client, item)
        check_author_feed(audit, client, item)
    check_site_feed_and_sitemap(audit, client, seeded)
    check_api(audit, client, seeded)

    # What a visitor can make a page reflect: search, log-in, sign-up, error pages.
    register_token = form_token(client, "/register")
    for payload in (*PAYLOADS, *REFLECTED_ONLY):
        check_search(audit, client, payload, titles)
        check_reflected(audit, client, payload)
    for number, item in enumerate(seeded):
        check_search_hit(audit, client, item, number)
    for payload in PAYLOADS:
        check_register(audit, client, register_token, payload)

    # What the author sees and sends back.
    with TestClient(app) as member:
        for number, item in enumerate(seeded):
            check_as_author(audit, member, item, browser_session, real_picture=number < 3)
            check_history(audit, member, item)
            check_media(audit, member, item, number)
    check_login_redirects(audit, app, make_account("xss-login").username)
    check_code_step(audit, app, db, make_account("xss-two-factor").username)

    print(audit.summary())
    shown = "\n".join(audit.problems[:60])
    more = f"\n... and {len(audit.problems) - 60} more" if len(audit.problems) > 60 else ""
    assert not audit.problems, f"{audit.summary()}\n{shown}{more}"


def strip_markers(text: str) -> str:
    return text.replace(MARK_START, "").replace(MARK_END, "")


def test_search_highlight_markers_typed_into_a_post_stay_text(client, make_user, api_headers):
    """search.py has the database wrap matches in U+E000/U+E001 and turns those into <mark>
    after escaping; the same characters typed into a title or body must not become markup
    (unbalanced </mark> tags, or highlighting the author chose)."""
    title = f"{MARK_START}<b>spoofed</b>{MARK_END} xsshl {MARK_END}{MARK_END}"
    created = client.post(
        "/api/posts",
        json={"title": title, "content": f"xsshl {MARK_END} body {MARK_START} text"},
        headers=api_headers(make_user()),
    )
    assert created.status_code == 201
    response = client.get("/search", params={"q": "xsshl"})
    assert response.status_code == 200
    root, problems = inspect_html(response.text)
    assert problems == []
    cards = root.find_all("article", "post-card")
    assert len(cards) == 1
    headings = cards[0].find_all("h2", "post-title")
    assert headings
    assert strip_markers(headings[0].text()) == strip_markers(title).strip()
    marked = [mark.text() for mark in cards[0].find_all("mark")]
    assert marked
    assert all(text.lower() == "xsshl" for text in marked), marked


def test_markers_in_rows_written_elsewhere_still_give_balanced_markup(client, make_user, make_post):
    """A row that bypassed the schemas may hold marker characters: the page stays valid."""
    title = f"{MARK_START}<b>spoofed</b>{MARK_END} xsshl {MARK_END}{MARK_END}"
    make_post(make_user(), title=title, content=f"xsshl {MARK_END} body {MARK_START} text")
    response = client.get("/search", params={"q": "xsshl"})
    assert response.status_code == 200
    _root, problems = inspect_html(response.text)
    assert problems == []
    main = response.text.split("<main", 1)[1]
    assert main.count("<mark>") == main.count("</mark>")
    assert "<b>" not in main


def test_xss_corpus_in_mailed_links_and_mail(app, client, db, backend, make_user, browser_session):
    """Hostile names and addresses (legacy rows) on the pages mailed links open, the account
    page's pending address, the reset form's reflected address, and the mail itself (the
    HTML alternative is autoescaped; its inline styles are what mail clients need, so only
    what could run is looked for there)."""
    from datetime import timedelta

    from services import account_links, mail

    audit = Audit(backend)
    site = mail.Site("Inkwell", "http://testserver/", "http://testserver/account", str, str, str)
    reset_token = form_token(client, "/password-reset")
    for number, payload in enumerate(PAYLOADS):
        email = f"u{number}.{payload}"[:120]
        user = make_user(f"{payload[:44]}~{number:03d}", email=email, pending_email=email[::-1])
        tokens = {
            purpose: account_links.issue(
                db, user=user, purpose=purpose, email=address, ttl=timedelta(hours=1)
            )
            for purpose, address in (("reset", user.email), ("verify", user.pending_email))
        }
        db.commit()
        where = f"GET /password-reset/{{token}} [{payload!r}]"
        response = client.get(f"/password-reset/{tokens['reset']}")
        root = audit.page(where, response, shown=[("username", payload)])
        audit.shows(where, "username", root.find_all("strong")[0].text(), user.username, exact=True)
        where = f"GET /verify-email/{{token}} [{payload!r}]"
        response = client.get(f"/verify-email/{tokens['verify']}")
        root = audit.page(where, response, shown=[("pending email", payload[::-1])])
        audit.shows(
            where, "address", root.find_all("strong")[0].text(), user.pending_email, exact=True
        )
        with TestClient(app) as member:
            browser_session(member, user)
            where = f"GET /account pending [{payload!r}]"
            root = audit.page(
                where, member.get("/account"), shown=[("pending email", payload[::-1])]
            )
            audit.shows(where, "pending", root.by_id("email-status").text(), user.pending_email)
        where = f"POST /password-reset email={payload!r}"
        response = client.post(
            "/password-reset", data={"email": payload, "csrf_token": reset_token}
        )
        root = audit.page(where, response, status=422, shown=[("reset email", payload)])
        audit.shows(where, "email box", attr_of(root, "field-email", "value"), payload, exact=True)
        for template in ("password_reset", "verify_email", "email_changed", "invitation"):
            where = f"mail {template} [{payload!r}]"
            text, html = mail.render(
                template,
                site=site,
                username=payload,
                inviter=payload,
                link="http://x/",
                new_email=payload,
                changing=True,
            )
            audit.expect(where, payload in text, "the plain text does not show the value as typed")
            root, problems = inspect_html(html)
            for problem in problems:
                # The template's own inline styles; a value could never add one (escaped).
                if not problem.message.startswith("style attribute"):
                    audit.flag(where, problem.message, executable=problem.executable)
            audit._unescaped(where, html, [("mail", payload)])
            audit.expect(where, payload in root.text(), "the HTML does not show the value as text")
    print(audit.summary())
    assert not audit.problems, "\n".join(audit.problems[:60])
