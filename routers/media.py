"""The author's media library in the browser: upload, list with where each image is used,
delete (with a confirmation while posts show it); and /media itself in database storage."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse

from database import SessionDep
from models import MediaFile, User
from services import images, media
from services.errors import ConflictError
from services.storage import is_valid_name
from web.deps import PageNumber, RequiredUser, get_current_user
from web.forms import FormText
from web.media import (
    FormUpload,
    StorageDep,
    blob_response,
    read_upload_form,
    store_upload,
)
from web.middleware import UPLOAD_BODY_LIMIT, BodyLimitedRoute, body_limit
from web.security import CsrfProtected
from web.templating import redirect, render
from web.urls import url_for

router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(get_current_user)],
    route_class=BodyLimitedRoute,
)
# Only in database storage (main.py); the local directory is a static mount instead.
serving = APIRouter(include_in_schema=False, route_class=BodyLimitedRoute)

LIBRARY_PAGE_SIZE = 20


async def read_file_field(request: Request) -> FormUpload:
    return await read_upload_form(request, "file")


FileUpload = Annotated[FormUpload, Depends(read_file_field)]


def _library(
    request: Request,
    db: SessionDep,
    user: User,
    number: int = 1,
    upload_error: str | None = None,
    status_code: int = 200,
) -> Response:
    page = images.library_page(db, user=user, number=number, size=LIBRARY_PAGE_SIZE)
    context = {"page": page, "upload_error": upload_error}
    return render(request, "media/library.html", context, status_code)


@router.get("/account/media", name="media_library")
def media_library(
    request: Request, db: SessionDep, user: RequiredUser, page: PageNumber = 1
) -> Response:
    """Your images: size, Markdown to show each one, and the posts that do."""
    return _library(request, db, user, page)


@router.post("/account/media", name="media_upload")
@body_limit(UPLOAD_BODY_LIMIT)
def upload_media(
    request: Request, db: SessionDep, user: RequiredUser, upload: FileUpload
) -> Response:
    """Add an image to your library."""
    error = upload.error
    if upload.data is not None:
        try:
            item = store_upload(request, db, user, upload.data)
        except (media.PictureError, ConflictError) as exc:
            error = str(exc)
        else:
            message = f"Image added. Markdown to show it: {images.markdown_snippet(item)}"
            return redirect(request, url_for(request, "media_library"), message)
    status_code = 413 if upload.too_large else 422
    return _library(request, db, user, upload_error=error, status_code=status_code)


@router.post("/account/media/upload", name="media_upload_json")
@body_limit(UPLOAD_BODY_LIMIT)
def upload_media_json(
    request: Request, db: SessionDep, user: RequiredUser, upload: FileUpload
) -> Response:
    """Add an image from the post form's script: JSON with the Markdown to insert."""
    if upload.data is None:
        status_code = 413 if upload.too_large else 422
        return JSONResponse({"detail": upload.error}, status_code)
    try:
        item = store_upload(request, db, user, upload.data)
    except media.PictureError as exc:
        return JSONResponse({"detail": str(exc)}, status.HTTP_422_UNPROCESSABLE_CONTENT)
    except ConflictError as exc:
        return JSONResponse({"detail": str(exc)}, status.HTTP_409_CONFLICT)
    body = {
        "id": item.id,
        "url": str(url_for(request, "media", path=images.file_names(item)[-1])),
        "width": item.width,
        "height": item.height,
        "markdown": images.markdown_snippet(item),
    }
    return JSONResponse(body, status.HTTP_201_CREATED)


def _confirmation(
    request: Request, db: SessionDep, user: User, item: MediaFile, status_code: int = 200
) -> Response:
    used = images.usages(db, [item], viewer=user)[item.id]
    return render(request, "media/delete.html", {"item": item, "usages": used}, status_code)


@router.get("/account/media/{media_id:int}/delete", name="media_delete")
def delete_media_form(
    request: Request, media_id: int, db: SessionDep, user: RequiredUser
) -> Response:
    """Ask for confirmation before deleting an image that posts show."""
    item = images.get_own_media(db, user=user, media_id=media_id)
    return _confirmation(request, db, user, item)


@router.post(
    "/account/media/{media_id:int}/delete",
    name="media_delete_submit",
    dependencies=[CsrfProtected],
)
def delete_media(
    request: Request,
    media_id: int,
    db: SessionDep,
    storage: StorageDep,
    user: RequiredUser,
    confirm: FormText = "",
) -> Response:
    """Delete an image; while posts show it, only once the confirmation page said so."""
    item = images.get_own_media(db, user=user, media_id=media_id)
    try:
        images.delete_image(db, media=item, storage=storage, force=confirm == "yes")
    except images.ImageInUseError:
        return _confirmation(request, db, user, item, status.HTTP_409_CONFLICT)
    return redirect(request, url_for(request, "media_library"), "The image has been deleted.")


@serving.get("/media/{path:path}", name="media")
def media_file(
    request: Request,
    path: str,
    db: SessionDep,
    storage: StorageDep,
) -> Response:
    """A stored file, read from the database."""
    data = storage.read(db, path) if is_valid_name(path) else None
    if data is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return blob_response(request, path, data)
