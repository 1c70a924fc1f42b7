"""The JSON API for posts, tags and review links."""

import hashlib
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from database import SessionDep
from models import Post, User
from routers.api.common import (
    AUTH,
    BODY,
    FORBIDDEN,
    INVALID,
    LIST_HEADERS,
    NEW_ACCOUNT_THROTTLED,
    NOT_FOUND,
    TOO_MANY_NEW_POSTS,
    PostId,
    error_response,
    link_neighbours,
    paginate,
    post_response,
    throttled,
)
from schemas import PostCreate, PostPublic, PostReplace, PostUpdate, ReviewLinkPublic, TagPublic
from services import listings, posts, reviews, search, tags
from web.compression import identity_tag
from web.deps import ApiUser, MaybeApiUser, PageRequest, Paging, SettingsDep, short_read
from web.fragments import post_json_list
from web.middleware import BodyLimitedRoute
from web.pagecache import stamp_with_post
from web.privacy import Public
from web.urls import url_for

router = APIRouter(route_class=BodyLimitedRoute)


# ---------------------------------------------------------------- posts


@router.get(
    "/posts",
    dependencies=[Public],
    response_model=list[PostPublic],
    responses=NOT_FOUND | INVALID | {200: {"headers": LIST_HEADERS}},
)
async def list_posts(
    request: Request,
    response: Response,
    db: SessionDep,
    paging: Paging,
    q: Annotated[
        str | None,
        Query(
            description=(
                f"Full-text search: the newest {search.CANDIDATES:,} matches, ranked by "
                "relevance, not by date"
            )
        ),
    ] = None,
    tag: Annotated[
        str | None, Query(max_length=80, description="Only posts carrying this tag (its slug)")
    ] = None,
) -> Any:
    """List published posts, newest first; search them with `q`, or filter by `tag`."""
    page, size = paging.number, paging.size
    if q is not None:
        # Ranking is the one read here whose cost grows with the posts: off the event loop.
        found = await run_in_threadpool(posts.search_posts, db, query=q, page=page, per_page=size)
        return paginate(request, response, found)
    return await _newest_posts(request=request, db=db, tag=tag, paging=paging)


@short_read
def _newest_posts(request: Request, db: Session, tag: str | None, paging: PageRequest) -> Response:
    tag_id = tags.get_tag(db, slug=tag).id if tag is not None else None
    listing = listings.list_entries(db, page=paging.number, per_page=paging.size, tag_id=tag_id)
    # Assembled from each post's JSON, cached per version of the post (web.fragments).
    body = Response(post_json_list(request, db, listing), media_type="application/json")
    link_neighbours(request, body, listing)
    return body


@router.get("/tags", response_model=list[TagPublic], dependencies=[Public])
def list_tags(db: SessionDep) -> Any:
    """Every tag with at least one published post, and how many it has."""
    return [
        TagPublic(name=entry.tag.name, slug=entry.tag.slug, post_count=entry.post_count)
        for entry in tags.list_tags(db)
    ]


@router.post(
    "/posts",
    status_code=status.HTTP_201_CREATED,
    response_model=PostPublic,
    responses=AUTH | BODY | NEW_ACCOUNT_THROTTLED,
)
def create_post(
    request: Request, data: PostCreate, db: SessionDep, settings: SettingsDep, user: ApiUser
) -> Any:
    """Write a post as the authenticated user: published (the default), a draft, or
    scheduled for a future `published_at`. A new account may write a limited number of
    posts in its first day (429, with Retry-After saying when it may write more)."""
    with throttled(TOO_MANY_NEW_POSTS):
        post = posts.create_post(db, data=data, author=user, limit=settings.new_account_limit)
    return post_response(request, db, post, status_code=status.HTTP_201_CREATED)


@router.get(
    "/posts/{post_id}",
    response_model=PostPublic,
    responses=NOT_FOUND | INVALID,
    dependencies=[Public],
)
@short_read
def read_post(request: Request, post_id: PostId, db: SessionDep, viewer: MaybeApiUser) -> Any:
    """Read one post (a draft or a scheduled one only with its author's token). Its ETag
    may be sent back in If-Match when editing it."""
    post = posts.get_post(db, post_id=post_id, user=viewer, tags_when_used=True)
    stamp_with_post(request, post)
    headers = {
        "ETag": post_etag(post),
        "Last-Modified": format_datetime(post.updated_at, usegmt=True),
    }
    return post_response(request, db, post, headers=headers)


IfMatch = Annotated[
    str | None, Header(description="The post's ETag; if it changed since, the edit gets 412")
]
AUTHOR_ONLY = AUTH | FORBIDDEN | NOT_FOUND | INVALID
EDIT_RESPONSES = (
    AUTHOR_ONLY
    | BODY
    | {
        409: error_response("The post changed since the version being edited"),
        412: error_response("The post changed since the ETag sent in If-Match"),
    }
)


def _edit(
    request: Request,
    db: SessionDep,
    user: User,
    post_id: int,
    data: PostReplace | PostUpdate,
    if_match: str | None,
) -> Response:
    """The shared body of PUT and PATCH: author check, precondition, then the update."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    check_precondition(post, if_match)
    post = posts.update_post(db, post=post, data=data)
    return post_response(request, db, post, headers={"ETag": post_etag(post)})


def check_precondition(post: Post, if_match: str | None) -> None:
    """412 when If-Match names another version of the post than the stored one."""
    if if_match is not None and not _etag_matches(post_etag(post), if_match):
        raise HTTPException(
            status.HTTP_412_PRECONDITION_FAILED, "The post has changed since you fetched it"
        )


def post_etag(post: Post) -> str:
    """A strong validator for a post's API representation: its version and the status
    shown (which changes without a write when a scheduled post's moment comes), plus the
    author fields shown with it (they change without touching the post)."""
    author = hashlib.blake2b(
        f"{post.author.username}\0{post.author.image_file}".encode(), digest_size=6
    ).hexdigest()
    return f'"p{post.id}v{post.version}{post.status_now[0]}a{author}"'


def _etag_matches(current: str, if_match: str) -> bool:
    # If-Match uses the strong comparison: a weak tag never matches.
    candidates = {identity_tag(tag.strip()) for tag in if_match.split(",")}
    return "*" in candidates or current in candidates


@router.put("/posts/{post_id}", response_model=PostPublic, responses=EDIT_RESPONSES)
def replace_post(
    post_id: PostId,
    data: PostReplace,
    request: Request,
    db: SessionDep,
    user: ApiUser,
    if_match: IfMatch = None,
) -> Any:
    """Replace a post's title and content, and the status, schedule, tags or slug sent
    (its author only)."""
    return _edit(request, db, user, post_id, data, if_match)


@router.patch("/posts/{post_id}", response_model=PostPublic, responses=EDIT_RESPONSES)
def update_post(
    request: Request,
    post_id: PostId,
    data: PostUpdate,
    db: SessionDep,
    user: ApiUser,
    if_match: IfMatch = None,
) -> Any:
    """Change some of a post's fields (its author only)."""
    return _edit(request, db, user, post_id, data, if_match)


@router.post(
    "/posts/{post_id}/review-links",
    status_code=status.HTTP_201_CREATED,
    response_model=ReviewLinkPublic,
    responses=AUTHOR_ONLY | {409: error_response("The post is already public")},
)
def create_review_link(request: Request, post_id: PostId, db: SessionDep, user: ApiUser) -> Any:
    """A link that shows this unpublished post to whoever holds it, for 7 days (its author
    only). The URL is shown once: only a hash of its token is kept."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    link, token = reviews.create_review_link(db, post=post)
    url = str(url_for(request, "review", token=token))
    return ReviewLinkPublic(id=link.id, url=url, expires_at=link.expires_at)


@router.delete(
    "/posts/{post_id}/review-links/{link_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=AUTHOR_ONLY,
)
def revoke_review_link(post_id: PostId, link_id: PostId, db: SessionDep, user: ApiUser) -> None:
    """Revoke a review link (its post's author only)."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    reviews.revoke_review_link(db, post=post, link_id=link_id)


@router.delete("/posts/{post_id}", status_code=status.HTTP_204_NO_CONTENT, responses=AUTHOR_ONLY)
def delete_post(post_id: PostId, db: SessionDep, user: ApiUser) -> None:
    """Delete a post (its author only)."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    posts.delete_post(db, post=post)
