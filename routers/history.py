"""A post's revision history for its author: the list, comparisons, and restoring."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from database import SessionDep
from schemas import MAX_ID
from services import posts, revisions
from services.errors import EditConflictError
from web.deps import PageNumber, RequiredUser, get_current_user
from web.forms import FormText, version_number
from web.middleware import BodyLimitedRoute
from web.security import CsrfProtected
from web.templating import redirect, render
from web.urls import url_for

# Every page here is its author's alone, so looked up with the session (never cached).
router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(get_current_user)],
    route_class=BodyLimitedRoute,
)
HISTORY_PAGE_SIZE = 25
RevisionQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]


@router.get("/posts/{post_id:int}/history", name="post_history")
def history(
    request: Request, post_id: int, db: SessionDep, user: RequiredUser, page: PageNumber = 1
) -> Response:
    """The post's revisions, newest first, to compare or restore (its author only)."""
    post = revisions.own_post(db, post_id=post_id, user=user)
    listing = revisions.list_revisions(db, post=post, page=page, per_page=HISTORY_PAGE_SIZE)
    if page > 1 and not listing.revisions:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    page_url = url_for(request, "post_history", post_id=post.id)
    context = {"post": post, "listing": listing, "page_url": page_url}
    return render(request, "posts/history.html", context)


@router.get("/posts/{post_id:int}/history/diff", name="post_history_diff")
def history_diff(
    request: Request,
    post_id: int,
    db: SessionDep,
    user: RequiredUser,
    old: Annotated[RevisionQuery, Query(alias="from")] = None,
    new: Annotated[RevisionQuery, Query(alias="to")] = None,
) -> Response:
    """What changed between two revisions, word by word (the latest and the one before it
    unless chosen)."""
    post = revisions.own_post(db, post_id=post_id, user=user)
    new = new or post.version
    old = old or max(new - 1, 1)
    comparison = revisions.compare(db, post=post, old=old, new=new)
    return render(request, "posts/diff.html", {"post": post, "comparison": comparison})


@router.get("/posts/{post_id:int}/history/{number:int}/restore", name="post_restore_confirm")
def restore_form(
    request: Request, post_id: int, number: int, db: SessionDep, user: RequiredUser
) -> Response:
    """Ask for confirmation before restoring a revision, showing what it would change."""
    post = revisions.own_post(db, post_id=post_id, user=user)
    comparison = revisions.compare(db, post=post, old=post.version, new=number)
    context = {"post": post, "comparison": comparison, "restoring": number}
    return render(request, "posts/diff.html", context)


@router.post(
    "/posts/{post_id:int}/history/{number:int}/restore",
    name="post_restore",
    dependencies=[CsrfProtected],
)
def restore(
    request: Request,
    post_id: int,
    number: int,
    db: SessionDep,
    user: RequiredUser,
    version: FormText = "",
) -> Response:
    """Save an old revision's title, text and tags as a new revision."""
    post = revisions.own_post(db, post_id=post_id, user=user)
    expected = version_number(version)
    confirm_url = url_for(request, "post_restore_confirm", post_id=post.id, number=number)
    try:
        if expected is None:
            raise EditConflictError
        posts.restore_revision(db, post=post, number=number, expected_version=expected)
    except EditConflictError:
        message = "The post changed since this page was shown: check the changes again."
        return redirect(request, confirm_url, message, "error")
    message = f"Revision {number} has been restored as revision {post.version}."
    return redirect(request, url_for(request, "post_history", post_id=post.id), message)
