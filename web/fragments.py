"""Rendered pieces of pages, cached per worker under the stamp of the rows they show.

A listing page that misses the page cache (a new URL, a logged-in reader, any page after a
write) is assembled from the entries of its posts: each entry is rendered once per post
version and reused by every listing that shows it, anonymous or not. Listings read their
posts' stamps (services.posts.list_entries) and load only the posts whose entry is missing
or stale. An entry holds nothing personal: it is the same for every reader allowed the
listing it appears in, and who that is was decided by the query that named the post.
"""

from typing import Any

from fastapi import Request
from markupsafe import Markup
from sqlalchemy.orm import Session

from services import posts, validity
from web.bounded_cache import BoundedCache
from web.templating import templates

# Some 2,500 entries: every post of the busiest listings, in a fraction of a worker.
MAX_FRAGMENT_BYTES = 2 * 1024 * 1024
POST_ENTRY_TEMPLATE = "_post.html"


class FragmentCache(BoundedCache[Markup]):
    def __init__(self, max_bytes: int = MAX_FRAGMENT_BYTES) -> None:
        super().__init__(max_bytes, len)


def _cache(request: Request) -> FragmentCache:
    cache: FragmentCache = request.app.state.fragments
    return cache


def _entry_key(request: Request, post_id: int) -> tuple[str, str, int]:
    # Entries hold absolute URLs: the origin they were built for is part of what they are.
    return ("post-entry", str(request.base_url), post_id)


def render_post_entry(request: Request, post: Any) -> Markup:
    """A post's entry in a listing, rendered from a loaded Post."""
    return Markup(templates.get_template(POST_ENTRY_TEMPLATE).render(request=request, post=post))


def post_entries(request: Request, db: Session, page: posts.EntryPage) -> list[Markup]:
    """The entries of `page`'s posts in order, rendering only those not cached at their
    current stamp (loaded in one query). A post deleted since the page was read is left out."""
    cache = _cache(request)
    ids = [validity.post_id_of(stamp) for stamp in page.entries]
    entries = {
        post_id: cache.get(_entry_key(request, post_id), stamp)
        for post_id, stamp in zip(ids, page.entries, strict=True)
    }
    missing = [post_id for post_id, entry in entries.items() if entry is None]
    for post_id, post in posts.load_entries(db, post_ids=missing).items():
        entry = render_post_entry(request, post)
        # Stamped with the post as loaded, which may be newer than the listing's read: the
        # entry is then stored under the newer stamp, the one the next listing will name.
        cache.put(_entry_key(request, post_id), validity.post_stamp_of(post), entry)
        entries[post_id] = entry
    return [entry for entry in entries.values() if entry is not None]
