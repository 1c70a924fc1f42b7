"""Posts: the queries and writes the API and the pages share, and who may see what
(listings of many posts are services.listings).

Readers see a post once its `published_at` has come (drafts have none, scheduled posts a
future one); its author sees it always. Every reader-facing query filters on that, so a
scheduled post goes live at its moment with nothing to run.
"""

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, bindparam, select, update
from sqlalchemy.orm import Session, joinedload, lazyload
from sqlalchemy.orm.exc import StaleDataError

from config import NewAccountLimit, utcnow
from database import reading
from models import Post, User, live_post
from schemas import MAX_ID, PostCreate, PostReplace, PostUpdate
from services import markdown, revisions, search, tags, throttling
from services.errors import (
    ConflictError,
    EditConflictError,
    ForbiddenError,
    NotFoundError,
    ThrottledError,
)
from services.text import duration, slugify

POST_NOT_FOUND = "Post not found"
NOT_THE_AUTHOR = "You are not the author of this post"
DEFAULT_SLUG = "post"
# The last part of the addresses of a post's own pages (/posts/{id}/edit …): no slug may be one.
RESERVED_SLUGS = frozenset({"edit", "delete", "review-links", "history", "revisions"})


def post_slug(slug: str | None, title: str) -> str:
    """The slug the author chose, or one made from the title; one that names a post's own
    page (`edit`) gets `-post` added."""
    chosen = slug or slugify(title) or DEFAULT_SLUG
    return f"{chosen}-post" if chosen in RESERVED_SLUGS else chosen


def live(now: datetime | None = None) -> ColumnElement[bool]:
    """The condition for a post readers may see (models.live_post)."""
    return live_post(now)


def visible_to(viewer: User | None) -> ColumnElement[bool]:
    """Live posts, and every post of `viewer` (an author sees their own drafts)."""
    return live() if viewer is None else (live() | (Post.user_id == viewer.id))


# ---------------------------------------------------------------- posts


# Built once: every post page and API read runs it (services.validity says why).
_POST_WITH_AUTHOR = (
    select(Post).options(joinedload(Post.author)).where(Post.id == bindparam("post_id"))
)
# For a page or an API read, which shows the tags only when it renders the post afresh
# (web.fragments): they are read then, in the same read, rather than on every request.
_POST_TO_SHOW = _POST_WITH_AUTHOR.options(lazyload(Post.tags))


def get_post(
    db: Session,
    *,
    post_id: int,
    user: User | None = None,
    check_author: bool = False,
    tags_when_used: bool = False,
) -> Post:
    """The post with its author loaded, as `user` may see it; its tags too, unless
    `tags_when_used` (for a read-only request, which may not need them: they are then
    loaded if they are touched).

    NotFoundError if it is missing or not yet public and `user` is not its author (a draft's
    existence is not disclosed); ForbiddenError if `user` must be its author and is not.
    """
    post = None
    if 1 <= post_id <= MAX_ID:
        query = _POST_TO_SHOW if tags_when_used else _POST_WITH_AUTHOR
        post = db.scalar(query, {"post_id": post_id})
    is_author = post is not None and user is not None and post.user_id == user.id
    if post is None or not (is_author or post.is_live()):
        raise NotFoundError(POST_NOT_FOUND)
    if check_author and not is_author:
        raise ForbiddenError(NOT_THE_AUTHOR)
    return post


@dataclass(frozen=True)
class SearchResults:
    """One page of ranked search results, each post with its highlighted title and snippet."""

    hits: list[tuple[Post, search.SearchHit]]
    number: int
    size: int
    has_next: bool
    # Only the newest search.CANDIDATES matches were ranked.
    narrowed: bool = False

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def last_known_page(self) -> int:
        return self.number + 1 if self.has_next else self.number

    @property
    def posts(self) -> list[Post]:
        return [post for post, _ in self.hits]


def search_posts(db: Session, *, query: str, page: int, per_page: int) -> SearchResults:
    """Live posts matching `query`, best first, with their authors and tags (three
    statements). Matches that are not live are dropped from the page: drafts and posts
    still to come are never shown, though a page may then hold fewer than `per_page`."""
    found = search.find(db, query=query, limit=per_page + 1, offset=(page - 1) * per_page)
    page_hits = found.hits[:per_page]
    ids = [hit.post_id for hit in page_hits]
    posts = (
        {
            post.id: post
            for post in db.scalars(
                select(Post).options(joinedload(Post.author)).where(Post.id.in_(ids), live())
            )
        }
        if ids
        else {}
    )
    hits = [(posts[hit.post_id], hit) for hit in page_hits if hit.post_id in posts]
    return SearchResults(hits, page, per_page, len(found.hits) > per_page, found.narrowed)


def rendered_fields(content: str) -> dict[str, object]:
    """What a post's page and listings show, derived from one parse of its Markdown."""
    rendered = markdown.render(content)
    return {
        "content_html": rendered.html,
        "excerpt": rendered.excerpt,
        "reading_minutes": rendered.reading_minutes,
        "render_version": markdown.RENDERER_VERSION,
    }


class NoPublicationTimeError(ConflictError):
    """Scheduled, but neither the request nor the post gives a time to go live."""


def _schedule(
    status: str, published_at: datetime | None, current: Post | None
) -> tuple[str, datetime | None]:
    """The (status, published_at) to store for what the author asked.

    A draft has no publication time. A post given a time is scheduled if that time is still
    to come and published if it has passed, whichever of the two was asked; a published post
    keeps the moment it first went live.
    """
    if status == "draft":
        return "draft", None
    when = published_at
    if when is None and current is not None and (status == "scheduled" or current.is_live()):
        when = current.published_at
    if when is None:
        if status == "scheduled":
            raise NoPublicationTimeError("A scheduled post needs a time to go live (published_at)")
        when = utcnow()
    return ("scheduled" if when > utcnow() else "published"), when


def new_account_limit_message(limit: NewAccountLimit, retry_after: int) -> str:
    period = duration(int(limit.period.total_seconds()))
    return (
        f"A new account may write {limit.posts} posts in its first {period}. "
        f"Try again in {duration(retry_after)}."
    )


def count_new_account_posts(
    db: Session, *, author: User, limit: NewAccountLimit | None, count: int = 1
) -> None:
    """Count `count` new posts of `author` against `limit` while the account is new (admins
    are exempt), in the open transaction; ThrottledError, waiting until the account is no
    longer new, when they do not fit. The account's row is locked first, so that two posts
    written at once on PostgreSQL cannot both take the last one left."""
    if limit is None or not limit.period or author.is_admin:
        return
    now = utcnow()
    grown_up = author.created_at + limit.period
    if grown_up <= now:
        return
    db.execute(select(User.id).where(User.id == author.id).with_for_update())
    wait = math.ceil((grown_up - now).total_seconds())
    throttling.count_new_posts(db, user_id=author.id, allowance=limit.posts, count=count, wait=wait)


def create_post(
    db: Session,
    *,
    data: PostCreate | PostReplace,
    author: User,
    limit: NewAccountLimit | None = None,
) -> Post:
    """Write a post of `author`'s; ThrottledError past a new account's `limit`."""
    # Rendered before the first query: a write request holds the write lock from then on.
    fields = rendered_fields(data.content)
    try:
        count_new_account_posts(db, author=author, limit=limit)
    except ThrottledError:
        db.rollback()
        raise
    status, published_at = _schedule(data.status or "published", data.published_at, None)
    post_tags = tags.find_or_create(db, data.tags or [])
    post = Post(
        title=data.title,
        content=data.content,
        author=author,
        status=status,
        published_at=published_at,
        slug=post_slug(data.slug, data.title),
        tags=post_tags,
        **fields,
    )
    db.add(post)
    db.flush()
    revisions.record_first(db, post=post)
    db.commit()
    return post


def update_post(
    db: Session,
    *,
    post: Post,
    data: PostUpdate | PostReplace,
    expected_version: int | None = None,
) -> Post:
    """Apply the fields sent; refuse if the client edited another version than is stored.

    `expected_version` (else the body's `version`) is the version the client edited; None
    means the client named none. Any number is compared, 0 included: only the stored one
    is accepted. Publishing, unpublishing and rescheduling are edits like any other: the
    same version check applies.
    """
    sent = {name for name in data.model_fields_set if getattr(data, name) is not None}
    changes = data.model_dump(include=sent & {"title", "content", "slug"})
    expected = data.version if expected_version is None else expected_version
    if expected is not None and expected != post.version:
        raise EditConflictError
    before = revisions.PostState.of(post)
    change = None
    if "content" in changes:
        # Rendering a long post takes a while: end the transaction that read the post first
        # (on SQLite a write request's transaction holds the database's write lock). The
        # UPDATE still names the version read, so a save in between is a conflict.
        db.commit()
        changes |= rendered_fields(changes["content"])
        change = revisions.Change.between(before.content, changes["content"])
    if "slug" in changes:
        changes["slug"] = post_slug(changes["slug"], post.title)
    if sent & {"status", "published_at"}:
        status = data.status or post.status
        changes["status"], changes["published_at"] = _schedule(status, data.published_at, post)
    if "tags" in sent:
        post.tags = tags.find_or_create(db, data.tags or [])
    # Named even when only the tags changed, so that every save is a new version.
    changes["updated_at"] = utcnow()
    _set_fields(post, changes)
    try:
        db.flush()  # bumps the version, refused if another save came first
        revisions.record(db, post=post, before=before, change=change)
        db.commit()
    except StaleDataError as exc:  # another request saved between our read and our write
        db.rollback()
        raise EditConflictError from exc
    return post


def _set_fields(post: Post, fields: dict[str, object]) -> None:
    for field, value in fields.items():
        setattr(post, field, value)


def rerender_stale_posts(db: Session, *, batch_size: int = 500) -> int:
    """Render posts stored by an older renderer (or none); returns how many were updated.

    Versions only grow, so `<` finds them through the index; a post from a newer renderer
    (a rolled-back deploy) is left as it is rather than rendered by an older one. Each batch
    is read and rendered outside any write transaction (rendering is the slow part), then
    written in one short one, where the post's content is still what was rendered.
    """
    done = 0
    stale = Post.render_version < markdown.RENDERER_VERSION
    while True:
        reading(db)
        rows = db.execute(select(Post.id, Post.content).where(stale).limit(batch_size)).all()
        db.commit()
        if not rows:
            return done
        rendered = [(post_id, content, rendered_fields(content)) for post_id, content in rows]
        for post_id, content, fields in rendered:
            # updated_at is named so that re-rendering does not count as an edit.
            db.execute(
                update(Post)
                .where(Post.id == post_id, Post.content == content, stale)
                .values(**fields, updated_at=Post.updated_at)
            )
        db.commit()
        done += len(rows)


def delete_post(db: Session, *, post: Post) -> None:
    db.delete(post)
    db.commit()


def restore_revision(
    db: Session, *, post: Post, number: int, expected_version: int | None = None
) -> Post:
    """Save the title, text and tags of revision `number` as a new version (history is
    never rewritten). The publication state stays as it is now: bringing back old words
    does not unpublish a live post."""
    old = revisions.get_revision(db, post=post, number=number)
    # Stored values passed the rules when they were saved; they are not judged again.
    data = PostUpdate.model_construct(title=old.title, content=old.content, tags=old.tags)
    return update_post(db, post=post, data=data, expected_version=expected_version)
