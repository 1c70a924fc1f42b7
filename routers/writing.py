"""Writing through forms: new post, edit with preview, merging and conflict handling,
delete."""

from collections.abc import Hashable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from config import utcnow
from database import SessionDep
from models import Post, User
from schemas import PostReplace
from services import images, media, merging, posts, reviews, revisions
from services.errors import (
    ConflictError,
    EditConflictError,
    InvalidFieldError,
    NotFoundError,
    ThrottledError,
)
from web.deps import RequiredUser, SettingsDep, get_current_user
from web.forms import (
    Errors,
    FormText,
    local_datetime_input,
    parse_local_datetime,
    split_tags,
    validate,
    version_number,
)
from web.media import store_upload
from web.middleware import UPLOAD_BODY_LIMIT, BodyLimitedRoute, body_limit
from web.security import CsrfProtected
from web.templating import redirect, render
from web.urls import post_url, url_for

router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(get_current_user)],
    route_class=BodyLimitedRoute,
)


@dataclass(frozen=True)
class PostForm:
    """What the post form sends, as typed: shown again as it was whenever it is refused."""

    title: str = ""
    content: str = ""
    tags: str = ""
    slug: str = ""
    status: str = "published"
    publish_at: str = ""
    version: str = ""
    action: str = ""

    def values(self) -> dict[str, str]:
        return {name: value for name, value in asdict(self).items() if name != "action"}


def read_post_form(
    title: FormText = "",
    content: FormText = "",
    tags: FormText = "",
    slug: FormText = "",
    status: FormText = "published",
    publish_at: FormText = "",
    version: FormText = "",
    action: FormText = "",
) -> PostForm:
    return PostForm(title, content, tags, slug, status, publish_at, version, action)


PostFormData = Annotated[PostForm, Depends(read_post_form)]


async def read_image_field(request: Request) -> UploadFile | None:
    """The form's image, if one was chosen (browsers send an empty file part otherwise)."""
    image = (await request.form()).get("image")
    return image if isinstance(image, UploadFile) and image.filename else None


ImageField = Annotated[UploadFile | None, Depends(read_image_field)]
# Domain and schema fields shown under another input of the form.
FORM_FIELDS = {"published_at": "publish_at"}


def _validated(form: PostForm, user: User) -> PostReplace | Errors:
    """The form as the schema the API uses, or the errors to show beside its fields."""
    errors: Errors = {}
    data: dict[str, object] = {
        "title": form.title,
        "content": form.content,
        "tags": split_tags(form.tags),
        "status": form.status,
    }
    if form.slug.strip():
        data["slug"] = form.slug.strip()
    if form.status == "scheduled":
        try:
            data["published_at"] = parse_local_datetime(form.publish_at, user.timezone)
        except ValueError as exc:
            errors["publish_at"] = str(exc)
        if not form.publish_at.strip():
            errors["publish_at"] = "Choose when the post goes live"
    result = validate(PostReplace, data)
    if isinstance(result, dict):
        errors |= {FORM_FIELDS.get(field, field): message for field, message in result.items()}
    return errors or result  # type: ignore[return-value]


def _post_form(
    request: Request,
    form: PostForm,
    errors: Errors,
    post: Post | None,
    status_code: int,
    preview: PostReplace | None = None,
    db: Session | None = None,
) -> Response:
    context: dict[str, object] = {
        "values": form.values(),
        "errors": errors,
        "post_id": post.id if post else None,
        "post": post,
        "preview": None,
        "review_links": reviews.live_review_links(db, post=post) if db and post else [],
    }
    if preview is not None:
        # The same renderer and fields the post page uses, so the preview is exactly it.
        context["preview"] = {"title": preview.title, **posts.rendered_fields(preview.content)}
    return render(request, "posts/form.html", context, status_code)


def _saved_form(post: Post, user: User) -> PostForm:
    """The form filled from the stored post, its schedule in the author's time zone."""
    return PostForm(
        title=post.title,
        content=post.content,
        tags=", ".join(tag.name for tag in post.tags),
        slug=post.slug,
        status=post.status_now,
        publish_at=local_datetime_input(post.published_at, user.timezone),
        version=str(post.version),
    )


PREVIEW = "preview"
INSERT_IMAGE = "insert_image"
SAVED_MESSAGES = {
    "draft": "Your draft has been saved.",
    "scheduled": "Your post is scheduled.",
    "published": "Your post has been published.",
}


@router.get("/posts/new", name="post_new")
def new_post_form(request: Request, user: RequiredUser) -> Response:
    """Form for a new post."""
    return _post_form(request, PostForm(), {}, None, 200)


def _insert_image(
    request: Request,
    db: Session,
    user: User,
    form: PostForm,
    image: UploadFile | None,
    post: Post | None,
) -> Response:
    """Upload the chosen image and show the form again, its Markdown added to the text (the
    way without JavaScript; static/js/post-images.js inserts it at the cursor instead)."""
    if image is None:
        return _post_form(request, form, {"image": "Choose an image to insert."}, post, 422, db=db)
    try:
        item = store_upload(request, db, user, image.file)
    except (media.PictureError, ConflictError) as exc:
        code = 413 if isinstance(exc, media.PictureTooLarge) else 422
        return _post_form(request, form, {"image": str(exc)}, post, code, db=db)
    text = form.content.rstrip()
    content = f"{text}\n\n" if text else ""
    content += images.markdown_snippet(item) + "\n"
    return _post_form(request, replace(form, content=content), {}, post, 200, db=db)


@router.post("/posts/new", name="post_create", dependencies=[CsrfProtected])
@body_limit(UPLOAD_BODY_LIMIT)
def create_post(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    user: RequiredUser,
    form: PostFormData,
    image: ImageField,
) -> Response:
    """Publish a post, save it as a draft or schedule it; or show a preview of it."""
    if form.action == INSERT_IMAGE:
        return _insert_image(request, db, user, form, image, None)
    result = _validated(form, user)
    if isinstance(result, dict):
        return _post_form(request, form, result, None, 422)
    if form.action == PREVIEW:
        return _post_form(request, form, {}, None, 200, preview=result)
    try:
        post = posts.create_post(db, data=result, author=user, limit=settings.new_account_limit)
    except InvalidFieldError as exc:
        return _post_form(request, form, _field_error(exc), None, 422)
    except ThrottledError as exc:
        message = posts.new_account_limit_message(settings.new_account_limit, exc.retry_after)
        return _post_form(request, form, {"form": message}, None, 429)
    return redirect(request, post_url(request, post), SAVED_MESSAGES[post.status_now])


def _field_error(exc: InvalidFieldError) -> Errors:
    return {FORM_FIELDS.get(exc.field, exc.field): exc.message}


@router.get("/posts/{post_id:int}/edit", name="post_edit")
def edit_post_form(request: Request, post_id: int, db: SessionDep, user: RequiredUser) -> Response:
    """Form to edit a post (its author only)."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    return _post_form(request, _saved_form(post, user), {}, post, 200, db=db)


CONFLICT_MESSAGE = (
    "This post was changed elsewhere after you started editing. Your text is kept below and "
    "the saved version is shown underneath: merge what you need, then save again."
)


@router.post("/posts/{post_id:int}/edit", name="post_update", dependencies=[CsrfProtected])
@body_limit(UPLOAD_BODY_LIMIT)
def update_post(
    request: Request,
    post_id: int,
    db: SessionDep,
    user: RequiredUser,
    form: PostFormData,
    image: ImageField,
) -> Response:
    """Save changes to a post (publishing, scheduling or unpublishing it), or preview them."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    if form.action == INSERT_IMAGE:
        return _insert_image(request, db, user, form, image, post)
    result = _validated(form, user)
    if isinstance(result, dict):
        return _post_form(request, form, result, post, 422, db=db)
    if form.action == PREVIEW:
        return _post_form(request, form, {}, post, 200, preview=result, db=db)
    status_before = post.status_now
    # The form always carries the version it was made from; anything else (missing, 0,
    # not a number) is no version the server sent, so saving it could overwrite a newer
    # one: it is answered like any stale version, with the conflict form.
    expected = version_number(form.version)
    if expected is None:
        return _conflict_form(request, db, form, post_id, user)
    try:
        posts.update_post(db, post=post, data=result, expected_version=expected)
    except EditConflictError:
        return _merge_or_conflict(request, db, form, post_id, user, expected)
    except InvalidFieldError as exc:
        db.rollback()
        return _post_form(request, form, _field_error(exc), post, 422, db=db)
    changed = post.status_now != status_before
    message = SAVED_MESSAGES[post.status_now] if changed else "Your post has been updated."
    return redirect(request, post_url(request, post), message)


MERGED_MESSAGE = (
    "This post was changed elsewhere while you were editing it; your changes touched other "
    "parts, so both have been kept. Review the result."
)


def _merge_or_conflict(
    request: Request, db: SessionDep, form: PostForm, post_id: int, user: User, started: int
) -> Response:
    """A stale edit merged with what was saved since it started and saved, when the two
    changed different parts; else the conflict form."""
    db.rollback()
    db.expire_all()
    current = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    merged = _merged_form(db, form, current, started, user)
    result = _validated(merged, user) if merged else None
    if result is None or isinstance(result, dict):
        return _conflict_form(request, db, form, post_id, user)
    try:
        posts.update_post(db, post=current, data=result, expected_version=current.version)
    except (EditConflictError, InvalidFieldError):
        return _conflict_form(request, db, form, post_id, user)
    return redirect(request, post_url(request, current), MERGED_MESSAGE, "info")


def _merged_form(
    db: Session, form: PostForm, current: Post, started: int, user: User
) -> PostForm | None:
    """The form with the changes saved since revision `started` merged in: the text three
    ways, the other fields each as a whole. None when the two sides overlap."""
    try:
        base = revisions.get_revision(db, post=current, number=started)
    except NotFoundError:
        return None
    base_form = PostForm(
        title=base.title,
        content=base.content,
        tags=", ".join(base.tags),
        slug=base.revision.slug,
        status=_status_now(base.revision.status, base.revision.published_at),
        publish_at=local_datetime_input(base.revision.published_at, user.timezone),
    )
    text = merging.merge_text(base.content, form.content, current.content)
    theirs = _saved_form(current, user)
    fields = merging.merge_fields(_fields(base_form), _fields(form), _fields(theirs))
    if text.conflicted or fields.conflicts:
        return None
    merged = fields.values
    status, publish_at = merged["schedule"]  # type: ignore[misc]
    return replace(
        form,
        title=str(merged["title"]),
        content=text.text,
        tags=", ".join(merged["tags"]),  # type: ignore[arg-type]
        slug=str(merged["slug"]),
        status=status,
        publish_at=publish_at,
    )


def _fields(form: PostForm) -> dict[str, Hashable]:
    """The fields merged each as a whole, as comparable values (the schedule is one)."""
    return {
        "title": form.title,
        "tags": tuple(split_tags(form.tags)),
        "slug": form.slug.strip(),
        "schedule": (form.status, form.publish_at),
    }


def _status_now(status: str, published_at: datetime | None) -> str:
    """The status the form showed for a stored one (a scheduled time that has come is
    published), as Post.status_now says it."""
    if status == "scheduled" and published_at is not None and published_at <= utcnow():
        return "published"
    return status


def _conflict_form(
    request: Request, db: SessionDep, form: PostForm, post_id: int, user: User
) -> Response:
    """The form again with the user's text, the saved version beside it, and that version's
    number, so saving again is a deliberate choice."""
    db.rollback()
    db.expire_all()
    current = posts.get_post(db, post_id=post_id, user=user)
    context = {
        "values": {**form.values(), "version": str(current.version)},
        "errors": {"form": CONFLICT_MESSAGE},
        "post_id": post_id,
        "post": current,
        "preview": None,
        "current": current,
        "review_links": reviews.live_review_links(db, post=current),
    }
    return render(request, "posts/form.html", context, status.HTTP_409_CONFLICT)


@router.post(
    "/posts/{post_id:int}/review-links", name="review_link_create", dependencies=[CsrfProtected]
)
def create_review_link(
    request: Request, post_id: int, db: SessionDep, user: RequiredUser
) -> Response:
    """Make a link that shows this unpublished post to whoever holds it (for 7 days)."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    edit_url = url_for(request, "post_edit", post_id=post.id)
    try:
        _, token = reviews.create_review_link(db, post=post)
    except reviews.AlreadyPublicError as exc:
        return redirect(request, edit_url, str(exc), "error")
    link = url_for(request, "review", token=token)
    message = f"Review link (shown once; copy it now): {link}"
    return redirect(request, edit_url, message)


@router.post(
    "/posts/{post_id:int}/review-links/{link_id:int}/revoke",
    name="review_link_revoke",
    dependencies=[CsrfProtected],
)
def revoke_review_link(
    request: Request, post_id: int, link_id: int, db: SessionDep, user: RequiredUser
) -> Response:
    """Revoke a review link: from now on it shows nothing."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    reviews.revoke_review_link(db, post=post, link_id=link_id)
    edit_url = url_for(request, "post_edit", post_id=post.id)
    return redirect(request, edit_url, "The review link has been revoked.")


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
