"""Serving uploads: the storage the app was built with, and the long-lived caching that
content-addressed (and otherwise never rewritten) media files allow."""

import os
from dataclasses import dataclass
from io import BytesIO
from os import PathLike
from typing import Annotated, BinaryIO

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from config import Settings
from models import MediaFile, User
from services import images, media
from services.storage import LocalStorage, MediaStorage, content_type
from web.middleware import RequestTooLarge
from web.security import verify_csrf
from web.templating import templates

# Every stored file is immutable: post images are named by their content, avatars by a new
# random name on each upload.
MEDIA_CACHE_CONTROL = "public, max-age=31536000, immutable"

templates.env.globals["media_names"] = images.file_names
templates.env.globals["media_snippet"] = images.markdown_snippet
templates.env.globals["max_upload_mb"] = media.MAX_PICTURE_BYTES // (1024 * 1024)


def get_storage(request: Request) -> MediaStorage:
    """The storage MEDIA_STORAGE chose when the app was created."""
    return request.app.state.media_storage


StorageDep = Annotated[MediaStorage, Depends(get_storage)]


def local_storage(request: Request) -> LocalStorage | None:
    storage = request.app.state.media_storage
    return storage if isinstance(storage, LocalStorage) else None


class MediaFiles(StaticFiles):
    """The media directory, cached for a year (local storage)."""

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = MEDIA_CACHE_CONTROL
        return response


def blob_response(request: Request, name: str, data: bytes) -> Response:
    """A stored file read from the database, with a strong ETag (its name never changes
    meaning) and 304 when the client has it already."""
    etag = f'"{name.replace("/", "-")}"'
    headers = {"Cache-Control": MEDIA_CACHE_CONTROL, "ETag": etag}
    sent = request.headers.get("if-none-match", "")
    if etag in [tag.strip().removeprefix("W/") for tag in sent.split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=content_type(name), headers=headers)


def store_upload(request: Request, db: Session, user: User, file: BinaryIO) -> MediaFile:
    """Decode an uploaded post image and add it to the user's library (the API and the
    forms alike). Raises PictureError, PictureBusy or QuotaExceededError."""
    settings: Settings = request.app.state.settings
    image = media.make_post_image(media.read_limited(file))
    return images.upload_image(
        db,
        user=user,
        image=image,
        storage=get_storage(request),
        max_files=settings.media_max_files_per_user,
        max_bytes=settings.media_max_bytes_per_user,
    )


@dataclass(frozen=True)
class FormUpload:
    """A file field of a multipart form, read within the limits, or why it could not be."""

    data: BytesIO | None = None
    error: str | None = None
    too_large: bool = False


async def read_upload_form(request: Request, field: str) -> FormUpload:
    """Parse a one-file form here, so an oversize body becomes a form error rather than a
    bare 413; the CSRF token is checked on the parsed form."""
    try:
        form = await request.form(max_files=1, max_fields=8)
    except RequestTooLarge:
        return FormUpload(error=too_large_message(), too_large=True)
    try:
        await verify_csrf(request)
        upload = form.get(field)
        if not isinstance(upload, UploadFile) or not upload.filename:
            return FormUpload(error="Choose an image to upload.")
        return FormUpload(data=BytesIO(media.read_limited(upload.file)))
    except media.PictureTooLarge:
        return FormUpload(error=too_large_message(), too_large=True)
    finally:
        await form.close()


def too_large_message() -> str:
    return f"The image is larger than {media.MAX_PICTURE_BYTES // (1024 * 1024)} MB."
