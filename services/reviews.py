"""Review links: an unguessable address that shows an unpublished post to whoever holds it,
until it expires or its author revokes it. Only a hash of the token is stored."""

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, joinedload

from config import utcnow
from models import Post, ReviewLink
from services.errors import ConflictError, NotFoundError
from services.tokens import digest, new_token


class AlreadyPublicError(ConflictError):
    """A review link was asked for a post everyone can already read."""


REVIEW_LINK_TTL = timedelta(days=7)
REVIEW_LINK_NOT_FOUND = "This review link has expired or was revoked"


def create_review_link(
    db: Session, *, post: Post, ttl: timedelta = REVIEW_LINK_TTL
) -> tuple[ReviewLink, str]:
    """A new link showing `post` to whoever holds the returned token, until it expires."""
    if post.is_live():
        raise AlreadyPublicError("The post is already public: share its address instead")
    token = new_token()
    link = ReviewLink(post=post, token_hash=digest(token), expires_at=utcnow() + ttl)
    db.add(link)
    db.commit()
    return link, token


def live_review_links(db: Session, *, post: Post) -> list[ReviewLink]:
    return list(
        db.scalars(
            select(ReviewLink)
            .where(ReviewLink.post_id == post.id, ReviewLink.expires_at > utcnow())
            .order_by(ReviewLink.created_at.desc(), ReviewLink.id.desc())
        )
    )


def revoke_review_link(db: Session, *, post: Post, link_id: int) -> None:
    deleted = db.execute(
        delete(ReviewLink).where(ReviewLink.id == link_id, ReviewLink.post_id == post.id)
    )
    db.commit()
    if not deleted.rowcount:
        raise NotFoundError(REVIEW_LINK_NOT_FOUND)


def post_for_review(db: Session, *, token: str) -> Post:
    """The post a live review link shows, with its author; NotFoundError otherwise."""
    post = db.scalar(
        select(Post)
        .join(ReviewLink, ReviewLink.post_id == Post.id)
        .options(joinedload(Post.author))
        .where(ReviewLink.token_hash == digest(token), ReviewLink.expires_at > utcnow())
    )
    if post is None:
        raise NotFoundError(REVIEW_LINK_NOT_FOUND)
    return post
