"""The JSON API for a post's revision history: list, read one, restore one."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from database import SessionDep
from routers.api.common import (
    AUTH,
    INVALID,
    LIST_HEADERS,
    NOT_FOUND,
    PostId,
    error_response,
    link_neighbours,
    post_response,
)
from routers.api.posts import IfMatch, check_precondition, post_etag
from schemas import MAX_ID, PostPublic, RevisionPublic, RevisionSummary
from services import posts, revisions
from web.deps import ApiUser, Paging
from web.middleware import BodyLimitedRoute

router = APIRouter(route_class=BodyLimitedRoute)

RevisionNumber = Annotated[int, Path(ge=1, le=MAX_ID, description="The revision's number")]
# A post's history is its author's alone: anyone else is told it does not exist.
HISTORY_RESPONSES = AUTH | NOT_FOUND | INVALID


@router.get(
    "/posts/{post_id}/revisions",
    response_model=list[RevisionSummary],
    responses=HISTORY_RESPONSES | {200: {"headers": LIST_HEADERS}},
)
def list_revisions(
    request: Request,
    response: Response,
    post_id: PostId,
    db: SessionDep,
    user: ApiUser,
    paging: Paging,
) -> Any:
    """The post's revisions, newest first, without their text (its author only)."""
    post = revisions.own_post(db, post_id=post_id, user=user)
    page = revisions.list_revisions(db, post=post, page=paging.number, per_page=paging.size)
    link_neighbours(request, response, page)
    return page.revisions


@router.get(
    "/posts/{post_id}/revisions/{number}",
    response_model=RevisionPublic,
    responses=HISTORY_RESPONSES,
)
def read_revision(post_id: PostId, number: RevisionNumber, db: SessionDep, user: ApiUser) -> Any:
    """One revision with its full title, text, tags and status (the post's author only)."""
    post = revisions.own_post(db, post_id=post_id, user=user)
    found = revisions.get_revision(db, post=post, number=number)
    summary = RevisionSummary.model_validate(found.revision)
    return RevisionPublic(**summary.model_dump(), content=found.content, tags=found.tags)


@router.post(
    "/posts/{post_id}/revisions/{number}/restore",
    response_model=PostPublic,
    responses=HISTORY_RESPONSES
    | {
        409: error_response("The post changed while the revision was being restored"),
        412: error_response("The post changed since the ETag sent in If-Match"),
    },
)
def restore_revision(
    request: Request,
    post_id: PostId,
    number: RevisionNumber,
    db: SessionDep,
    user: ApiUser,
    if_match: IfMatch = None,
) -> Any:
    """Save an old revision's title, text and tags as the post's new version (its author
    only); the publication state is kept. History is never rewritten."""
    post = revisions.own_post(db, post_id=post_id, user=user)
    check_precondition(post, if_match)
    post = posts.restore_revision(db, post=post, number=number, expected_version=post.version)
    return post_response(request, db, post, headers={"ETag": post_etag(post)})
