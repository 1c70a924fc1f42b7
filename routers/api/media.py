"""The JSON API for post images: upload, your media library, deletion."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    File,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)

from database import SessionDep
from models import MediaFile, User
from routers.api.common import (
    AUTH,
    BODY,
    NOT_FOUND,
    TOO_LARGE,
    Responses,
    error_response,
    link_neighbours,
)
from schemas import MAX_ID, MediaPublic
from services import images, media
from services.media import variant_sizes
from web.deps import ApiUser, Paging, SettingsDep
from web.media import StorageDep
from web.middleware import UPLOAD_BODY_LIMIT, BodyLimitedRoute, body_limit
from web.urls import url_for

router = APIRouter(route_class=BodyLimitedRoute)

IN_USE: Responses = {409: error_response(images.IN_USE)}
UPLOAD_REFUSED: Responses = {
    409: error_response("The media library is full"),
    503: error_response(media.BUSY),
}


@contextmanager
def picture_refused() -> Iterator[None]:
    """413 for an upload over the size limit, 422 for one that is not a usable picture."""
    try:
        yield
    except media.PictureTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from exc
    except media.PictureError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


def media_public(
    request: Request, item: MediaFile, usages: list[images.Usage], viewer: User
) -> MediaPublic:
    """An image as the API shows it, with absolute URLs."""
    path = images.file_names(item)[-1]
    return MediaPublic(
        id=item.id,
        url=str(url_for(request, "media", path=path)),
        width=item.width,
        height=item.height,
        widths=[width for width, _ in variant_sizes(item.width, item.height)],
        byte_size=item.byte_size,
        markdown=images.markdown_snippet(item),
        created_at=item.created_at,
        used_in=[usage.post_id for usage in usages if usage.mine],
        in_use=bool(usages),
    )


@router.post(
    "/media",
    status_code=status.HTTP_201_CREATED,
    response_model=MediaPublic,
    responses=AUTH | BODY | TOO_LARGE | UPLOAD_REFUSED,
)
@body_limit(UPLOAD_BODY_LIMIT)
def upload_media(
    request: Request,
    file: Annotated[UploadFile, File(description="JPEG, PNG, WebP or GIF (first frame)")],
    db: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    user: ApiUser,
) -> Any:
    """Add an image to your media library, stored at up to three widths (480, 960, 1600),
    never wider than the upload. The same picture uploaded again answers with the image it
    already is. 413 over the size limit, 422 if it is not a picture, 409 when the library is
    full, 503 while other pictures are being decoded."""
    with picture_refused():
        image = media.make_post_image(media.read_limited(file.file))
    item = images.upload_image(
        db,
        user=user,
        image=image,
        storage=storage,
        max_files=settings.media_max_files_per_user,
        max_bytes=settings.media_max_bytes_per_user,
    )
    return media_public(request, item, images.usages(db, [item], viewer=user)[item.id], user)


@router.get("/media", response_model=list[MediaPublic], responses=AUTH)
def list_media(
    request: Request, response: Response, db: SessionDep, user: ApiUser, paging: Paging
) -> Any:
    """Your images, newest first, with the posts that show them."""
    page = images.library_page(db, user=user, number=paging.number, size=paging.size)
    link_neighbours(request, response, page)
    return [media_public(request, item, page.usages[item.id], user) for item in page.items]


MediaId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.delete(
    "/media/{media_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=AUTH | NOT_FOUND | IN_USE,
)
def delete_media(
    media_id: MediaId,
    db: SessionDep,
    storage: StorageDep,
    user: ApiUser,
    force: Annotated[
        bool, Query(description="Delete even if posts show the image (they lose it)")
    ] = False,
) -> None:
    """Delete one of your images and its files (404 for anyone else's). 409 while a post
    shows it, unless `force=true`."""
    item = images.get_own_media(db, user=user, media_id=media_id)
    images.delete_image(db, media=item, storage=storage, force=force)
