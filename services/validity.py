"""What a cached page was made from, so that it is served only while that is unchanged.

Listings, feeds and every other page show many posts: they are stamped with the site-wide
content version (bumped by triggers on every post write, migration 0005) and the newest
moment a post went live. A post's own page shows one post and its author: it is stamped
with those two rows alone, so a write to another post leaves it cached.

Whatever hides or shows every post of one author at once (a suspension, say) calls
`invalidate_author`: both kinds of stamp then change.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from config import utcnow
from database import Database, OneRowRead
from models import Post, SiteState, User, is_live, live_post

# The site-wide stamp: (content version, newest moment a post went live).
SiteStamp = tuple[int, datetime | None]
# A post page's stamp: ("post", id, version, renderer, live now, author's name, picture and
# content version). Every part of the page that can change moves one of them: an edit or a
# new slug bumps the version, re-rendering the renderer, a scheduled moment coming the flag.
PostStamp = tuple[str, int, int, int, bool, str, str | None, int]
POST_STAMP = "post"


# The stamps are read on every request, so their statements are built once: SQLAlchemy then
# finds each one's compiled form without working out its cache key again.
NOW = bindparam("now")
_NEWEST_LIVE = select(func.max(Post.published_at)).where(live_post(NOW)).scalar_subquery()
SITE_STAMP = select(SiteState.content_version, _NEWEST_LIVE).where(SiteState.id == 1)


def post_stamp_of(post: Post) -> PostStamp:
    """The stamp of a post page made from `post` as it was loaded (author included)."""
    author = post.author
    return (
        POST_STAMP,
        post.id,
        post.version,
        post.render_version,
        post.is_live(),
        author.username,
        author.image_file,
        author.content_version,
    )


# What a post's stamp is made of, read without loading the post (a listing's entries).
STAMP_COLUMNS: Sequence[InstrumentedAttribute[Any]] = (
    Post.id,
    Post.version,
    Post.render_version,
    Post.published_at,
    Post.hidden,
    User.username,
    User.image_file,
    User.content_version,
)


def post_stamp_of_row(row: Sequence[Any]) -> PostStamp:
    """The stamp of the post whose STAMP_COLUMNS are `row` (the same as post_stamp_of)."""
    post_id, version, renderer, published_at, hidden, username, image_file, author_version = row
    return (
        POST_STAMP,
        post_id,
        version,
        renderer,
        is_live(published_at, hidden=hidden),
        username,
        image_file,
        author_version,
    )


_POST_STAMP_ROW = (
    select(*STAMP_COLUMNS)
    .join(User, User.id == Post.user_id)
    .where(Post.id == bindparam("post_id"))
)


class StampReads:
    """The stamps a cached page is checked against, each read compiled once for the
    database (database.OneRowRead): they are read on nearly every anonymous request."""

    def __init__(self, database: Database) -> None:
        self._site = OneRowRead(database, SITE_STAMP)
        self._post = OneRowRead(database, _POST_STAMP_ROW)

    def site(self) -> SiteStamp | None:
        """The site-wide stamp now (one row, and one step down an index)."""
        row = self._site(now=utcnow())
        return (row[0], row[1]) if row else None

    def post(self, post_id: int) -> PostStamp | None:
        """The stamp a page of post `post_id` made now would have; None once it is gone."""
        row = self._post(post_id=post_id)
        return None if row is None else post_stamp_of_row(row)


def post_id_of(stamp: PostStamp) -> int:
    return stamp[1]


def is_post_stamp(stamp: tuple[object, ...]) -> bool:
    return bool(stamp) and stamp[0] == POST_STAMP


def invalidate_author(db: Session, *, user_id: int) -> None:
    """Make every cached page showing anything of author `user_id` stale: their post pages
    (through their content version) and every listing (through the site-wide one). Part of
    the caller's transaction: it takes effect when that commits."""
    db.execute(
        update(User).where(User.id == user_id).values(content_version=User.content_version + 1)
    )
    db.execute(
        update(SiteState)
        .where(SiteState.id == 1)
        .values(content_version=SiteState.content_version + 1)
    )
