"""Queries and writes shared by the API and the pages."""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from fastapi import HTTPException, status
from sqlalchemy import Select, func, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.exc import StaleDataError

import markdown_render
import search
from auth import hash_password
from models import Post, User
from schemas import MAX_ID, PostCreate, PostReplace, PostUpdate, UserCreate, UserUpdate
from uploads import remove_avatar, remove_orphans, store_avatar

USER_NOT_FOUND = "User not found"
POST_NOT_FOUND = "Post not found"
NOT_THE_AUTHOR = "You are not the author of this post"


class EditConflictError(Exception):
    """The post changed since the version the client edited: saving would lose that change."""


class DuplicateError(Exception):
    """A unique field (username, email) is already taken."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


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


# ---------------------------------------------------------------- users


def get_user(db: Session, *, user_id: int) -> User | None:
    # An id the INTEGER column cannot hold names no one (and would make PostgreSQL raise).
    return db.get(User, user_id) if 1 <= user_id <= MAX_ID else None


def get_user_or_404(db: Session, *, user_id: int) -> User:
    user = get_user(db, user_id=user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, USER_NOT_FOUND)
    return user


def _ensure_unique(
    db: Session, *, username: str | None, email: str | None, exclude: int = 0
) -> None:
    """Raise DuplicateError naming the first taken field (a friendly, early check)."""
    taken = db.execute(
        select(User.username, User.email).where(
            User.id != exclude, or_(User.username == username, User.email == email)
        )
    ).all()
    for row in taken:
        if username is not None and row.username == username:
            raise DuplicateError("username", "That username is already taken")
        if email is not None and row.email == email:
            raise DuplicateError("email", "That email address is already registered")


def _commit_unique(db: Session) -> None:
    """Commit; a unique constraint firing here means a concurrent request won the race."""
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise DuplicateError("username", "That username or email is already taken") from exc


def create_user(db: Session, *, data: UserCreate) -> User:
    _ensure_unique(db, username=data.username, email=data.email)
    user = User(
        username=data.username, email=data.email, password_hash=hash_password(data.password)
    )
    db.add(user)
    _commit_unique(db)
    return user


def update_user(db: Session, *, user: User, data: UserUpdate) -> User:
    changes = data.model_dump(exclude_unset=True)
    _ensure_unique(
        db, username=changes.get("username"), email=changes.get("email"), exclude=user.id
    )
    for field, value in changes.items():
        setattr(user, field, value)
    _commit_unique(db)
    return user


def delete_user(db: Session, *, user: User, avatar_dir: Path) -> None:
    # Posts and sessions go with the user through ON DELETE CASCADE in the database; the
    # picture goes only once the deletion is committed.
    picture = user.image_file
    db.delete(user)
    db.commit()
    remove_avatar(avatar_dir, picture)


def set_profile_picture(db: Session, *, user: User, jpeg: bytes, avatar_dir: Path) -> User:
    """Store the new picture, point the user at it, then remove the old one.

    The old file is removed only after the commit; if the commit fails, the new file is
    removed instead, so no file is ever orphaned and no user points at a missing one.
    """
    new_name = store_avatar(jpeg, avatar_dir)
    # The name stored now, read inside this write transaction (and locked on PostgreSQL):
    # the `user` object may come from an earlier one, and two uploads at once must each
    # remove the picture the other replaced, not the same one twice.
    old_name = db.scalar(select(User.image_file).where(User.id == user.id).with_for_update())
    user.image_file = new_name
    try:
        db.commit()
    except Exception:
        db.rollback()
        remove_avatar(avatar_dir, new_name)
        raise
    remove_avatar(avatar_dir, old_name)
    return user


# ---------------------------------------------------------------- posts


SelectT = TypeVar("SelectT", bound=Select[Any])


def _newest_first(query: SelectT) -> SelectT:
    """Newest first, ties broken by id: the order every listing, feed and sitemap uses."""
    return query.order_by(Post.date_posted.desc(), Post.id.desc())


def get_post_or_404(
    db: Session, *, post_id: int, user: User | None = None, check_author: bool = False
) -> Post:
    """The post with its author loaded; 404 if missing, 403 if `user` must be its author."""
    post = None
    if 1 <= post_id <= MAX_ID:
        post = db.scalar(select(Post).options(joinedload(Post.author)).where(Post.id == post_id))
    if post is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, POST_NOT_FOUND)
    if check_author and (user is None or post.user_id != user.id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, NOT_THE_AUTHOR)
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
    """What a post's page and listings show, derived once from its Markdown source."""
    return {
        "content_html": markdown_render.render_markdown(content),
        "excerpt": markdown_render.excerpt(content),
        "reading_minutes": markdown_render.reading_minutes(content),
        "render_version": markdown_render.RENDERER_VERSION,
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
    """Apply the fields sent; refuse if the client edited an older version than is stored."""
    changes = data.model_dump(exclude_unset=True, exclude={"version"})
    expected = expected_version or data.version
    if expected is not None and expected != post.version:
        raise EditConflictError
    if "content" in changes:
        changes |= rendered_fields(changes["content"])
    _set_fields(post, changes)
    try:
        db.commit()
    except StaleDataError as exc:  # another request saved between our read and our write
        db.rollback()
        raise EditConflictError from exc
    return post


def post_etag(post: Post) -> str:
    """A strong validator for a post's API representation: its version plus the author
    fields shown with it (they change without touching the post)."""
    author = hashlib.blake2b(
        f"{post.author.username}\0{post.author.image_file}".encode(), digest_size=6
    ).hexdigest()
    return f'"p{post.id}v{post.version}a{author}"'


def _set_fields(post: Post, fields: dict[str, object]) -> None:
    for field, value in fields.items():
        setattr(post, field, value)


def rerender_stale_posts(db: Session, *, batch_size: int = 500) -> int:
    """Render posts stored by an older renderer (or none); returns how many were updated.

    Versions only grow, so `<` finds them through the index; a post from a newer renderer
    (a rolled-back deploy) is left as it is rather than rendered by an older one.
    """
    done = 0
    stale = Post.render_version < markdown_render.RENDERER_VERSION
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


def remove_orphaned_avatars(db: Session, *, avatar_dir: Path, grace_seconds: float) -> list[str]:
    """Remove picture files no user points at (left by a crash mid-upload)."""
    referenced = set(db.scalars(select(User.image_file).where(User.image_file.is_not(None))))
    db.commit()
    return remove_orphans(avatar_dir, referenced, grace_seconds)
