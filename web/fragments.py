"""Rendered pieces of pages, cached per worker under the stamp of the rows they show.

A listing page that misses the page cache (a new URL, a logged-in reader, any page after a
write) is assembled from the entries of its posts: each entry is rendered once per post
version and reused by every listing that shows it, anonymous or not. Listings read their
posts' stamps (services.listings.list_entries) and load only the posts whose entry is missing
or stale. An entry holds nothing personal: it is the same for every reader allowed the
listing it appears in, and who that is was decided by the query that named the post.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from fastapi import Request
from markupsafe import Markup
from sqlalchemy.orm import Session

from models import Post
from schemas import PostPublic
from services import listings, tags, validity
from web.bounded_cache import BoundedCache
from web.templating import templates
from web.urls import post_url

# Some 2,500 entries: every post of the busiest listings, in a fraction of a worker.
MAX_FRAGMENT_BYTES = 2 * 1024 * 1024
POST_ENTRY_TEMPLATE = "_post.html"
POST_HEAD_TEMPLATE = "posts/_head.html"
POST_ARTICLE_TEMPLATE = "posts/_article.html"


Fragment = TypeVar("Fragment", Markup, bytes)


class FragmentCache(BoundedCache[Markup | bytes]):
    def __init__(self, max_bytes: int = MAX_FRAGMENT_BYTES) -> None:
        super().__init__(max_bytes, len)


def _cache(request: Request) -> FragmentCache:
    cache: FragmentCache = request.app.state.fragments
    return cache


def render_post_entry(request: Request, post: Post) -> Markup:
    """A post's entry in a listing page."""
    return Markup(templates.get_template(POST_ENTRY_TEMPLATE).render(request=request, post=post))


def public_post(request: Request, post: Post) -> PostPublic:
    """A post as the API shows it, with its absolute canonical address."""
    public = PostPublic.model_validate(post)
    public.url = post_url(request, post)
    return public


def render_post_json(request: Request, post: Post) -> bytes:
    """A post as the API shows it, serialised."""
    return public_post(request, post).model_dump_json().encode()


@dataclass(frozen=True)
class FragmentKind(Generic[Fragment]):
    """What is made of one post, and whether making it needs the post's text."""

    name: str
    render: Callable[[Request, Post], Fragment]
    reads_text: bool = False


POST_ENTRY = FragmentKind("post-entry", render_post_entry)
POST_JSON = FragmentKind("post-json", render_post_json, reads_text=True)


def _assemble(
    request: Request, db: Session, page: listings.EntryPage, kind: FragmentKind[Fragment]
) -> list[Fragment]:
    """The `kind` fragments of `page`'s posts, in order, rendering only those not cached at
    their current stamp (loaded in one query). A post deleted since the page was read is
    left out."""
    cache = _cache(request)
    # Fragments hold absolute URLs: the origin they were built for is part of what they are.
    origin = str(request.base_url)
    ids = [validity.post_id_of(stamp) for stamp in page.entries]
    keys = {post_id: (kind.name, origin, post_id) for post_id in ids}
    found: dict[int, Fragment | None] = {
        post_id: cache.get(keys[post_id], stamp)  # type: ignore[misc]
        for post_id, stamp in zip(ids, page.entries, strict=True)
    }
    missing = [post_id for post_id, fragment in found.items() if fragment is None]
    loaded = listings.load_entries(db, post_ids=missing, with_text=kind.reads_text)
    for post_id, post in loaded.items():
        fragment = kind.render(request, post)
        # Stamped with the post as loaded, which may be newer than the listing's read: the
        # fragment is then stored under the newer stamp, the one the next listing will name.
        cache.put(keys[post_id], validity.post_stamp_of(post), fragment)
        found[post_id] = fragment
    return [fragment for fragment in found.values() if fragment is not None]


def post_json(request: Request, db: Session, post: Post) -> bytes:
    """One loaded post as the API's JSON, from the cache while the post is unchanged."""
    cache = _cache(request)
    key = (POST_JSON.name, str(request.base_url), post.id)
    stamp = validity.post_stamp_of(post)
    fragment = cache.get(key, stamp)
    if not isinstance(fragment, bytes):
        tags.load_tags(db, post)
        fragment = render_post_json(request, post)
        cache.put(key, stamp, fragment)
    return fragment


def _cached_part(request: Request, db: Session, post: Post, name: str, preview: bool) -> Markup:
    cache = _cache(request)
    key = (name, str(request.base_url), post.id, preview)
    stamp = validity.post_stamp_of(post)
    part = cache.get(key, stamp)
    if not isinstance(part, Markup):
        tags.load_tags(db, post)
        context = {"request": request, "post": post, "preview": preview}
        part = Markup(templates.get_template(name).render(context))
        cache.put(key, stamp, part)
    return part


def post_page_parts(
    request: Request, db: Session, post: Post, *, preview: bool
) -> dict[str, Markup]:
    """The parts of a post's page that are the same for every reader (its head tags and
    the article), for the page template to place around what is personal."""
    return {
        "post_head": _cached_part(request, db, post, POST_HEAD_TEMPLATE, preview),
        "post_article": _cached_part(request, db, post, POST_ARTICLE_TEMPLATE, preview),
    }


def post_entries(request: Request, db: Session, page: listings.EntryPage) -> list[Markup]:
    """The entries of a listing page's posts."""
    return _assemble(request, db, page, POST_ENTRY)


def post_json_list(request: Request, db: Session, page: listings.EntryPage) -> bytes:
    """A page of posts as the API's JSON array."""
    return b"[" + b",".join(_assemble(request, db, page, POST_JSON)) + b"]"
