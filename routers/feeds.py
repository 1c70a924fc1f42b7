"""Atom feeds (site-wide and per author), the sitemap and robots.txt.

The XML is rendered from templates/feeds/ by an environment of this module's own that escapes
everything (the shared page environment autoescapes only .html). Text from users is also
cleared of the characters XML 1.0 cannot carry, so a feed always parses.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from config import utcnow
from database import SessionDep
from models import Post, User
from services import listings, tags, users
from web.deps import SettingsDep, get_current_user
from web.errors import API_PREFIX
from web.middleware import BodyLimitedRoute
from web.privacy import Public
from web.templating import TEMPLATE_DIR
from web.urls import post_url, url_for

# Looking the session up costs nothing without a cookie (feed readers and crawlers send
# none), and keeps the header of an error page (an unknown author's feed) right for a person.
router = APIRouter(
    include_in_schema=False,
    dependencies=[Public, Depends(get_current_user)],
    route_class=BodyLimitedRoute,
)

FEED_SIZE = 20
# The sitemap protocol's limit for one file (it also caps a file at 50 MB; 50,000 of these
# URLs come to a few megabytes).
SITEMAP_MAX_URLS = 50_000
ATOM_MEDIA_TYPE = "application/atom+xml; charset=utf-8"
XML_MEDIA_TYPE = "application/xml; charset=utf-8"
# Pages with nothing for a search engine: forms, the account, the JSON API.
ROBOTS_DISALLOWED_ROUTES = ("account", "post_new", "login", "register", "drafts")
# A number no id reaches (ids fit in 32 bits), standing for the id while a URL is resolved.
_URL_MARKER = 987_654_321_987_654_321

xml_templates = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)

# Everything outside XML 1.0's Char production: C0 controls other than tab, LF and CR, lone
# surrogates, U+FFFE and U+FFFF. No escape can carry these, so they are dropped.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")


def xml_text(value: str) -> str:
    """`value` as a plain str without the characters XML 1.0 forbids (escaping is the
    template's job; a plain str, never Markup, so that it is always escaped)."""
    return _NOT_XML_CHAR.sub("", str(value))


def rfc3339(value: datetime) -> str:
    """'2024-01-15T09:30:00Z' (RFC 3339 and W3C Datetime, always with the zone)."""
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _entry_html(post: Post) -> str:
    """The post body as the page shows it: sanitised HTML rendered from its Markdown.

    A plain str, so the XML template escapes it into the Atom content element.
    """
    return str(post.content_html)


# ---------------------------------------------------------------- Atom


@dataclass(frozen=True)
class Person:
    name: str
    uri: str


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    url: str
    published: str
    updated: str
    author: Person
    content_html: str


@dataclass(frozen=True)
class Feed:
    id: str
    title: str
    updated: str
    self_url: str
    alternate_url: str
    generator: str
    author: Person | None = None
    entries: list[Entry] = field(default_factory=list)


def _person(request: Request, user: User) -> Person:
    return Person(xml_text(user.username), str(url_for(request, "user_posts", user_id=user.id)))


def _entry(request: Request, post: Post) -> Entry:
    url = post_url(request, post)
    return Entry(
        # The short address is the entry's permanent id: it never changes with the slug.
        id=str(url_for(request, "post_short", post_id=post.id)),
        title=xml_text(post.title),
        url=url,
        published=rfc3339(post.published_at or post.date_posted),
        updated=rfc3339(post.updated_at),
        author=_person(request, post.author),
        content_html=xml_text(_entry_html(post)),
    )


def _atom_response(
    request: Request,
    entries: list[Post],
    *,
    title: str,
    self_url: str,
    alternate_url: str,
    author: Person | None = None,
) -> Response:
    # An empty feed has no entry to date it by; "now" never tells a reader it has seen it all.
    updated = max((post.updated_at for post in entries), default=utcnow())
    settings = request.app.state.settings
    feed = Feed(
        id=self_url,
        title=xml_text(title),
        updated=rfc3339(updated),
        self_url=self_url,
        alternate_url=alternate_url,
        generator=xml_text(settings.site_name),
        author=author,
        entries=[_entry(request, post) for post in entries],
    )
    body = xml_templates.get_template("feeds/atom.xml").render(feed=feed)
    last_modified = format_datetime(updated.astimezone(UTC), usegmt=True)
    return Response(body, media_type=ATOM_MEDIA_TYPE, headers={"Last-Modified": last_modified})


@router.get("/feed.xml", name="site_feed")
def site_feed(request: Request, db: SessionDep, settings: SettingsDep) -> Response:
    """The newest posts from every author."""
    listing = listings.list_posts(db, page=1, per_page=FEED_SIZE)
    return _atom_response(
        request,
        listing.posts,
        title=settings.site_name,
        self_url=str(url_for(request, "site_feed")),
        alternate_url=str(url_for(request, "home")),
    )


@router.get("/users/{user_id:int}/feed.xml", name="user_feed")
def user_feed(request: Request, user_id: int, db: SessionDep, settings: SettingsDep) -> Response:
    """One author's newest posts."""
    author = users.get_existing_user(db, user_id=user_id)
    listing = listings.list_posts(db, page=1, per_page=FEED_SIZE, author_id=author.id)
    return _atom_response(
        request,
        listing.posts,
        title=f"Posts by {author.username} · {settings.site_name}",
        self_url=str(url_for(request, "user_feed", user_id=author.id)),
        alternate_url=str(url_for(request, "user_posts", user_id=author.id)),
        author=_person(request, author),
    )


@router.get("/tags/{slug}/feed.xml", name="tag_feed")
def tag_feed(request: Request, slug: str, db: SessionDep, settings: SettingsDep) -> Response:
    """The newest posts carrying one tag."""
    tag = tags.get_tag(db, slug=slug)
    listing = listings.list_posts(db, page=1, per_page=FEED_SIZE, tag_id=tag.id)
    return _atom_response(
        request,
        listing.posts,
        title=f"Posts tagged {tag.name} · {settings.site_name}",
        self_url=str(url_for(request, "tag_feed", slug=tag.slug)),
        alternate_url=str(url_for(request, "tag_posts", slug=tag.slug)),
    )


# ---------------------------------------------------------------- sitemap and robots.txt


@dataclass(frozen=True)
class SitemapUrl:
    loc: str
    lastmod: str | None = None


def _url_maker(request: Request, name: str, param: str) -> Callable[[int], str]:
    """`url_for(request, name, **{param: n})` as a function of the integer n, resolved once:
    looking the route up for each of 50,000 addresses would take seconds."""
    parts = str(url_for(request, name, **{param: _URL_MARKER})).split(str(_URL_MARKER))
    if len(parts) != 2:  # the marker's digits elsewhere in the URL too: resolve each time
        return lambda value: str(url_for(request, name, **{param: value}))
    prefix, suffix = parts
    return lambda value: f"{prefix}{value}{suffix}"


@router.get("/sitemap.xml", name="sitemap")
def sitemap(request: Request, db: SessionDep, settings: SettingsDep) -> Response:
    """The home page, then posts newest first, then the pages of their authors.

    One file holds at most SITEMAP_MAX_URLS addresses: past that the oldest posts are left
    out, and with them authors none of whose posts made it in. Authors without posts have
    an empty page and are not listed.
    """
    budget = SITEMAP_MAX_URLS - 1  # the home page
    author_url = _url_maker(request, "user_posts", "user_id")
    rows = listings.newest_post_stamps(db, limit=budget)
    post_urls: list[SitemapUrl] = []
    author_lastmod: dict[int, datetime] = {}
    post_prefix = str(url_for(request, "post_short", post_id=1)).removesuffix("1")
    for post_id, slug, author_id, updated_at in rows:
        new_author = author_id not in author_lastmod
        if len(post_urls) + len(author_lastmod) + 1 + new_author > budget:
            break
        post_urls.append(SitemapUrl(f"{post_prefix}{post_id}/{slug}", rfc3339(updated_at)))
        if new_author or updated_at > author_lastmod[author_id]:
            author_lastmod[author_id] = updated_at
    # The home page shows the newest page of posts.
    home_updates = [updated_at for *_, updated_at in rows[: settings.page_size]]
    home = SitemapUrl(
        str(url_for(request, "home")), rfc3339(max(home_updates)) if home_updates else None
    )
    authors = [
        SitemapUrl(author_url(author_id), rfc3339(lastmod))
        for author_id, lastmod in author_lastmod.items()
    ]
    body = xml_templates.get_template("feeds/sitemap.xml").render(urls=[home, *post_urls, *authors])
    return Response(body, media_type=XML_MEDIA_TYPE)


@router.get("/robots.txt", response_class=PlainTextResponse, name="robots")
def robots(request: Request) -> PlainTextResponse:
    """Everything public may be crawled; forms, the account and the API may not."""
    disallowed = [url_for(request, name).path for name in ROBOTS_DISALLOWED_ROUTES]
    root_path = request.scope.get("root_path", "")
    disallowed.append(f"{root_path}{API_PREFIX}/")
    lines = [
        "User-agent: *",
        *(f"Disallow: {path}" for path in disallowed),
        f"Allow: {root_path}/",
        "",
        f"Sitemap: {url_for(request, 'sitemap')}",
    ]
    return PlainTextResponse("\n".join(lines) + "\n")
