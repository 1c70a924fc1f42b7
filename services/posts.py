"""Posts: the queries and writes the API and the pages share."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select, tuple_, update
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.exc import StaleDataError

from models import Post, User
from schemas import MAX_ID, PostCreate, PostReplace, PostUpdate
from services import markdown, search
from services.errors import EditConflictError, ForbiddenError, NotFoundError

POST_NOT_FOUND = "Post not found"
NOT_THE_AUTHOR = "You are not the author of this post"


@dataclass(frozen=True)
class PostPage:
    """One page of a newest-first post listing.

    `last_known_page` is the highest page number known to exist. Only a bounded number of
    rows past this page is counted, so a listing costs the same at any table size.
    """

    posts: list[Post]
    number: int
    size: int
    last_known_page: int

    @property
    def has_next(self) -> bool:
        return self.last_known_page > self.number

    @property
    def has_previous(self) -> bool:
        return self.number > 1


# ---------------------------------------------------------------- posts


SelectT = TypeVar("SelectT", bound=Select[Any])


def _newest_first(query: SelectT) -> SelectT:
    """Newest first, ties broken by id: the order every listing, feed and sitemap uses."""
    return query.order_by(Post.date_posted.desc(), Post.id.desc())


def get_post(
    db: Session, *, post_id: int, user: User | None = None, check_author: bool = False
) -> Post:
    """The post with its author loaded; NotFoundError if missing, ForbiddenError if `user`
    must be its author and is not."""
    post = None
    if 1 <= post_id <= MAX_ID:
        post = db.scalar(select(Post).options(joinedload(Post.author)).where(Post.id == post_id))
    if post is None:
        raise NotFoundError(POST_NOT_FOUND)
    if check_author and (user is None or post.user_id != user.id):
        raise ForbiddenError(NOT_THE_AUTHOR)
    return post


def list_posts(
    db: Session,
    *,
    page: int,
    per_page: int,
    author_id: int | None = None,
    lookahead_pages: int = 1,
) -> PostPage:
    """A page of posts, newest first, authors loaded in the same statement."""
    offset = (page - 1) * per_page
    listing = select(Post)
    if author_id is not None:
        listing = listing.where(Post.user_id == author_id)
    page_rows = _from_position(listing, offset).options(joinedload(Post.author))
    posts = db.scalars(_newest_first(page_rows).limit(per_page)).all()
    ahead = _count_rows_after(db, listing, start=offset + per_page, cap=lookahead_pages * per_page)
    pages_ahead = -(-ahead // per_page)
    return PostPage(list(posts), page, per_page, page + pages_ahead)


def newest_post_stamps(db: Session, *, limit: int) -> list[tuple[int, int, datetime]]:
    """(post id, author id, updated_at) of the newest `limit` posts, in one statement."""
    query = _newest_first(select(Post.id, Post.user_id, Post.updated_at)).limit(limit)
    return [(row.id, row.user_id, row.updated_at) for row in db.execute(query)]


def _from_position(listing: Select[tuple[Post]], offset: int) -> Select[tuple[Post]]:
    """The listing from its `offset`-th row on, reached by sort key instead of by OFFSET.

    OFFSET would read every skipped row, bodies and all, and join each to its author; the
    key of the row at `offset` is counted off in the (date_posted, id) index alone, so page
    5,000 of a million posts takes milliseconds rather than most of a second.
    """
    if offset == 0:
        return listing
    key_at_offset = (
        _newest_first(listing.with_only_columns(Post.date_posted, Post.id))
        .limit(1)
        .offset(offset)
        .correlate(None)
        .scalar_subquery()
    )
    return listing.where(tuple_(Post.date_posted, Post.id) <= key_at_offset)


def _count_rows_after(db: Session, listing: Select[tuple[Post]], *, start: int, cap: int) -> int:
    """How many rows follow `start` in the listing, counting no further than `cap`."""
    window = _newest_first(listing.with_only_columns(Post.id)).limit(cap).offset(start).subquery()
    return db.scalar(select(func.count()).select_from(window)) or 0


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
    """Posts matching `query`, best first, with their authors (two statements)."""
    found = search.find(db, query=query, limit=per_page + 1, offset=(page - 1) * per_page)
    page_hits = found.hits[:per_page]
    ids = [hit.post_id for hit in page_hits]
    posts = (
        {
            post.id: post
            for post in db.scalars(
                select(Post).options(joinedload(Post.author)).where(Post.id.in_(ids))
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


def create_post(db: Session, *, data: PostCreate | PostReplace, author: User) -> Post:
    post = Post(title=data.title, content=data.content, author=author)
    _set_fields(post, rendered_fields(data.content))
    db.add(post)
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
    is accepted.
    """
    changes = data.model_dump(exclude_unset=True, exclude={"version"})
    expected = data.version if expected_version is None else expected_version
    if expected is not None and expected != post.version:
        raise EditConflictError
    if "content" in changes:
        # Rendering a long post takes a while: end the transaction that read the post first
        # (on SQLite a write request's transaction holds the database's write lock). The
        # UPDATE still names the version read, so a save in between is a conflict.
        db.commit()
        changes |= rendered_fields(changes["content"])
    _set_fields(post, changes)
    try:
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
    (a rolled-back deploy) is left as it is rather than rendered by an older one.
    """
    done = 0
    stale = Post.render_version < markdown.RENDERER_VERSION
    while rows := db.execute(select(Post.id, Post.content).where(stale).limit(batch_size)).all():
        for post_id, content in rows:
            # updated_at is named so that re-rendering does not count as an edit.
            db.execute(
                update(Post)
                .where(Post.id == post_id)
                .values(**rendered_fields(content), updated_at=Post.updated_at)
            )
        db.commit()
        done += len(rows)
    return done


def delete_post(db: Session, *, post: Post) -> None:
    db.delete(post)
    db.commit()
