"""Writing through forms: new post, edit with preview and conflict handling, delete."""

from fastapi import APIRouter, Depends, Request, Response, status

from database import SessionDep
from schemas import MAX_ID, PostReplace
from services import posts
from services.errors import EditConflictError
from web.deps import RequiredUser, get_current_user
from web.forms import Errors, FormText, validate
from web.middleware import BodyLimitedRoute
from web.security import CsrfProtected
from web.templating import redirect, render
from web.urls import url_for

router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(get_current_user)],
    route_class=BodyLimitedRoute,
)


def _post_form(
    request: Request,
    values: dict[str, str],
    errors: Errors,
    post_id: int | None,
    status_code: int,
    preview: PostReplace | None = None,
) -> Response:
    context = {"values": values, "errors": errors, "post_id": post_id, "preview": None}
    if preview is not None:
        # The same renderer and fields the post page uses, so the preview is exactly it.
        context["preview"] = {"title": preview.title, **posts.rendered_fields(preview.content)}
    return render(request, "posts/form.html", context, status_code)


PREVIEW = "preview"


@router.get("/posts/new", name="post_new")
def new_post_form(request: Request, user: RequiredUser) -> Response:
    """Form for a new post."""
    return _post_form(request, {}, {}, None, 200)


@router.post("/posts/new", name="post_create", dependencies=[CsrfProtected])
def create_post(
    request: Request,
    db: SessionDep,
    user: RequiredUser,
    title: FormText = "",
    content: FormText = "",
    action: FormText = "",
) -> Response:
    """Publish a post, or show a preview of it."""
    values = {"title": title, "content": content}
    result = validate(PostReplace, values)
    if isinstance(result, dict):
        return _post_form(request, values, result, None, 422)
    if action == PREVIEW:
        return _post_form(request, values, {}, None, 200, preview=result)
    post = posts.create_post(db, data=result, author=user)
    url = url_for(request, "post_detail", post_id=post.id)
    return redirect(request, url, "Your post has been published.")


@router.get("/posts/{post_id:int}/edit", name="post_edit")
def edit_post_form(request: Request, post_id: int, db: SessionDep, user: RequiredUser) -> Response:
    """Form to edit a post (its author only)."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    values = {"title": post.title, "content": post.content, "version": str(post.version)}
    return _post_form(request, values, {}, post.id, 200)


CONFLICT_MESSAGE = (
    "This post was changed elsewhere after you started editing. Your text is kept below and "
    "the saved version is shown underneath: merge what you need, then save again."
)


@router.post("/posts/{post_id:int}/edit", name="post_update", dependencies=[CsrfProtected])
def update_post(
    request: Request,
    post_id: int,
    db: SessionDep,
    user: RequiredUser,
    title: FormText = "",
    content: FormText = "",
    version: FormText = "",
    action: FormText = "",
) -> Response:
    """Save changes to a post, or show a preview of them."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    values = {"title": title, "content": content, "version": version}
    result = validate(PostReplace, {"title": title, "content": content})
    if isinstance(result, dict):
        return _post_form(request, values, result, post.id, 422)
    if action == PREVIEW:
        return _post_form(request, values, {}, post.id, 200, preview=result)
    # The form always carries the version it was made from; anything else (missing, 0,
    # not a number) is no version the server sent, so saving it could overwrite a newer
    # one: it is answered like any stale version, with the conflict form.
    expected = _version_number(version)
    try:
        if expected is None:
            raise EditConflictError
        posts.update_post(db, post=post, data=result, expected_version=expected)
    except EditConflictError:
        return _conflict_form(request, db, values, post_id)
    url = url_for(request, "post_detail", post_id=post.id)
    return redirect(request, url, "Your post has been updated.")


def _version_number(value: str) -> int | None:
    """The version a form field holds, as the edit form writes it (ASCII digits, no sign or
    leading zero, within the column's range), else None."""
    if not (value.isascii() and value.isdigit()) or value.startswith("0"):
        return None
    # Length first: int() of thousands of digits is slow, and past 4,300 it raises.
    if len(value) > len(str(MAX_ID)) or int(value) > MAX_ID:
        return None
    return int(value)


def _conflict_form(
    request: Request, db: SessionDep, values: dict[str, str], post_id: int
) -> Response:
    """The form again with the user's text, the saved version beside it, and that version's
    number, so saving again is a deliberate choice."""
    db.expire_all()
    current = posts.get_post(db, post_id=post_id)
    values = {**values, "version": str(current.version)}
    context = {
        "values": values,
        "errors": {"form": CONFLICT_MESSAGE},
        "post_id": post_id,
        "preview": None,
        "current": current,
    }
    return render(request, "posts/form.html", context, status.HTTP_409_CONFLICT)


@router.get("/posts/{post_id:int}/delete", name="post_delete")
def delete_post_form(
    request: Request, post_id: int, db: SessionDep, user: RequiredUser
) -> Response:
    """Ask for confirmation before deleting a post."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    return render(request, "posts/delete.html", {"post": post})


@router.post("/posts/{post_id:int}/delete", name="post_delete_submit", dependencies=[CsrfProtected])
def delete_post(request: Request, post_id: int, db: SessionDep, user: RequiredUser) -> Response:
    """Delete a post."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    posts.delete_post(db, post=post)
    return redirect(request, url_for(request, "home"), "Your post has been deleted.")
