"""Listings: pages of posts, newest first, as the pages, feeds and the API read them.

Each listing's statements are built once per shape (which filters apply, and whether the
page starts at the top) with every value a bound parameter, and pages past the first are
reached by sort key rather than by OFFSET, so a listing costs the same at any table size.
`list_posts` loads the posts; `list_entries` reads only their stamps, for listings
assembled from cached entries (web.fragments).
"""

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import Integer, Select, bindparam, func, select, tuple_
from sqlalchemy.orm import Session, defer, joinedload

from config import utcnow
from models import Post, User, live_post
from services import tags, validity
from services.paging import NumberedPage


@dataclass(frozen=True)
class PostPage(NumberedPage):
    """One page of a newest-first post listing. Only a bounded number of rows past this page
    is counted, so a listing costs the same at any table size."""

    posts: list[Post]


SelectT = TypeVar("SelectT", bound=Select[Any])


def _newest_first(query: SelectT) -> SelectT:
    """Newest first, ties broken by id: the order every listing, feed and sitemap uses.
    Unpublished posts (no published_at) come first in an author's own listing."""
    return query.order_by(Post.published_at.desc().nulls_first(), Post.id.desc())


# Listings are read on most requests, so their statements are built once per shape (whose
# filters apply, and whether the page starts at the top) with every value a parameter:
# SQLAlchemy then finds each one compiled without working out its cache key again.
LIMIT, OFFSET = bindparam("limit", type_=Integer), bindparam("offset")
AHEAD_CAP, AHEAD_START = bindparam("ahead_cap", type_=Integer), bindparam("ahead_start")


@dataclass(frozen=True)
class Shape:
    """Which filters a listing applies."""

    by_author: bool
    by_tag: bool
    include_unpublished: bool


@lru_cache(maxsize=64)
def _rows(shape: Shape) -> Select[tuple[Post]]:
    rows = select(Post)
    if not shape.include_unpublished:
        rows = rows.where(live_post(validity.NOW))
    if shape.by_author:
        rows = rows.where(Post.user_id == bindparam("author_id"))
    if shape.by_tag:
        rows = rows.where(Post.id.in_(tags.posts_tagged(bindparam("tag_id"))))
    return rows


@lru_cache(maxsize=64)
def _page_rows(shape: Shape, *, from_start: bool) -> Select[tuple[Post]]:
    """This page's posts, newest first (columns chosen with `with_only_columns`)."""
    rows = _rows(shape)
    if not from_start:
        rows = _from_position(rows, keyed=not shape.include_unpublished)
    return _newest_first(rows).limit(LIMIT)


@lru_cache(maxsize=64)
def _page_entries(shape: Shape, *, from_start: bool) -> Select[Any]:
    page = _page_rows(shape, from_start=from_start).with_only_columns(*validity.STAMP_COLUMNS)
    return page.join(User, User.id == Post.user_id)


@lru_cache(maxsize=64)
def _page_posts(shape: Shape, *, from_start: bool) -> Select[tuple[Post]]:
    return _page_rows(shape, from_start=from_start).options(joinedload(Post.author))


@lru_cache(maxsize=64)
def _count_ahead(shape: Shape) -> Select[tuple[int]]:
    """How many rows follow the page, counting no further than the cap."""
    window = _newest_first(_rows(shape).with_only_columns(Post.id))
    window_rows = window.limit(AHEAD_CAP).offset(AHEAD_START).subquery()
    return select(func.count()).select_from(window_rows)


@dataclass(frozen=True)
class Listing:
    """Which posts a listing holds and where its page starts (what list_posts and
    list_entries share)."""

    shape: Shape
    offset: int
    per_page: int
    filters: dict[str, object]

    def parameters(self, *, rows: int) -> dict[str, object]:
        return {**self.filters, "now": utcnow(), "offset": self.offset, "limit": rows}


def _listing(
    *,
    page: int,
    per_page: int,
    author_id: int | None,
    tag_id: int | None,
    include_unpublished: bool,
) -> Listing:
    shape = Shape(author_id is not None, tag_id is not None, include_unpublished)
    filters = {"author_id": author_id, "tag_id": tag_id}
    filters = {name: value for name, value in filters.items() if value is not None}
    return Listing(shape, (page - 1) * per_page, per_page, filters)


def _last_known_page(db: Session, listing: Listing, *, page: int, lookahead_pages: int) -> int:
    per_page = listing.per_page
    parameters = {
        **listing.parameters(rows=per_page),
        "ahead_start": listing.offset + per_page,
        "ahead_cap": lookahead_pages * per_page,
    }
    ahead = db.scalar(_count_ahead(listing.shape), parameters) or 0
    return page + -(-ahead // per_page)


def list_posts(
    db: Session,
    *,
    page: int,
    per_page: int,
    author_id: int | None = None,
    tag_id: int | None = None,
    lookahead_pages: int = 1,
    include_unpublished: bool = False,
) -> PostPage:
    """A page of posts, newest first, authors loaded in the same statement (tags in one more).

    Readers' listings hold live posts only; `include_unpublished` (an author's own listing)
    adds their drafts and scheduled posts.
    """
    listing = _listing(
        page=page,
        per_page=per_page,
        author_id=author_id,
        tag_id=tag_id,
        include_unpublished=include_unpublished,
    )
    query = _page_posts(listing.shape, from_start=listing.offset == 0)
    posts = db.scalars(query, listing.parameters(rows=per_page)).all()
    last = _last_known_page(db, listing, page=page, lookahead_pages=lookahead_pages)
    return PostPage(posts=list(posts), number=page, size=per_page, last_known_page=last)


@dataclass(frozen=True)
class EntryPage(NumberedPage):
    """A page of a listing as the stamps of its posts, newest first: what each entry was
    made from, read without loading the posts (their text stays in the database)."""

    entries: list[validity.PostStamp]


def list_entries(
    db: Session,
    *,
    page: int,
    per_page: int,
    author_id: int | None = None,
    tag_id: int | None = None,
    lookahead_pages: int = 1,
    include_unpublished: bool = False,
) -> EntryPage:
    """The page list_posts would return with the same arguments, as its posts' stamps.

    One statement: the rows that follow the page, up to the pages it links ahead, come with
    it (their stamps are a few columns from the index and the author's row).
    """
    listing = _listing(
        page=page,
        per_page=per_page,
        author_id=author_id,
        tag_id=tag_id,
        include_unpublished=include_unpublished,
    )
    query = _page_entries(listing.shape, from_start=listing.offset == 0)
    parameters = listing.parameters(rows=per_page * (1 + lookahead_pages))
    # Plain columns: read on the session's connection, past the ORM's result machinery.
    rows = db.connection().execute(query, parameters).all()
    entries = [validity.post_stamp_of_row(row) for row in rows[:per_page]]
    pages_ahead = -(-max(0, len(rows) - per_page) // per_page)
    return EntryPage(
        entries=entries, number=page, size=per_page, last_known_page=page + pages_ahead
    )


def load_entries(db: Session, *, post_ids: list[int], with_text: bool) -> dict[int, Post]:
    """The posts `post_ids` that still exist, by id, as a listing shows them: with their
    authors and tags, never their rendered HTML, and their text only `with_text`."""
    if not post_ids:
        return {}
    left_out = [defer(Post.content_html)] + ([] if with_text else [defer(Post.content)])
    query = select(Post).options(joinedload(Post.author), *left_out).where(Post.id.in_(post_ids))
    return {post.id: post for post in db.scalars(query).unique()}


def newest_post_stamps(db: Session, *, limit: int) -> list[tuple[int, str, int, datetime]]:
    """(post id, slug, author id, updated_at) of the newest `limit` live posts, in one
    statement."""
    query = _newest_first(
        select(Post.id, Post.slug, Post.user_id, Post.updated_at).where(live_post())
    ).limit(limit)
    return [(row.id, row.slug, row.user_id, row.updated_at) for row in db.execute(query)]


def _from_position(listing: Select[tuple[Post]], *, keyed: bool) -> Select[tuple[Post]]:
    """The listing from its OFFSET-th row on, reached by sort key instead of by OFFSET.

    OFFSET would read every skipped row, bodies and all, and join each to its author; the
    key of the row at the offset is counted off in the (published_at, id) index alone, so
    page 5,000 of a million posts takes milliseconds rather than most of a second.
    """
    if not keyed:
        # Unpublished posts have no date to compare; an author's own listing, the only one
        # that holds them, is short enough for OFFSET.
        return listing.offset(OFFSET)
    key_at_offset = (
        _newest_first(listing.with_only_columns(Post.published_at, Post.id))
        .limit(1)
        .offset(OFFSET)
        .correlate(None)
        .scalar_subquery()
    )
    return listing.where(tuple_(Post.published_at, Post.id) <= key_at_offset)
